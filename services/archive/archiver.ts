// The archive sink: while a broadcast is on air, every finished HLS segment is queued for upload; when it goes off
// air, the VOD playlist, the whole-broadcast .m4a, each performer's track and a manifest are made and queued too.
// Key layout (docs/archive.md): stages/<stageId>/broadcasts/<broadcastId>/{hls/seg_NNNNN.ts, hls/index.m3u8,
// audio.m4a, tracks/<performerId>.opus, manifest.json}.
import fsp from 'node:fs/promises';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { parseMediaPlaylist } from '../../pipelines/hls/playlist.ts';
import { MIX_PLAYLIST_NAME, PLAYLIST_NAME } from '../../pipelines/mixer/ffmpegArgs.ts';
import type { Mixer, MixerRun } from '../../pipelines/mixer/mixer.ts';
import { buildVodPlaylist, remuxToM4a, type RemuxRun } from '../../pipelines/archive/vod.ts';
import { ArchiveRepo, type ArchiveObject, type NewArchiveObject, type Recording } from '../db/archive.ts';
import { BroadcastRepo } from '../db/broadcasts.ts';
import type { Db } from '../db/db.ts';
import type { Logger } from '../logger.ts';
import { sha256File, UploadQueue } from './queue.ts';
import { TimelineRepo } from '../db/timeline.ts';
import { dateRangeTag } from '../../pipelines/hls/publisher.ts';
import { buildChaptersVtt, buildTimelineFile } from '../timeline/files.ts';
import { toDateRange } from '../timeline/service.ts';
import type { ObjectStore } from './store.ts';

const execFileP = promisify(execFile);
const POLL_MS = 200;
const SEGMENT_RE = /^seg_(\d+)\.ts$/;

export const CONTENT_TYPES = {
  segment: 'video/mp2t',
  playlist: 'application/vnd.apple.mpegurl',
  audio: 'audio/mp4',
  track: 'audio/ogg',
  manifest: 'application/json',
  timeline: 'application/json',
  chapters: 'text/vtt',
} as const;

export function keyPrefix(stageId: string, broadcastId: string): string {
  return `stages/${stageId}/broadcasts/${broadcastId}/`;
}

export interface ArchiverOptions {
  db: Db;
  store: ObjectStore;
  log: Logger;
  spoolDir: string;
  aacBitrateKbps: number;
  queue: Omit<ConstructorParameters<typeof UploadQueue>[0], 'repo' | 'store' | 'log'>;
}

/**
 * Records one broadcast's segments as FFmpeg finishes them. A segment is described (size, sha256, duration, programme
 * position, PROGRAM-DATE-TIME) the moment it is listed, and its upload row is written in order; while the database is
 * unreachable the descriptions wait here, so an outage longer than the live window loses no segment.
 */
class SegmentWatcher {
  readonly #seen = new Set<number>();
  /** Described, not yet in the database. */
  readonly #pending: NewArchiveObject[] = [];
  #failingSince: number | null = null;
  #lastWarn = 0;
  #timer: NodeJS.Timeout | null = null;
  #lastMtime = 0;
  #chain: Promise<void> = Promise.resolve();
  #runIndex = 0;
  #position = 0;

  constructor(
    private readonly rec: { id: string; hlsDir: string; keyPrefix: string },
    private readonly repo: ArchiveRepo,
    private readonly runs: () => readonly MixerRun[],
    private readonly onQueued: () => void,
    private readonly log: Logger,
  ) {}

  start(): void {
    this.#timer = setInterval(() => void this.scan(), POLL_MS);
  }

