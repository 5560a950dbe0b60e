// The archive: while a broadcast is on air, its segment sink (services/archive/sink.ts) queues every finished HLS
// segment for upload; once its end is recorded, finalization makes the VOD playlist, the whole-broadcast .m4a, each
// performer's track and a manifest, and queues them too.
// Key layout (docs/archive.md): stages/<stageId>/broadcasts/<broadcastId>/{hls/seg_NNNNN.ts, hls/index.m3u8,
// audio.m4a, tracks/<performerId>.opus, manifest.json}.
//
// Finalization is a durable step: it is due for every ended broadcast whose archive is still `recording` (the
// database says so, not this process's memory), so it runs when a broadcast ends, again at every sweep when an
// attempt failed, and at the next start when the process stopped first. An attempt interrupted by a shutdown (our
// abort, or a signal that killed its FFmpeg) is not counted; one that failed on its own is, and after
// MAX_FINALIZE_ATTEMPTS the archive is marked failed.
import fsp from 'node:fs/promises';
import path from 'node:path';
import { FfmpegRunError, probeDuration } from '../../pipelines/ffmpeg/index.ts';
import { PLAYLIST_NAME } from '../../pipelines/mixer/ffmpegArgs.ts';
import type { Mixer } from '../../pipelines/mixer/mixer.ts';
import { buildVodPlaylist, remuxToM4a, type RemuxRun } from '../../pipelines/archive/vod.ts';
import { dateRangeTag } from '../../pipelines/hls/publisher.ts';
import type { BroadcastArchive, SegmentSink, Writes } from '../broadcast/services.ts';
import { ArchiveRepo, type ArchiveObject, type NewArchiveObject, type Recording } from '../db/archive.ts';
import { BroadcastRepo } from '../db/broadcasts.ts';
import type { Db } from '../db/db.ts';
import { TimelineRepo } from '../db/timeline.ts';
import { isDbUnavailable } from '../db/writeBehind.ts';
import type { Logger } from '../logger.ts';
import { buildChaptersVtt, buildTimelineFile, toDateRange } from '../timeline/files.ts';
import { sha256File, UploadQueue } from './queue.ts';
import { ArchiveSegmentSink, SEGMENT_CONTENT_TYPE, SEGMENT_RE } from './sink.ts';
import type { ObjectStore } from './store.ts';

export const CONTENT_TYPES = {
  segment: SEGMENT_CONTENT_TYPE,
  playlist: 'application/vnd.apple.mpegurl',
  audio: 'audio/mp4',
  track: 'audio/ogg',
  manifest: 'application/json',
  timeline: 'application/json',
  chapters: 'text/vtt',
} as const;

/** Finalization attempts that fail on their own before the archive is marked failed. */
export const MAX_FINALIZE_ATTEMPTS = 3;
/** After a failed attempt, the next one waits this long (doubling), at the sweeps. */
const FINALIZE_RETRY_MS = 15_000;
/** A remux taking longer than this is stuck (a 10-minute broadcast remuxes in about 2 s). */
const REMUX_TIMEOUT_MS = 10 * 60_000;

export function keyPrefix(stageId: string, broadcastId: string): string {
  return `stages/${stageId}/broadcasts/${broadcastId}/`;
}

export interface ArchiverOptions {
  db: Db;
  store: ObjectStore;
  writes: Writes;
  log: Logger;
  spoolDir: string;
  aacBitrateKbps: number;
  queue: Omit<ConstructorParameters<typeof UploadQueue>[0], 'repo' | 'store' | 'log'>;
}

/** The archive can never be finalized (nothing was recorded): retrying will not help. */
class PermanentArchiveError extends Error {}

export class Archiver implements BroadcastArchive {
  readonly store: ObjectStore;
  readonly queue: UploadQueue;
  readonly repo: ArchiveRepo;
  readonly #broadcasts: BroadcastRepo;
  readonly #timeline: TimelineRepo;
  readonly #writes: Writes;
  readonly #log: Logger;
  readonly #spoolDir: string;
  readonly #aacBitrateKbps: number;
  readonly #finalizing = new Map<string, Promise<void>>();
  /** Broadcasts whose last attempt failed: not before this (epoch ms), and how many attempts in this run. */
  readonly #retryAt = new Map<string, { at: number; tries: number }>();
  /** Aborted when the archiver closes (or a shutdown's grace ends): finalizations in flight stop at once. */
  readonly #abort = new AbortController();
  #pendingScan: Promise<void> | null = null;
  #closed = false;

