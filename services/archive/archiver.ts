// The archive: while a broadcast is on air, its segment sink (services/archive/sink.ts) queues every finished HLS
// segment (fMP4) for upload, and each FFmpeg run's init section before the run's first segment; once its end is
// recorded, finalization makes the VOD playlist, the whole-broadcast .m4a, each performer's track and a manifest, and
// queues them too.
// Key layout (docs/archive.md): stages/<stageId>/broadcasts/<broadcastId>/{hls/init_<run>.mp4, hls/seg_NNNNN.m4s,
// hls/index.m3u8, audio.m4a, tracks/<performerId>.opus, manifest.json}.
//
// Finalization is a durable step: it is due for every ended broadcast whose archive is still `recording` (the
// database says so, not this process's memory), so it runs when a broadcast ends, again at every sweep when an
// attempt failed, and at the next start when the process stopped first. An attempt interrupted by a shutdown (our
// abort, or a signal that killed its FFmpeg) is not counted; one that failed on its own is, and after
// MAX_FINALIZE_ATTEMPTS the archive is marked failed.
import fsp from 'node:fs/promises';
import path from 'node:path';
import { initTiming, segmentTiming, type InitTiming, type SegmentTiming } from '../../pipelines/archive/fmp4.ts';
import { FfmpegRunError, probeDuration } from '../../pipelines/ffmpeg/index.ts';
import { PLAYLIST_NAME } from '../../pipelines/mixer/ffmpegArgs.ts';
import type { Mixer } from '../../pipelines/mixer/mixer.ts';
import { buildVodPlaylist, remuxToM4a, type RemuxRun } from '../../pipelines/archive/vod.ts';
import { dateRangeTag } from '../../pipelines/hls/dateRange.ts';
import { INIT_FILE_RE, SEGMENT_FILE_RE } from '../../pipelines/hls/liveWriter.ts';
import { parseMediaPlaylist } from '../../pipelines/hls/playlist.ts';
import type { BroadcastArchive, SegmentSink, Writes } from '../broadcast/services.ts';
import { ArchiveRepo, type ArchiveObject, type NewArchiveObject, type Recording } from '../db/archive.ts';
import { BroadcastRepo } from '../db/broadcasts.ts';
import type { Db } from '../db/db.ts';
import { TimelineRepo } from '../db/timeline.ts';
import { isDbUnavailable } from '../db/writeBehind.ts';
import type { Logger } from '../logger.ts';
import { buildChaptersVtt, buildTimelineFile, toDateRange } from '../timeline/files.ts';
import { sha256File, UploadQueue } from './queue.ts';
import { ArchiveSegmentSink, INIT_CONTENT_TYPE, SEGMENT_CONTENT_TYPE } from './sink.ts';
import type { ObjectStore } from './store.ts';

export const CONTENT_TYPES = {
  segment: SEGMENT_CONTENT_TYPE,
  init: INIT_CONTENT_TYPE,
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
  /** Cluster mode: this node's id; it then finalizes and uploads only the broadcasts it recorded. */
  nodeId?: string | null;
  queue: Omit<ConstructorParameters<typeof UploadQueue>[0], 'repo' | 'store' | 'log'>;
}

/** The archive can never be finalized (nothing was recorded): retrying will not help. */
class PermanentArchiveError extends Error {}

