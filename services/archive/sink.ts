// The archive's segment sink, a child of its broadcast: every segment the live HLS writer lists is described the
// moment it appears (size, sha256, duration, place on the programme clock, PROGRAM-DATE-TIME, FFmpeg run) and its
// upload row written, in order, through the journaled write-behind: an outage longer than the live window, or a
// crash, loses none. Segments are fMP4 and decode only behind their run's init section: each run's init section is
// queued once, just before the run's first segment. It listens to the writer's observer: no poll.
import path from 'node:path';
import { SEGMENT_FILE_RE, type ListedSegment } from '../../pipelines/hls/liveWriter.ts';
import type { MixerRun } from '../../pipelines/mixer/mixer.ts';
import type { SegmentSink, Writes } from '../broadcast/services.ts';
import type { NewArchiveObject } from '../db/archive.ts';
import type { Logger } from '../logger.ts';
import { sha256File } from './queue.ts';

/**
 * Segments and init sections alike: audio-only MP4 (a segment is its fragments), the type the live origin serves them
 * with. Every browser, player and store knows it (video/iso.segment less so), and nothing needs a segment told apart
 * from an init section by its type.
 */
export const SEGMENT_CONTENT_TYPE = 'audio/mp4';
export const INIT_CONTENT_TYPE = 'audio/mp4';

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
  /** Runs whose init section is queued. */
  readonly #inits = new Set<number>();
  #chain: Promise<void> = Promise.resolve();
  /** The run of the last segment queued. */
  #run: number | null = null;
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
    const m = SEGMENT_FILE_RE.exec(name);
    if (!m) return;
    const seq = Number(m[1]);
    if (this.#seen.has(seq)) return;
    // Each FFmpeg run (a new one after a crash) starts where the programme clock was when it started.
    if (seg.run !== this.#run) this.#position = this.#runs().find((r) => r.index === seg.run)?.startSeconds ?? this.#position;
    const newRun = this.#run !== null && seg.run !== this.#run;
    if (!this.#inits.has(seg.run)) {
      const init = path.join(this.#hlsDir, path.basename(seg.map));
      const { sha256, size } = await sha256File(init);
      this.#inits.add(seg.run);
      this.#queue({
        broadcastId: this.#broadcastId,
        key: `${this.#keyPrefix}hls/${path.basename(seg.map)}`,
        kind: 'init',
        localPath: init,
        contentType: INIT_CONTENT_TYPE,
        size,
        sha256,
        seq: seg.run,
        run: seg.run,
        mediaStart: this.#position,
      });
    }
    const local = path.join(this.#hlsDir, name);
    const { sha256, size } = await sha256File(local);
    this.#seen.add(seq);
    this.#queue({
      broadcastId: this.#broadcastId,
      key: `${this.#keyPrefix}hls/${name}`,
      kind: 'segment',
      localPath: local,
      contentType: SEGMENT_CONTENT_TYPE,
      size,
      sha256,
      seq,
      run: seg.run,
      durationSeconds: seg.duration,
      mediaStart: this.#position,
      programDateTime: seg.programDateTime,
      discontinuity: newRun,
    });
    this.#run = seg.run;
    this.#position += seg.duration;
  }

  #queue(row: NewArchiveObject): void {
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