  constructor(opts: ArchiverOptions) {
    this.store = opts.store;
    this.repo = new ArchiveRepo(opts.db);
    this.#broadcasts = new BroadcastRepo(opts.db);
    this.#timeline = new TimelineRepo(opts.db);
    this.#writes = opts.writes;
    this.#log = opts.log.child({ component: 'archiver' });
    this.#spoolDir = opts.spoolDir;
    this.#aacBitrateKbps = opts.aacBitrateKbps;
    this.queue = new UploadQueue({ ...opts.queue, repo: this.repo, store: opts.store, log: opts.log });
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
    this.queue.on('swept', () => void this.finalizePending());
    void this.finalizePending();
  }

  /** The broadcast is on air: records where, and returns its segment sink (a child of the broadcast). */
  async begin(args: { broadcastId: string; stageId: string; hlsDir: string; mixer: Mixer }): Promise<SegmentSink> {
    const prefix = keyPrefix(args.stageId, args.broadcastId);
    await this.repo.beginRecording(args.broadcastId, {
      hlsDir: args.hlsDir,
      spoolDir: this.spoolFor(args.broadcastId),
      keyPrefix: prefix,
      originAt: new Date(args.mixer.originWallMs),
    });
    return new ArchiveSegmentSink({
      broadcastId: args.broadcastId,
      hlsDir: args.hlsDir,
      keyPrefix: prefix,
      runs: () => args.mixer.runs,
      writes: this.#writes,
      onQueued: () => this.queue.kick(),
      source: args.mixer.publisher.observer,
      log: this.#log.child({ broadcastId: args.broadcastId }),
    });
  }

  /** The broadcast's end is recorded: finalize it now. */
  finalizeSoon(broadcastId: string): void {
    void this.finalize(broadcastId).catch(() => undefined);
  }

