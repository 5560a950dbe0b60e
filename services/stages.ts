import crypto from 'node:crypto';
import path from 'node:path';
import { endPlaylist } from '../pipelines/hls/playlist.ts';
import { MIX_PLAYLIST_NAME, PLAYLIST_NAME } from '../pipelines/mixer/ffmpegArgs.ts';
import type { Archiver } from './archive/archiver.ts';
import type { TimelineService } from './timeline/service.ts';
import type { Config } from './config.ts';
import { BroadcastRepo } from './db/broadcasts.ts';
import type { Db } from './db/db.ts';
import { PerformerSessionRepo, StageRepo } from './db/repositories.ts';
import { WriteBehind } from './db/writeBehind.ts';
import type { Logger } from './logger.ts';
import { RequestError } from './sfu/errors.ts';
import type { StageRegistry } from './sfu/registry.ts';
import type { Stage } from './sfu/stage.ts';
import type { PerformerInfo, StageStatus } from './shared/protocol.ts';
import type { LiveSnapshot } from './usage.ts';

export interface StageUrls {
  performerUrl: string;
  listenUrl: string;
  hlsUrl: string;
}

export interface StageView {
  id: string;
  title: string;
  status: StageStatus;
  performers: PerformerInfo[];
  hlsUrl: string;
  listenUrl: string;
  startedAt: string | null;
  endedAt: string | null;
}

export function hashKey(key: string): string {
  return crypto.createHash('sha256').update(key, 'utf8').digest('hex');
}

/** Constant-time comparison of a presented key against the stored hash. */
export function keyMatches(presented: string, storedHash: string): boolean {
  const a = Buffer.from(hashKey(presented), 'hex');
  const b = Buffer.from(storedHash, 'hex');
  return a.length === b.length && crypto.timingSafeEqual(a, b);
}

/** Stage records (PostgreSQL) joined with their live media (the registry). */
export class StageService {
  readonly #stages: StageRepo;
  readonly #registry: StageRegistry;
  readonly #log: Logger;
  readonly #broadcasts: BroadcastRepo;
  readonly #baseUrl: () => string;
  readonly #hlsBase: () => string;
  readonly #cdnDir: string;
  readonly #hls: Config['hls'];
  readonly #maxPerformers: number;
  readonly #archiver: Archiver | null;
  readonly #writes: WriteBehind;
  /** Archives being finalized after their broadcast ended. */
  readonly #finalizing = new Set<Promise<void>>();
  /** The timeline of each broadcast (set by the composition root). */
  timeline: TimelineService | null = null;
  /** Open broadcast per live stage. */
  readonly #live = new Map<string, string>();
  /** Start/stop of one stage run one at a time. */
  readonly #transitions = new Map<string, Promise<unknown>>();
  /** Shutting down: no new stage, broadcast or performer (the one place this is decided; see drain()). */
  #draining = false;

  constructor(args: {
    db: Db;
    registry: StageRegistry;
    log: Logger;
    baseUrl: () => string;
    publicHlsBaseUrl: string | null;
    cdnDir: string;
    hls: Config['hls'];
    maxPerformers: number;
    archiver?: Archiver | null;
    /** Writes that must outlive a database outage (performers on and off air, sessions). */
    writes?: WriteBehind;
  }) {
    this.#archiver = args.archiver ?? null;
    this.#writes = args.writes ?? new WriteBehind({ db: args.db, log: args.log });
    this.#stages = new StageRepo(args.db);
    this.#broadcasts = new BroadcastRepo(args.db);
    this.#cdnDir = args.cdnDir;
    this.#hls = args.hls;
    this.#maxPerformers = args.maxPerformers;
    this.#registry = args.registry;
    this.#log = args.log.child({ component: 'stages' });
    this.#baseUrl = args.baseUrl;
    this.#hlsBase = () => args.publicHlsBaseUrl ?? `${args.baseUrl()}/live`;
    this.#registry.on('stageOpened', (stage) => this.#recordSessions(stage));
  }

  urls(id: string, performerKey?: string): StageUrls {
    const base = this.#baseUrl();
    return {
      performerUrl: `${base}/stage/${encodeURIComponent(id)}${performerKey ? `?key=${encodeURIComponent(performerKey)}` : ''}`,
      listenUrl: `${base}/listen/${encodeURIComponent(id)}`,
      hlsUrl: `${this.#hlsBase()}/${encodeURIComponent(id)}/index.m3u8`,
    };
  }