/** What the search for stray segments needs of a segment already queued. */
type Placed = Pick<ArchiveObject, 'seq' | 'run' | 'mediaStart' | 'durationSeconds' | 'localPath'>;

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
    this.repo = new ArchiveRepo(opts.db, opts.nodeId ?? null);
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
    await this.#queueStrays(rec, signal);
    const spool = rec.spoolDir;
    await fsp.mkdir(spool, { recursive: true });

    const segments = await this.repo.objects(broadcastId, 'segment');
    if (segments.length === 0) throw new PermanentArchiveError('no audio was recorded');
    const duration = segments.reduce((s, o) => s + (o.durationSeconds ?? 0), 0);
    const inits = new Map((await this.repo.objects(broadcastId, 'init')).map((o) => [o.run, o]));
    const initOf = (o: ArchiveObject): ArchiveObject => {
      const init = inits.get(o.run);
      if (!init) throw new PermanentArchiveError(`${path.posix.basename(o.key)} has no init section (run ${o.run}): it cannot be decoded`);
      return init;
    };

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
      map: path.posix.basename(initOf(o).key),
    })), dateRanges));
    await this.#enqueueFile(rec, 'playlist', `hls/${PLAYLIST_NAME}`, vodPath, { durationSeconds: duration, mediaStart: 0 });
    step('playlist', t);
    // The whole broadcast as one audio file, on the programme clock.
    t = performance.now();
    const audioPath = path.join(spool, 'audio.m4a');
    try {
      await remuxToM4a(splitRuns(segments, initOf), audioPath, { bitrateKbps: this.#aacBitrateKbps, signal, timeoutMs: REMUX_TIMEOUT_MS, log: this.#log });
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

  /**
   * Segments on disk that never made it into the queue (a crash before the sink saw them), and the init sections
   * their runs need. Their timing comes from their own moof boxes (no ffprobe: a segment alone has no moov). A stray
   * segment belongs to the run of the segment before it when it carries on from it (its decode time is where that one
   * ended), otherwise to the next run: the newest init section written before it (the writer writes a run's init
   * section before any of its fragments). Its place on the programme clock: from the segment before it in the same
   * run (their decode times' difference), or, first of its run, the run's start as the sink recorded it with the init
   * section or as the live playlist still lists it.
   */
  async #queueStrays(rec: Recording, signal: AbortSignal): Promise<void> {
    const dir = rec.hlsDir!;
    const files = await fsp.readdir(dir).catch(() => [] as string[]);
    const placed: Placed[] = await this.repo.objects(rec.id, 'segment');
    const known = new Set(placed.map((o) => o.seq));
    const stray = files
      .flatMap((f) => {
        const m = SEGMENT_FILE_RE.exec(f);
        // Below its first segment: an earlier broadcast of this stage that left files in the same folder.
        return m && !known.has(Number(m[1])) && Number(m[1]) >= rec.hlsFirstMsn ? [{ seq: Number(m[1]), file: f }] : [];
      })
      .sort((a, b) => a.seq - b.seq);
    const inits = new Map((await this.repo.objects(rec.id, 'init')).map((o) => [o.run, o.mediaStart]));
    const initFiles = new Map<number, { file: string; mtimeNs: bigint }>();
    for (const f of files) {
      const m = INIT_FILE_RE.exec(f);
      if (m && Number(m[1]) < rec.hlsFirstRun) continue;
      const stat = m ? await fsp.stat(path.join(dir, f), { bigint: true }).catch(() => null) : null;
      if (m && stat) initFiles.set(Number(m[1]), { file: path.join(dir, f), mtimeNs: stat.mtimeNs });
    }
    const initTimings = new Map<number, InitTiming | null>();
    const initTimingOf = async (run: number | null): Promise<InitTiming | null> => {
      if (run === null) return null;
      if (!initTimings.has(run)) {
        const file = initFiles.get(run)?.file;
        initTimings.set(run, file ? await fsp.readFile(file).then(initTiming, () => null) : null);
      }
      return initTimings.get(run)!;
    };
    const timingOf = async (file: string, run: number | null): Promise<SegmentTiming | null> => {
      const init = await initTimingOf(run);
      return init ? fsp.readFile(file).then((b) => segmentTiming(b, init), () => null) : null;
    };
    // What the live playlist still lists: the PROGRAM-DATE-TIME of segments published just before a crash.
    const live = new Map(
      parseMediaPlaylist(await fsp.readFile(path.join(dir, PLAYLIST_NAME), 'utf8').catch(() => '')).segments.map((s) => [s.uri, s.programDateTime]),
    );
    const origin = rec.originAt?.getTime() ?? null;

    for (const { seq, file } of stray) {
      signal.throwIfAborted();
      const local = path.join(dir, file);
      const stat = await fsp.stat(local, { bigint: true }).catch(() => null);
      if (!stat) continue;
      const prev = placed.reduce<Placed | undefined>((a, o) => (o.seq !== null && o.seq < seq && (!a || o.seq > a.seq!) ? o : a), undefined);
      const prevTiming = prev ? await timingOf(prev.localPath, prev.run) : null;
      const asPrev = prev ? await timingOf(local, prev.run) : null;
      let run: number | null;
      if (prev && prevTiming && asPrev && Math.abs(asPrev.decodeTime - (prevTiming.decodeTime + prevTiming.duration)) < 1e-6) {
        run = prev.run;
      } else {
        const newer = [...initFiles].filter(([r]) => r > (prev?.run ?? -1));
        const before = newer.filter(([, i]) => i.mtimeNs <= stat.mtimeNs).map(([r]) => r);
        run = before.length > 0 ? Math.max(...before) : newer.length > 0 ? Math.min(...newer.map(([r]) => r)) : prev?.run ?? null;
      }
      const timing = run === prev?.run ? asPrev : await timingOf(local, run);
      if (run === null || !timing) {
        this.#log.warn('a segment the sink missed is left out: its init section or its timing cannot be read', { broadcastId: rec.id, file, run });
        continue;
      }
      const listed = live.get(file) ?? null;
      let mediaStart: number | null = null;
      if (prev && prev.run === run && prev.mediaStart !== null) {
        mediaStart = prev.mediaStart + (prevTiming ? timing.decodeTime - prevTiming.decodeTime : prev.durationSeconds ?? 0);
      } else {
        mediaStart = inits.get(run) ?? (listed && origin !== null ? (Date.parse(listed) - origin) / 1000 : null);
      }
      const programDateTime = listed ?? (mediaStart !== null && origin !== null ? new Date(origin + mediaStart * 1000).toISOString() : null);
      this.#log.warn('queueing a segment the sink missed', { broadcastId: rec.id, file, run });
      const row = { seq, run, durationSeconds: timing.duration, mediaStart, programDateTime, discontinuity: prev !== undefined && prev.run !== run };
      await this.#enqueueFile(rec, 'segment', `hls/${file}`, local, row);
      placed.push({ ...row, localPath: local });
    }
    // Every run with a segment has its init section queued (the sink queues it first; a stray's run may have none).
    for (const o of [...placed].sort((a, b) => a.seq! - b.seq!)) {
      const init = o.run === null || inits.has(o.run) ? undefined : initFiles.get(o.run);
      if (!init) continue;
      await this.#enqueueFile(rec, 'init', `hls/${path.basename(init.file)}`, init.file, { seq: o.run, run: o.run, mediaStart: o.mediaStart });
      inits.set(o.run, o.mediaStart);
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

/** Segments grouped into FFmpeg runs, each behind its init section, starting where it starts on the programme clock. */
function splitRuns(segments: readonly ArchiveObject[], initOf: (segment: ArchiveObject) => ArchiveObject): RemuxRun[] {
  const runs: RemuxRun[] = [];
  let run: number | null = null;
  for (const s of segments) {
    if (runs.length === 0 || s.run !== run) {
      runs.push({ init: initOf(s).localPath, segments: [], startSeconds: s.mediaStart });
      run = s.run;
    }
    runs[runs.length - 1]!.segments.push(s.localPath);
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
  /** FFmpeg runs that left segments: index (init_<index>.mp4), start on the programme clock, init section's key. */
  runs: { index: number; startSeconds: number; init: string | null }[];
  performers: { performerId: string; displayName: string; joinedAt: string; leftAt: string | null; joinOffsetSeconds: number | null; track: string | null }[];
  /** `run`: the FFmpeg run of a segment or init section (a segment decodes behind `hls/init_<run>.mp4`). */
  objects: { key: string; kind: string; contentType: string; size: number; sha256: string; durationSeconds: number | null; mediaStart: number | null;
    seq: number | null; run: number | null; performerId: string | null; programDateTime: string | null }[];
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
    // The FFmpeg runs, from the segments (each records its run): the same whichever process finalizes.
    runs: objects
      .filter((o) => o.kind === 'segment')
      .sort((a, b) => (a.seq ?? 0) - (b.seq ?? 0))
      .filter((o, i, all) => i === 0 || o.run !== all[i - 1]!.run)
      .map((o, i) => ({
        index: o.run ?? i,
        startSeconds: Number((o.mediaStart ?? 0).toFixed(6)),
        init: objects.find((x) => x.kind === 'init' && x.run === o.run)?.key ?? null,
      })),
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
      run: o.run,
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