  /** Finalizes every ended broadcast whose archive is due (at start, and at every sweep). */
  finalizePending(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#pendingScan ??= (async () => {
      try {
        const now = Date.now();
        for (const rec of await this.repo.awaitingFinalization()) {
          if (this.#closed) return;
          const retry = this.#retryAt.get(rec.id);
          if (retry && retry.at > now) continue;
          if (!this.#finalizing.has(rec.id)) this.#log.info('finalizing an archive that was waiting', { broadcastId: rec.id, attempts: rec.finalizeAttempts });
          await this.finalize(rec.id).catch(() => undefined);
        }
      } catch (err) {
        if (!isDbUnavailable(err)) this.#log.error('could not look for archives to finalize', { error: String(err) });
      }
    })().finally(() => (this.#pendingScan = null));
    return this.#pendingScan;
  }

  /** Finalizations running now. */
  get finalizing(): number {
    return this.#finalizing.size;
  }

  /**
   * Makes the derived files and queues them; the archive becomes `archived` when every object is uploaded. Safe to run
   * again (files are rebuilt, unchanged objects are not uploaded again); concurrent calls share one run. Rejects if it
   * did not finish (the reason is logged and, unless it was an interruption, counted).
   */
  finalize(broadcastId: string): Promise<void> {
    if (this.#closed) return Promise.reject(new Error('the archiver is closed'));
    let p = this.#finalizing.get(broadcastId);
    if (!p) {
      p = this.#finalize(broadcastId, this.#abort.signal)
        .then(() => void this.#retryAt.delete(broadcastId))
        .catch(async (err: unknown) => {
          await this.#failed(broadcastId, err);
          throw err;
        })
        .finally(() => this.#finalizing.delete(broadcastId));
      this.#finalizing.set(broadcastId, p);
    }
    return p;
  }

  async #failed(broadcastId: string, err: unknown): Promise<void> {
    const message = err instanceof Error ? err.message : String(err);
    if (this.#abort.signal.aborted || (err instanceof FfmpegRunError && (err.aborted || err.killedExternally))) {
      this.#log.warn('archive finalization interrupted; it resumes at the next sweep or start', { broadcastId, error: message });
      return;
    }
    if (isDbUnavailable(err)) {
      this.#log.warn('archive finalization waits for the database', { broadcastId, error: message });
      return;
    }
    const reason = `could not finalize the archive: ${message}`;
    const tries = (this.#retryAt.get(broadcastId)?.tries ?? 0) + 1;
    this.#retryAt.set(broadcastId, { at: Date.now() + FINALIZE_RETRY_MS * 2 ** (tries - 1), tries });
    const permanent = err instanceof PermanentArchiveError;
    const failed = await (permanent ? this.repo.fail(broadcastId, reason).then(() => true) : this.repo.finalizeFailed(broadcastId, reason, MAX_FINALIZE_ATTEMPTS)).catch(() => false);
    if (failed) this.#retryAt.delete(broadcastId);
    this.#log.error(failed ? `${reason}; the archive is failed` : `${reason}; trying again later`, { broadcastId, permanent });
  }

  async #finalize(broadcastId: string, signal: AbortSignal): Promise<void> {
    const t0 = performance.now();
    const steps: Record<string, number> = {};
    const step = (name: string, since: number) => (steps[name] = Math.round(performance.now() - since));
    const rec = await this.repo.recording(broadcastId);
    if (!rec) throw new PermanentArchiveError(`no broadcast ${broadcastId}`);
    if (rec.archiveStatus !== 'recording' && rec.archiveStatus !== 'uploading') return;
    if (!rec.hlsDir || !rec.spoolDir || !rec.keyPrefix) throw new PermanentArchiveError('the broadcast was never recorded');
    await this.#queueStraySegments(rec, signal);
    const spool = rec.spoolDir;
    await fsp.mkdir(spool, { recursive: true });

    const segments = await this.repo.objects(broadcastId, 'segment');
    if (segments.length === 0) throw new PermanentArchiveError('no audio was recorded');
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
      await remuxToM4a(splitRuns(segments), audioPath, { bitrateKbps: this.#aacBitrateKbps, signal, timeoutMs: REMUX_TIMEOUT_MS, log: this.#log });
      await this.#enqueueFile(rec, 'audio', 'audio.m4a', audioPath, { durationSeconds: await probeDuration(audioPath, { signal }), mediaStart: 0 });
    } catch (err) {
      // A broadcast stopped within moments of starting may hold no audio frame at all: nothing to remux.
      if (duration >= 1 || (err instanceof FfmpegRunError && (err.aborted || err.killedExternally))) throw err;
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
      await this.#enqueueFile(rec, 'track', `tracks/${f}`, local, { performerId, durationSeconds: await probeDuration(local, { signal }), mediaStart: 0 });
    }

    step('tracks', t);
    // The manifest: every object with its size, duration and sha256.
    t = performance.now();
    const objects = (await this.repo.objects(broadcastId)).filter((o) => o.kind !== 'manifest');
    const manifest = buildManifest(rec, duration, objects, performers);
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

  /** Segment files on disk that never made it into the queue (a crash before the sink saw them). */
  async #queueStraySegments(rec: Recording, signal: AbortSignal): Promise<void> {
    const known = new Set((await this.repo.objects(rec.id, 'segment')).map((o) => o.seq));
    const files = (await fsp.readdir(rec.hlsDir!).catch(() => [] as string[])).filter((f) => SEGMENT_RE.test(f)).sort();
    for (const f of files) {
      const seq = Number(SEGMENT_RE.exec(f)![1]);
      if (known.has(seq)) continue;
      const local = path.join(rec.hlsDir!, f);
      this.#log.warn('queueing a segment the sink missed', { broadcastId: rec.id, file: f });
      await this.#enqueueFile(rec, 'segment', `hls/${f}`, local, { seq, durationSeconds: await probeDuration(local, { signal }) });
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

  /**
   * Shutdown: waits for the finalizations running or due now (those of the broadcasts just ended, and any still in
   * flight) until `deadline` (epoch ms), then aborts what is still running: it resumes at the next start. Returns
   * whether nothing was left unfinished, and the broadcasts it waited for (their uploads are next).
   */
  async settle(deadline: number): Promise<{ complete: boolean; broadcasts: string[] }> {
    const seen = new Set(this.#finalizing.keys());
    let timer: NodeJS.Timeout | undefined;
    const timeUp = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), Math.max(0, deadline - Date.now()))));
    const done = (async () => {
      const scan = this.finalizePending();
      // The scan starts a finalization per due archive: note them as they start.
      while (this.#pendingScan) {
        for (const id of this.#finalizing.keys()) seen.add(id);
        await Promise.race([scan, new Promise((r) => setTimeout(r, 50))]);
      }
      for (const id of this.#finalizing.keys()) seen.add(id);
      await Promise.allSettled([...this.#finalizing.values()]);
      return 'done' as const;
    })();
    const outcome = await Promise.race([done, timeUp]);
    clearTimeout(timer);
    if (outcome === 'done') return { complete: true, broadcasts: [...seen] };
    this.#log.warn('shutdown: archive finalization did not finish within the grace; it resumes at the next start', { running: [...this.#finalizing.keys()] });
    this.#abort.abort();
    await Promise.allSettled([...this.#finalizing.values()]);
    return { complete: false, broadcasts: [...seen] };
  }

  /** Stops finalizing (what runs is aborted and resumes at the next start) and the upload queue. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#abort.abort();
    await this.#pendingScan;
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
    // The FFmpeg runs, from the segments (a run after a crash-restart starts at a DISCONTINUITY): the same whichever
    // process finalizes.
    runs: objects
      .filter((o) => o.kind === 'segment')
      .sort((a, b) => (a.seq ?? 0) - (b.seq ?? 0))
      .filter((o, i) => i === 0 || o.discontinuity)
      .map((o, index) => ({ index, startSeconds: Number((index === 0 ? 0 : o.mediaStart ?? 0).toFixed(6)) })),
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