  /** From now on new stages, going on air and joins are refused with UNAVAILABLE, and /healthz says `draining`. */
  drain(): void {
    if (this.#draining) return;
    this.#draining = true;
    this.#log.info('draining: new stages, broadcasts and joins are refused');
  }

  get draining(): boolean {
    return this.#draining;
  }

  /** Throws UNAVAILABLE while draining. */
  assertAccepting(): void {
    if (this.#draining) throw new RequestError('UNAVAILABLE', 'the server is shutting down');
  }

  async create(title: string): Promise<{ id: string; title: string; status: StageStatus; performerKey: string } & StageUrls> {
    this.assertAccepting();
    const id = crypto.randomBytes(9).toString('base64url');
    // 192 random bits; only its hash is stored.
    const performerKey = crypto.randomBytes(24).toString('base64url');
    await this.#stages.create({ id, title, performerKeyHash: hashKey(performerKey) });
    this.#log.info('stage created', { stageId: id });
    return { id, title, status: 'idle', performerKey, ...this.urls(id, performerKey) };
  }

  async view(id: string): Promise<StageView | null> {
    const rec = await this.#stages.get(id);
    if (!rec) return null;
    const { hlsUrl, listenUrl } = this.urls(id);
    return {
      id: rec.id,
      title: rec.title,
      status: rec.status as StageStatus,
      performers: this.#registry.get(id)?.performers.map((p) => p.info()) ?? [],
      hlsUrl,
      listenUrl,
      startedAt: rec.startedAt?.toISOString() ?? null,
      endedAt: rec.endedAt?.toISOString() ?? null,
    };
  }

  /** Checks a performer key. Unknown stages and wrong keys are told apart: the stage id is not a secret. */
  async checkKey(id: string, key: string): Promise<{ id: string; title: string; status: StageStatus }> {
    const rec = await this.#stages.get(id);
    if (!rec) throw new RequestError('NOT_FOUND', `no stage ${id}`);
    if (!keyMatches(key, rec.performerKeyHash)) throw new RequestError('UNAUTHORIZED', 'wrong performer key for this stage');
    return { id: rec.id, title: rec.title, status: rec.status as StageStatus };
  }

  /** checkKey, and the stage must still be open to performers. */
  async authorize(id: string, key: string): Promise<{ id: string; title: string; status: StageStatus }> {
    const rec = await this.checkKey(id, key);
    if (rec.status === 'ended') throw new RequestError('INVALID_STATE', 'this stage has ended');
    return rec;
  }

  /** Where the stage's HLS is written. */
  hlsDir(id: string): string {
    return path.join(this.#cdnDir, 'live', id);
  }

  #serialized<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.#transitions.get(id) ?? Promise.resolve();
    const next = prev.catch(() => undefined).then(fn);
    this.#transitions.set(id, next);
    void next.finally(() => {
      if (this.#transitions.get(id) === next) this.#transitions.delete(id);
    }).catch(() => undefined);
    return next;
  }

  /**
   * Goes on air: the mix starts (with or without performers) and HLS appears. Starting a live stage again is a no-op
   * (`changed: false`); an ended stage cannot start again.
   */
  start(id: string): Promise<{ view: StageView; changed: boolean }> {
    return this.#serialized(id, async () => {
      this.assertAccepting();
      const rec = await this.#stages.get(id);
      if (!rec) throw new RequestError('NOT_FOUND', `no stage ${id}`);
      if (rec.status === 'ended') throw new RequestError('INVALID_STATE', 'this stage has ended; create a new one');
      const stage = await this.#registry.open(id);
      const wasLive = stage.onAir;
      const broadcastId = this.#live.get(id) ?? crypto.randomUUID();
      const mixer = await stage.goLive({
        outDir: this.hlsDir(id),
        slots: this.#maxPerformers,
        segmentSeconds: this.#hls.segmentSeconds,
        listSize: this.#hls.listSize,
        aacBitrateKbps: this.#hls.aacBitrateKbps,
        ...(this.#archiver ? { tracksDir: this.#archiver.tracksDir(broadcastId) } : {}),
      });
      if (!wasLive || rec.status !== 'live') {
        await this.#stages.setStatus(id, 'live');
        await this.#broadcasts.start({ id: broadcastId, stageId: id });
        this.#live.set(id, broadcastId);
        await this.#archiver?.begin({ broadcastId, stageId: id, hlsDir: this.hlsDir(id), mixer });
        this.timeline?.begin(id, broadcastId, mixer);
        for (const p of stage.performers) if (p.producer) void this.#onAir(broadcastId, p.id, p.displayName);
        this.#log.info('stage on air', { stageId: id, broadcastId });
      }
      return { view: (await this.view(id))!, changed: !wasLive };
    });
  }

  /** Goes off air: the playlist gets ENDLIST and the stage ends. Stopping an ended stage is a no-op. */
  stop(id: string, reason = 'stopped'): Promise<{ view: StageView; changed: boolean }> {
    return this.#serialized(id, async () => {
      const rec = await this.#stages.get(id);
      if (!rec) throw new RequestError('NOT_FOUND', `no stage ${id}`);
      if (rec.status === 'ended') return { view: (await this.view(id))!, changed: false };
      if (rec.status !== 'live') throw new RequestError('INVALID_STATE', 'this stage is not on air');
      const stage = this.#registry.get(id);
      const runs = stage?.mixer?.runs;
      await this.timeline?.end(id);
      await stage?.goOffAir();
      await this.#stages.setStatus(id, 'ended');
      const broadcastId = this.#live.get(id);
      this.#live.delete(id);
      if (broadcastId) {
        await this.#broadcasts.end(broadcastId, reason);
        this.#finalizeArchive(broadcastId, runs);
      }
      this.#log.info('stage off air', { stageId: id, broadcastId, reason });
      return { view: (await this.view(id))!, changed: true };
    });
  }

