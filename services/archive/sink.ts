// The archive's segment sink, a child of its broadcast: every segment the HLS publisher lists is described the moment
// it appears (size, sha256, duration, place on the programme clock, PROGRAM-DATE-TIME) and its upload row written,
// in order, through the journaled write-behind: an outage longer than the live window, or a crash, loses none.
// It listens to the publisher (which already reads FFmpeg's playlist): no second poll.
import path from 'node:path';
import type { ListedSegment } from '../../pipelines/hls/publisher.ts';
import type { MixerRun } from '../../pipelines/mixer/mixer.ts';
import type { SegmentSink, Writes } from '../broadcast/services.ts';
import type { NewArchiveObject } from '../db/archive.ts';
import type { Logger } from '../logger.ts';
import { sha256File } from './queue.ts';

export const SEGMENT_RE = /^seg_(\d+)\.ts$/;
export const SEGMENT_CONTENT_TYPE = 'video/mp2t';

interface SegmentSource {
  on(event: 'segmentListed', fn: (segment: ListedSegment) => void): unknown;
  off(event: 'segmentListed', fn: (segment: ListedSegment) => void): unknown;
}

export class ArchiveSegmentSink implements SegmentSink {
  readonly #broadcastId: string;
  readonly #hlsDir: string;
  readonly #keyPrefix: string;
  readonly #runs: () => readonly MixerRun[];
  readonly #writes: Writes;
  readonly #onQueued: () => void;
  readonly #source: SegmentSource;
  readonly #log: Logger;
  readonly #seen = new Set<number>();
  #chain: Promise<void> = Promise.resolve();
  #runIndex = 0;
  #position = 0;
  #closed = false;
  readonly #onListed = (seg: ListedSegment) => {
    this.#chain = this.#chain.then(() => this.#record(seg)).catch((err: unknown) => {
      this.#log.error('could not queue a finished segment; the archive picks it up at finalization', { uri: seg.uri, error: String(err) });
    });
  };

  constructor(args: {
    broadcastId: string;
    hlsDir: string;
    keyPrefix: string;
    runs: () => readonly MixerRun[];
    writes: Writes;
    onQueued: () => void;
    source: SegmentSource;
    log: Logger;
  }) {
    this.#broadcastId = args.broadcastId;
    this.#hlsDir = args.hlsDir;
    this.#keyPrefix = args.keyPrefix;
    this.#runs = args.runs;
    this.#writes = args.writes;
    this.#onQueued = args.onQueued;
    this.#source = args.source;
    this.#log = args.log;
    this.#source.on('segmentListed', this.#onListed);
  }

  async #record(seg: ListedSegment): Promise<void> {
    const name = path.basename(seg.uri);
    const m = SEGMENT_RE.exec(name);
    if (!m) return;
    const seq = Number(m[1]);
    if (this.#seen.has(seq)) return;
    // A new FFmpeg run (after a crash) starts where the programme clock was when it started.
    if (seg.discontinuity && this.#seen.size > 0) {
      const runs = this.#runs();
      if (this.#runIndex + 1 < runs.length) {
        this.#runIndex++;
        this.#position = runs[this.#runIndex]!.startSeconds;
      }
    }
    const local = path.join(this.#hlsDir, name);
    const { sha256, size } = await sha256File(local);
    this.#seen.add(seq);
    const row: NewArchiveObject = {
      broadcastId: this.#broadcastId,
      key: `${this.#keyPrefix}hls/${name}`,
      kind: 'segment',
      localPath: local,
      contentType: SEGMENT_CONTENT_TYPE,
      size,
      sha256,
      seq,
      durationSeconds: seg.duration,
      mediaStart: this.#position,
      programDateTime: seg.programDateTime,
      discontinuity: seg.discontinuity && this.#seen.size > 1,
    };
    this.#position += seg.duration;
    // Journaled before this returns: the row is safe whatever happens to the database or the process from here.
    void this.#writes.write('archive.object', row).then((written) => {
      if (written) this.#onQueued();
    });
  }

  /** Stops listening; resolves when every segment seen so far has its row queued (journaled). Idempotent. */
  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#source.off('segmentListed', this.#onListed);
    }
    await this.#chain;
  }
}