  /** Reads the live playlist and queues segments not seen yet. Scans run one at a time. */
  scan(): Promise<void> {
    this.#chain = this.#chain.then(() => this.#scan()).catch((err: unknown) => {
      this.log.error('could not queue finished segments', { broadcastId: this.rec.id, error: String(err) });
    });
    return this.#chain;
  }

  async #scan(): Promise<void> {
    await this.#describeNew();
    await this.#record();
  }

  async #describeNew(): Promise<void> {
    const file = path.join(this.rec.hlsDir, MIX_PLAYLIST_NAME);
    let stat;
    try {
      stat = await fsp.stat(file);
    } catch {
      return;
    }
    if (stat.mtimeMs === this.#lastMtime) return;
    this.#lastMtime = stat.mtimeMs;
    const { segments } = parseMediaPlaylist(await fsp.readFile(file, 'utf8'));
    for (const seg of segments) {
      const m = SEGMENT_RE.exec(path.basename(seg.uri));
      if (!m) continue;
      const seq = Number(m[1]);
      if (this.#seen.has(seq)) continue;
      if (seg.discontinuity && this.#seen.size > 0) {
        const runs = this.runs();
        if (this.#runIndex + 1 < runs.length) {
          this.#runIndex++;
          this.#position = runs[this.#runIndex]!.startSeconds;
        }
      }
      const local = path.join(this.rec.hlsDir, path.basename(seg.uri));
      const { sha256, size } = await sha256File(local);
      this.#seen.add(seq);
      this.#pending.push({
        broadcastId: this.rec.id,
        key: `${this.rec.keyPrefix}hls/${path.basename(seg.uri)}`,
        kind: 'segment',
        localPath: local,
        contentType: CONTENT_TYPES.segment,
        size,
        sha256,
        seq,
        durationSeconds: seg.duration,
        mediaStart: this.#position,
        programDateTime: seg.programDateTime,
        discontinuity: seg.discontinuity && this.#seen.size > 1,
      });
      this.#position += seg.duration;
    }
  }

  /** Writes the described segments' upload rows, oldest first; on a database error they wait for the next scan. */
  async #record(): Promise<void> {
    let queued = 0;
    try {
      while (this.#pending.length > 0) {
        await this.repo.enqueue(this.#pending[0]!);
        this.#pending.shift();
        queued++;
      }
      if (this.#failingSince !== null) {
        this.log.info('segments held through a database outage are queued', { broadcastId: this.rec.id, outageMs: Date.now() - this.#failingSince });
        this.#failingSince = null;
      }
    } catch (err) {
      const now = Date.now();
      this.#failingSince ??= now;
      if (now - this.#lastWarn > 10_000) {
        this.#lastWarn = now;
        this.log.warn('could not queue finished segments; holding them until the database answers', {
          broadcastId: this.rec.id,
          held: this.#pending.length,
          error: String(err),
        });
      }
    }
    if (queued > 0) this.onQueued();
  }

  /** Segments described but not yet in the database. */
  get held(): number {
    return this.#pending.length;
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    await this.#chain;
  }
}

export class Archiver {
  readonly store: ObjectStore;
  readonly queue: UploadQueue;
  readonly repo: ArchiveRepo;
  readonly #broadcasts: BroadcastRepo;
  readonly #timeline: TimelineRepo;
  readonly #log: Logger;
  readonly #spoolDir: string;
  readonly #aacBitrateKbps: number;
  readonly #watchers = new Map<string, SegmentWatcher>();
  readonly #finalizing = new Map<string, Promise<void>>();
  #closed = false;

  constructor(opts: ArchiverOptions) {
    this.store = opts.store;
    this.repo = new ArchiveRepo(opts.db);
    this.#broadcasts = new BroadcastRepo(opts.db);
    this.#timeline = new TimelineRepo(opts.db);
    this.#log = opts.log.child({ component: 'archiver' });
    this.#spoolDir = opts.spoolDir;
    this.#aacBitrateKbps = opts.aacBitrateKbps;
    this.queue = new UploadQueue({ ...opts.queue, repo: this.repo, store: opts.store, log: opts.log });
  }

  /** Segments described but waiting for the database (it was unreachable), across live broadcasts. */
  heldSegments(): number {
    let n = 0;
    for (const w of this.#watchers.values()) n += w.held;
    return n;
  }

  /** Where a broadcast's tracks and derived files are written before upload. */
  spoolFor(broadcastId: string): string {
    return path.join(this.#spoolDir, broadcastId);
  }

  tracksDir(broadcastId: string): string {
    return path.join(this.spoolFor(broadcastId), 'tracks');
  }

  /** Prepares the store, resumes the queue, and finalizes archives an earlier run left unfinished. */
  async start(): Promise<void> {
    await fsp.mkdir(this.#spoolDir, { recursive: true });
    await this.store.init().catch((err: unknown) => {
      this.#log.warn('the archive store is not reachable yet; uploads wait and retry', { store: this.store.description, error: String(err) });
    });
    await this.queue.start();
    for (const rec of await this.repo.awaitingFinalization()) {
      this.#log.info('finalizing an archive an earlier run left unfinished', { broadcastId: rec.id });
      void this.finalize(rec.id).catch(() => undefined);
    }
  }

  /** The broadcast is on air: its segments are queued as FFmpeg finishes them. */
  async begin(args: { broadcastId: string; stageId: string; hlsDir: string; mixer: Mixer }): Promise<void> {
    const prefix = keyPrefix(args.stageId, args.broadcastId);
    await this.repo.beginRecording(args.broadcastId, {
      hlsDir: args.hlsDir,
      spoolDir: this.spoolFor(args.broadcastId),
      keyPrefix: prefix,
      originAt: new Date(args.mixer.originWallMs),
    });
    const w = new SegmentWatcher(
      { id: args.broadcastId, hlsDir: args.hlsDir, keyPrefix: prefix },
      this.repo,
      () => args.mixer.runs,
      () => this.queue.kick(),
      this.#log,
    );
    this.#watchers.set(args.broadcastId, w);
    w.start();
  }

  /**
   * Off air (the mixer has stopped: its last segment is listed and the tracks are closed). Makes the derived files and
   * queues them; the archive becomes `archived` when every object is uploaded. Idempotent; safe to run again after a
   * crash (files are rebuilt, unchanged objects are not uploaded again).
   */
  finalize(broadcastId: string, runs?: readonly MixerRun[]): Promise<void> {
    let p = this.#finalizing.get(broadcastId);
    if (!p) {
      p = this.#finalize(broadcastId, runs)
        .catch(async (err: unknown) => {
          const reason = `could not finalize the archive: ${err instanceof Error ? err.message : String(err)}`;
          this.#log.error(reason, { broadcastId });
          await this.repo.fail(broadcastId, reason).catch(() => undefined);
          throw err;
        })
        .finally(() => this.#finalizing.delete(broadcastId));
      this.#finalizing.set(broadcastId, p);
    }
    return p;
  }

  async #finalize(broadcastId: string, runs?: readonly MixerRun[]): Promise<void> {
    const t0 = performance.now();
    const steps: Record<string, number> = {};
    const step = (name: string, since: number) => (steps[name] = Math.round(performance.now() - since));
    const rec = await this.repo.recording(broadcastId);
    if (!rec) throw new Error(`no broadcast ${broadcastId}`);
    if (rec.archiveStatus !== 'recording' && rec.archiveStatus !== 'uploading') return;
    if (!rec.hlsDir || !rec.spoolDir || !rec.keyPrefix) throw new Error('the broadcast was never recorded');
    const watcher = this.#watchers.get(broadcastId);
    this.#watchers.delete(broadcastId);
    if (watcher) {
      await watcher.scan();
      await watcher.stop();
    }
    await this.#queueStraySegments(rec);
    const spool = rec.spoolDir;
    await fsp.mkdir(spool, { recursive: true });

    const segments = await this.repo.objects(broadcastId, 'segment');
    if (segments.length === 0) throw new Error('no audio was recorded');
    const duration = segments.reduce((s, o) => s + (o.durationSeconds ?? 0), 0);

    step('segments', t0);
    // The timeline: every event, who spoke when, and the chapters, on the recording's clock.
    let t = performance.now();
    const events = await this.#timeline.list(broadcastId);
    const originDate = segments.find((o) => o.seq === 0)?.programDateTime ?? rec.originAt?.toISOString() ?? null;
    const originIso = originDate ? new Date(Date.parse(originDate)).toISOString() : null;
    const timeline = buildTimelineFile({ broadcastId, stageId: rec.stageId, originDate: originIso, durationSeconds: duration, events });
    const timelinePath = path.join(spool, 'timeline.json');
    await writeAtomic(timelinePath, `${JSON.stringify(timeline, null, 2)}\n`);
    await this.#enqueueFile(rec, 'timeline', 'timeline.json', timelinePath, { durationSeconds: duration, mediaStart: 0 });
    const chaptersPath = path.join(spool, 'chapters.vtt');
    await writeAtomic(chaptersPath, buildChaptersVtt(events, duration));
    await this.#enqueueFile(rec, 'chapters', 'chapters.vtt', chaptersPath, { durationSeconds: duration, mediaStart: 0 });
    step('timeline', t);

    // VOD playlist, with the timeline's chapters, tracks and markers as EXT-X-DATERANGE tags.
    t = performance.now();
    const vodPath = path.join(spool, PLAYLIST_NAME);
    const dateRanges = originIso ? timeline.events.filter((e) => e.type !== 'comment').map((e) => dateRangeTag(toDateRange(e))) : [];
    await writeAtomic(vodPath, buildVodPlaylist(segments.map((o) => ({
      uri: path.posix.basename(o.key),
      duration: o.durationSeconds ?? 0,
      programDateTime: o.programDateTime,
      discontinuity: o.discontinuity,
    })), dateRanges));
    await this.#enqueueFile(rec, 'playlist', `hls/${PLAYLIST_NAME}`, vodPath, { durationSeconds: duration, mediaStart: 0 });
    step('playlist', t);
    // The whole broadcast as one audio file, on the programme clock.
    t = performance.now();
    const audioPath = path.join(spool, 'audio.m4a');
    try {
      await remuxToM4a(splitRuns(segments), audioPath, { bitrateKbps: this.#aacBitrateKbps });
      await this.#enqueueFile(rec, 'audio', 'audio.m4a', audioPath, { durationSeconds: await probeDuration(audioPath), mediaStart: 0 });
    } catch (err) {
      // A broadcast stopped within moments of starting may hold no audio frame at all: nothing to remux.
      if (duration >= 1) throw err;
      this.#log.warn('no audio file: the broadcast is too short to hold audio', { broadcastId, durationSeconds: duration, error: String(err) });
    }

    step('audio', t);
    // Each performer's track.
    t = performance.now();
    const performers = await this.#broadcasts.listPerformers(broadcastId);
    const tracksDir = path.join(spool, 'tracks');
    const trackFiles = (await fsp.readdir(tracksDir).catch(() => [] as string[])).filter((f) => f.endsWith('.opus'));
    for (const f of trackFiles.sort()) {
      const performerId = f.slice(0, -'.opus'.length);
      const local = path.join(tracksDir, f);
      await this.#enqueueFile(rec, 'track', `tracks/${f}`, local, { performerId, durationSeconds: await probeDuration(local), mediaStart: 0 });
    }

    step('tracks', t);
    // The manifest: every object with its size, duration and sha256.
    t = performance.now();
    const objects = (await this.repo.objects(broadcastId)).filter((o) => o.kind !== 'manifest');
    const manifest = buildManifest(rec, duration, objects, performers, runs);
    const manifestPath = path.join(spool, 'manifest.json');
    await writeAtomic(manifestPath, `${JSON.stringify(manifest, null, 2)}\n`);
    await this.#enqueueFile(rec, 'manifest', 'manifest.json', manifestPath, {});
    await this.repo.markFinalized(broadcastId, duration);
    step('manifest', t);
    step('total', t0);
    this.#log.info('archive finalized; uploading', { broadcastId, segments: segments.length, tracks: trackFiles.length, durationSeconds: Number(duration.toFixed(3)), ms: steps });
    this.queue.kick();
    if (await this.repo.completeIfDone(broadcastId)) this.queue.emit('archived', broadcastId);
  }

  /** Segment files on disk that never made it into the queue (a crash before the watcher saw them). */
  async #queueStraySegments(rec: Recording): Promise<void> {
    const known = new Set((await this.repo.objects(rec.id, 'segment')).map((o) => o.seq));
    const files = (await fsp.readdir(rec.hlsDir!).catch(() => [] as string[])).filter((f) => SEGMENT_RE.test(f)).sort();
    for (const f of files) {
      const seq = Number(SEGMENT_RE.exec(f)![1]);
      if (known.has(seq)) continue;
      const local = path.join(rec.hlsDir!, f);
      this.#log.warn('queueing a segment the watcher missed', { broadcastId: rec.id, file: f });
      await this.#enqueueFile(rec, 'segment', `hls/${f}`, local, { seq, durationSeconds: await probeDuration(local) });
    }
  }

  async #enqueueFile(rec: Recording, kind: NewArchiveObject['kind'], name: string, local: string, extra: Partial<NewArchiveObject>): Promise<void> {
    const { sha256, size } = await sha256File(local);
    await this.repo.enqueue({
      broadcastId: rec.id,
      key: `${rec.keyPrefix}${name}`,
      kind,
      localPath: local,
      contentType: CONTENT_TYPES[kind as keyof typeof CONTENT_TYPES] ?? 'application/octet-stream',
      size,
      sha256,
      ...extra,
    });
  }

  /** Stops watching (segments already queued stay queued) and the queue. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const w of this.#watchers.values()) await w.stop();
    this.#watchers.clear();
    await Promise.allSettled([...this.#finalizing.values()]);
    await this.queue.close();
    this.store.close();
  }
}

/** Segments grouped into FFmpeg runs; a run after a restart starts after the silence its gap needs. */
function splitRuns(segments: readonly ArchiveObject[]): RemuxRun[] {
  const runs: RemuxRun[] = [];
  let end = 0;
  for (const s of segments) {
    if (runs.length === 0 || s.discontinuity) {
      const start = s.mediaStart ?? end;
      runs.push({ files: [], gapBefore: runs.length === 0 ? 0 : Math.max(0, start - end) });
      end = start;
    }
    runs[runs.length - 1]!.files.push(s.localPath);
    end += s.durationSeconds ?? 0;
  }
  return runs;
}

export interface Manifest {
  version: 1;
  broadcastId: string;
  stageId: string;
  startedAt: string;
  endedAt: string | null;
  /** Wall clock of the programme clock's zero: every mediaStart counts seconds from it. */
  originAt: string | null;
  durationSeconds: number;
  runs: { index: number; startSeconds: number }[];
  performers: { performerId: string; displayName: string; joinedAt: string; leftAt: string | null; joinOffsetSeconds: number | null; track: string | null }[];
  objects: { key: string; kind: string; contentType: string; size: number; sha256: string; durationSeconds: number | null; mediaStart: number | null;
    seq: number | null; performerId: string | null; programDateTime: string | null }[];
}

function buildManifest(
  rec: Recording,
  duration: number,
  objects: readonly ArchiveObject[],
  performers: readonly { performerId: string; displayName: string; joinedAt: Date; leftAt: Date | null }[],
  runs: readonly MixerRun[] | undefined,
): Manifest {
  const origin = rec.originAt?.getTime() ?? null;
  const tracks = new Map(objects.filter((o) => o.kind === 'track').map((o) => [o.performerId, o.key]));
  return {
    version: 1,
    broadcastId: rec.id,
    stageId: rec.stageId,
    startedAt: rec.startedAt.toISOString(),
    endedAt: rec.endedAt?.toISOString() ?? null,
    originAt: rec.originAt?.toISOString() ?? null,
    durationSeconds: Number(duration.toFixed(6)),
    runs: (runs ?? [{ index: 0, startSeconds: 0 }]).map((r) => ({ index: r.index, startSeconds: Number(r.startSeconds.toFixed(6)) })),
    performers: performers.map((p) => ({
      performerId: p.performerId,
      displayName: p.displayName,
      joinedAt: p.joinedAt.toISOString(),
      leftAt: p.leftAt?.toISOString() ?? null,
      joinOffsetSeconds: origin === null ? null : Math.max(0, (p.joinedAt.getTime() - origin) / 1000),
      track: tracks.get(p.performerId) ?? null,
    })),
    objects: objects.map((o) => ({
      key: o.key,
      kind: o.kind,
      contentType: o.contentType,
      size: o.size,
      sha256: o.sha256,
      durationSeconds: o.durationSeconds,
      mediaStart: o.mediaStart,
      seq: o.seq,
      performerId: o.performerId,
      programDateTime: o.programDateTime,
    })),
  };
}

async function writeAtomic(file: string, text: string): Promise<void> {
  const tmp = `${file}.tmp`;
  await fsp.writeFile(tmp, text);
  await fsp.rename(tmp, file);
}

/** Duration in seconds by ffprobe (format duration), or null. */
export async function probeDuration(file: string): Promise<number | null> {
  try {
    const { stdout } = await execFileP('ffprobe', ['-v', 'error', '-show_entries', 'format=duration', '-of', 'csv=p=0', file]);
    const d = parseFloat(stdout.trim());
    return Number.isFinite(d) ? d : null;
  } catch {
    return null;
  }
}