  #finalizeArchive(broadcastId: string, runs: Parameters<Archiver['finalize']>[1]): void {
    if (!this.#archiver) return;
    const p = this.#archiver.finalize(broadcastId, runs).catch(() => undefined);
    this.#finalizing.add(p);
    void p.finally(() => this.#finalizing.delete(p));
  }

  /** Ends every broadcast on air (graceful shutdown), and waits for their archives to be finalized and queued. */
  async stopAll(reason: string): Promise<void> {
    await Promise.all(
      [...this.#live.keys()].map((id) =>
        this.stop(id, reason).catch((err: unknown) => this.#log.error('could not stop stage', { stageId: id, error: String(err) })),
      ),
    );
    await Promise.allSettled([...this.#finalizing]);
  }

  /** The stage's broadcast on air, or null. */
  liveBroadcast(stageId: string): string | null {
    return this.#live.get(stageId) ?? null;
  }

  /** Live stages and who is on air in each, for the usage meter. */
  liveSnapshot(): LiveSnapshot[] {
    const out: LiveSnapshot[] = [];
    for (const [stageId, broadcastId] of this.#live) {
      const stage = this.#registry.get(stageId);
      out.push({ stageId, broadcastId, performerIds: stage ? stage.performers.filter((p) => p.producer).map((p) => p.id) : [] });
    }
    return out;
  }

  /** At start-up: broadcasts a crash left open are ended, and their playlists closed. */
  async endOrphanedBroadcasts(): Promise<number> {
    const rows = await this.#stages.listByStatus('live');
    for (const rec of rows) {
      await endPlaylist(path.join(this.hlsDir(rec.id), MIX_PLAYLIST_NAME));
      await endPlaylist(path.join(this.hlsDir(rec.id), PLAYLIST_NAME));
      await this.#stages.setStatus(rec.id, 'ended');
    }
    await this.#broadcasts.closeAllOpen('server restarted');
    return rows.length;
  }

  #onAir(broadcastId: string, performerId: string, displayName: string): Promise<void> {
    const at = new Date();
    return this.#writes.write('performer on air', (db) => new BroadcastRepo(db).performerOnAir({ broadcastId, performerId, displayName, at })).then(
      (written) => {
        if (!written) this.#log.error('could not record performer on air', { broadcastId, performerId });
      },
    );
  }

  #recordSessions(stage: Stage): void {
    // Buffered writes run in order, so a session's close always follows its open.
    const write = (label: string, fn: Parameters<WriteBehind['write']>[1], context: Record<string, unknown>) =>
      void this.#writes.write(label, fn).then((written) => {
        if (!written) this.#log.error(`could not record ${label}`, { stageId: stage.id, ...context });
      });
    stage.on('performerJoined', (p) => {
      const at = new Date();
      write('performer session', (db) => new PerformerSessionRepo(db).open({ id: p.id, stageId: stage.id, displayName: p.displayName, at }), { performerId: p.id });
    });
    stage.on('performerUpdated', (p) => {
      const broadcastId = this.#live.get(stage.id);
      if (broadcastId && p.producer) void this.#onAir(broadcastId, p.id, p.displayName);
    });
    stage.on('performerLeft', (performerId, reason) => {
      const at = new Date();
      const broadcastId = this.#live.get(stage.id);
      if (broadcastId) write('performer off air', (db) => new BroadcastRepo(db).performerOffAir(broadcastId, performerId, at), { broadcastId, performerId });
      write('performer session end', (db) => new PerformerSessionRepo(db).close(performerId, reason, at), { performerId });
    });
  }
}
