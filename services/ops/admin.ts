// The admin namespace (/admin): admins connect with the admin token in the handshake's auth and receive, about once a
// second while any is connected, a snapshot of the service (workers, stages, performers, consumers, listeners, the
// mix, archives), plus the performers' audio levels as they come (throttled, volatile). They send nothing.
// Cluster mode: the snapshot covers every node. The node an admin is connected to asks the others for theirs over the
// cluster's bus (services/cluster/events.ts) and merges them, each worker and stage marked with its node; levels of
// stages served elsewhere come with the snapshot, once a second.
import type { CallDesk } from '../calls/desk.ts';
import type { ClusterLink } from '../cluster/events.ts';
import type { Namespace, Server, Socket } from 'socket.io';
import type { Archiver } from '../archive/archiver.ts';
import { tokenMatches } from '../auth.ts';
import type { OnAir } from '../broadcast/onAir.ts';
import type { BroadcastEnded } from '../broadcast/services.ts';
import type { Logger } from '../logger.ts';
import type { StageRegistry } from '../sfu/registry.ts';
import type { Stage } from '../sfu/stage.ts';
import type { WorkerPool } from '../sfu/workerPool.ts';
import {
  ADMIN_NAMESPACE,
  ADMIN_SNAPSHOT_INTERVAL_MS,
  adminAuthSchema,
  type AdminArchive,
  type AdminConnectErrorData,
  type AdminLevel,
  type AdminServerEvents,
  type AdminSnapshot,
  type AdminStage,
} from '../shared/admin.ts';
import { adminContract } from '../shared/admin.ts';
import { RateLimiter } from '../limits.ts';
import { refuseUnknown } from '../signaling/requests.ts';
import type { StageCatalog } from '../stages/catalog.ts';
import { DB_READ_TIMEOUT_MS, stageFigures, withTimeout, type AppMetrics } from './metrics.ts';
import type { RecentProblems } from './problems.ts';

/** Levels go out at most this often per stage (the stage reports every 100 ms). */
export const LEVELS_MIN_INTERVAL_MS = 200;
/** A stage that closed stays in the snapshot this long, so its archive can be watched to the end. */
const RECENT_STAGE_MS = 15 * 60_000;
const MAX_RECENT_STAGES = 50;
/** Archive figures cost two queries per stage: they are refreshed at most this often. */
const ARCHIVE_REFRESH_MS = 2000;
/** Cluster mode: how long a snapshot waits for the other nodes' parts. */
const NODE_ANSWER_MS = 800;

type AdminSocket = Socket<Record<string, never>, AdminServerEvents>;
type AdminNamespace = Namespace<Record<string, never>, AdminServerEvents>;

class AdminConnectError extends Error {
  readonly data: AdminConnectErrorData;
  constructor(code: AdminConnectErrorData['code'], message: string) {
    super(message);
    this.data = { code, message };
  }
}

export interface AdminServiceDeps {
  io: Server;
  adminToken: string;
  pool: WorkerPool;
  registry: StageRegistry;
  stages: StageCatalog;
  onAir: OnAir;
  archiver: Archiver | null;
  metrics: AppMetrics;
  problems: RecentProblems;
  /** Call-in: the calls waiting and on air per stage. */
  calls?: Pick<CallDesk, 'counts'>;
  /** Cluster mode: the namespace is joined across nodes and the snapshot covers them all. */
  cluster?: ClusterLink | null;
  log: Logger;
}

export class AdminService {
  readonly #deps: AdminServiceDeps;
  readonly #nsp: AdminNamespace;
  readonly #log: Logger;
  readonly #startedAt = performance.now();
  /** Failed handshakes per address: 20 at once, then one a second. */
  readonly #failures = new RateLimiter({ capacity: 20, perSecond: 1 });
  readonly #stageListeners = new Map<Stage, () => void>();
  readonly #levels = new Map<string, AdminLevel[]>();
  readonly #levelSends = new Map<string, { lastMs: number; timer: NodeJS.Timeout | null }>();
  /** Stages shown recently (id → last time open or live), so an ended stage's archive stays visible a while. */
  readonly #recent = new Map<string, number>();
  readonly #archives = new Map<string, { atMs: number; value: Promise<AdminArchive | null> }>();
  /** How each recent stage's last broadcast ended, when it was not a plain stop (and its mix's failure, if any). */
  readonly #ends = new Map<string, { reason: string; ffmpegFailure: string | null; restarts: number }>();
  #timer: NodeJS.Timeout | null = null;
  #building: Promise<AdminSnapshot> | null = null;
  #closed = false;

  constructor(deps: AdminServiceDeps) {
    this.#deps = deps;
    this.#log = deps.log.child({ component: 'admin' });
    this.#nsp = deps.io.of(ADMIN_NAMESPACE);
    this.#nsp.use((socket, next) => {
      try {
        this.#authenticate(socket);
        next();
      } catch (err) {
        next(err instanceof AdminConnectError ? err : new AdminConnectError('BAD_REQUEST', 'invalid handshake'));
      }
    });
    this.#nsp.on('connection', (socket) => this.#onConnection(socket));
    if (deps.cluster) {
      deps.cluster.bus.attach(this.#nsp as unknown as Namespace);
      deps.cluster.bus.serve(this.#nsp as unknown as Namespace, 'snapshot', () => this.#local());
    }
    deps.registry.on('stageOpened', this.#watchStage);
    for (const stage of deps.registry.stages) this.#watchStage(stage);
  }

  /** A broadcast ended: a stage whose broadcast failed or was aborted keeps saying why. */
  broadcastEnded(e: BroadcastEnded): void {
    if (e.status === 'complete') {
      this.#ends.delete(e.stageId);
      return;
    }
    this.#ends.set(e.stageId, { reason: e.reason, ffmpegFailure: e.ffmpeg.failure, restarts: e.ffmpeg.restarts });
    this.#recent.set(e.stageId, Date.now());
  }

  /** Connected admins. */
  get connections(): number {
    return this.#nsp.sockets.size;
  }

  #authenticate(socket: AdminSocket): void {
    const address = socket.handshake.address;
    if (this.#failures.retryAfterSeconds(address) > 0) {
      throw new AdminConnectError('RATE_LIMITED', `too many failed admin logins; retry in ${this.#failures.retryAfterSeconds(address)} s`);
    }
    const refuse = (code: AdminConnectErrorData['code'], message: string): AdminConnectError => {
      this.#failures.take(address);
      this.#log.warn('admin connection refused', { address, code });
      return new AdminConnectError(code, message);
    };
    const auth: unknown = socket.handshake.auth;
    if (typeof auth !== 'object' || auth === null || !('token' in auth)) {
      throw refuse('UNAUTHORIZED', 'the admin token is required: connect with auth { token }');
    }
    const parsed = adminAuthSchema.safeParse(auth);
    if (!parsed.success) throw refuse('BAD_REQUEST', 'auth must be { token: string of 1-512 characters } and nothing else');
    if (!tokenMatches(parsed.data.token, this.#deps.adminToken)) throw refuse('UNAUTHORIZED', 'wrong admin token');
  }

  #onConnection(socket: AdminSocket): void {
    this.#log.info('admin connected', { socketId: socket.id, address: socket.handshake.address });
    socket.onAny((event: unknown, ...args: unknown[]) => refuseUnknown(adminContract, event, args));
    socket.on('disconnect', () => {
      if (this.#nsp.sockets.size === 0) this.#stopTimer();
    });
    void this.#snapshotOrNull().then((snap) => {
      if (snap && socket.connected) socket.emit('snapshot', snap);
    });
    if (!this.#timer && !this.#closed) {
      this.#timer = setInterval(() => {
        // A snapshot still being built (a slow database) is not waited for twice.
        if (this.#building) return;
        void this.#snapshotOrNull().then((snap) => {
          if (snap && !this.#closed) this.#nsp.local.emit('snapshot', snap);
        });
      }, ADMIN_SNAPSHOT_INTERVAL_MS);
    }
  }

  #stopTimer(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
  }

  async #snapshotOrNull(): Promise<AdminSnapshot | null> {
    try {
      return await this.snapshot();
    } catch (err) {
      this.#log.error('could not build the admin snapshot', { error: err instanceof Error ? err.stack : String(err) });
      return null;
    }
  }

  /** The current snapshot (cluster mode: of every node that answered). Concurrent callers share one build. */
  snapshot(): Promise<AdminSnapshot> {
    this.#merging ??= this.#merged().finally(() => (this.#merging = null));
    return this.#merging;
  }

  #merging: Promise<AdminSnapshot> | null = null;

  /** This node's own snapshot. Concurrent callers share one build. */
  #local(): Promise<AdminSnapshot> {
    this.#building ??= this.#build().finally(() => (this.#building = null));
    return this.#building;
  }

  async #merged(): Promise<AdminSnapshot> {
    const cluster = this.#deps.cluster;
    if (!cluster) return this.#local();
    const [self, expected] = await Promise.all([this.#local(), cluster.otherNodes().catch(() => 0)]);
    const nsp = this.#nsp as unknown as Namespace;
    const answers = expected > 0 ? await cluster.bus.ask(nsp, 'snapshot', {}, { timeoutMs: NODE_ANSWER_MS, enough: (n) => n >= expected }) : [];
    const others = (answers as AdminSnapshot[]).filter((a) => typeof a?.node === 'string' && Array.isArray(a.workers) && Array.isArray(a.stages));
    others.sort((a, b) => String(a.node).localeCompare(String(b.node)));
    const all = [self, ...others];
    const sum = (f: (t: AdminSnapshot['totals']) => number | null) => all.reduce<number | null>((n, s) => (n === null || f(s.totals) === null ? null : n + f(s.totals)!), 0);
    const problems = [...self.problems, ...others.flatMap((o) => o.problems.map((p) => `${o.node}: ${p}`))];
    if (others.length < expected) problems.push(`${expected - others.length} other node(s) did not answer within ${NODE_ANSWER_MS} ms`);
    return {
      ...self,
      workers: all.flatMap((s) => s.workers),
      // A stage another node serves now is shown there only (not also as the node that served it before).
      stages: all
        .flatMap((s) => s.stages)
        .filter((r, _, rows) => r.worker !== null || !rows.some((o) => o.id === r.id && o.worker !== null))
        .sort((a, b) => rank(a) - rank(b) || (a.title ?? a.id).localeCompare(b.title ?? b.id)),
      levels: Object.assign({}, ...others.map((o) => o.levels), self.levels) as AdminSnapshot['levels'],
      totals: {
        stagesLive: sum((t) => t.stagesLive)!,
        performers: sum((t) => t.performers)!,
        consumers: sum((t) => t.consumers)!,
        listeners: sum((t) => t.listeners)!,
        callsWaiting: sum((t) => t.callsWaiting)!,
        callsOnAir: sum((t) => t.callsOnAir)!,
        uploadQueueDepth: sum((t) => t.uploadQueueDepth),
      },
      problems,
    };
  }

  async #build(): Promise<AdminSnapshot> {
    const { pool, registry, onAir, metrics } = this.#deps;
    const problems = new Set<string>(this.#deps.problems.list());
    const now = Date.now();

    const live = new Set(onAir.live().map((s) => s.stageId));
    for (const s of registry.stages) this.#recent.set(s.id, now);
    for (const id of live) this.#recent.set(id, now);
    for (const [id, at] of this.#recent) if (now - at > RECENT_STAGE_MS) this.#recent.delete(id);
    for (const id of this.#ends.keys()) if (!this.#recent.has(id)) this.#ends.delete(id);
    while (this.#recent.size > MAX_RECENT_STAGES) this.#recent.delete(this.#recent.keys().next().value!);

    const [workers, queueStats, stageRows] = await Promise.all([
      metrics.cpu.sample(),
      metrics.queueStats(),
      Promise.all([...this.#recent.keys()].map((id) => this.#stage(id, live.has(id), now, problems))),
    ]);
    if (this.#deps.archiver && !queueStats) problems.add('upload queue: the database did not answer');

    const workerIndexOf = new Map(pool.workers.map((w) => [w.worker.pid, w.index]));
    for (const row of stageRows) {
      const stage = registry.get(row.id);
      row.worker = stage ? (workerIndexOf.get(stage.worker.pid) ?? null) : null;
    }
    stageRows.sort((a, b) => rank(a) - rank(b) || (a.title ?? a.id).localeCompare(b.title ?? b.id));

    const levels: Record<string, AdminLevel[]> = {};
    for (const row of stageRows) {
      const l = this.#levels.get(row.id);
      if (l) levels[row.id] = l;
    }
    const node = this.#deps.cluster?.nodeId ?? null;
    return {
      at: new Date(now).toISOString(),
      node,
      uptimeSeconds: Math.round((performance.now() - this.#startedAt) / 100) / 10,
      workers: workers.map((w) => ({
        node,
        index: w.index,
        pid: w.pid,
        alive: w.alive,
        cpuPercent: w.cpuPercent === null ? null : round1(w.cpuPercent),
        cpuSeconds: w.cpuSeconds === null ? null : Math.round(w.cpuSeconds * 1000) / 1000,
        routers: w.routers,
      })),
      stages: stageRows,
      levels,
      totals: {
        stagesLive: live.size,
        performers: stageRows.reduce((n, s) => n + s.performers.length, 0),
        consumers: stageRows.reduce((n, s) => n + s.consumers, 0),
        listeners: stageRows.reduce((n, s) => n + s.listeners, 0),
        callsWaiting: stageRows.reduce((n, s) => n + s.calls.waiting, 0),
        callsOnAir: stageRows.reduce((n, s) => n + s.calls.onAir, 0),
        uploadQueueDepth: queueStats ? queueStats.pending + queueStats.uploading : null,
      },
      problems: [...problems],
    };
  }

  async #stage(id: string, isLive: boolean, now: number, problems: Set<string>): Promise<AdminStage> {
    const stage = this.#deps.registry.get(id);
    const [view, archive] = await Promise.all([
      withTimeout(this.#deps.stages.view(id), DB_READ_TIMEOUT_MS, 'the database').catch((err: unknown) => {
        problems.add(`stages: ${errorText(err)}`);
        return null;
      }),
      withTimeout(this.#archive(id), DB_READ_TIMEOUT_MS, 'the database').catch((err: unknown) => {
        problems.add(`archive: ${errorText(err)}`);
        return null;
      }),
    ]);
    const f = stage ? stageFigures(stage, now) : null;
    const mixer = stage?.broadcast?.mixer ?? null;
    const end = this.#ends.get(id) ?? null;
    const performers = (stage?.performers ?? []).map((p) => ({
      id: p.id,
      displayName: p.displayName,
      role: p.role,
      muted: p.muted,
      publishing: p.producer !== null && !p.producer.closed,
      onAir: mixer?.attached.has(p.id) ?? false,
      consumers: p.consumerCount,
    }));
    return {
      node: this.#deps.cluster?.nodeId ?? null,
      id,
      title: view?.title ?? null,
      status: view?.status ?? (isLive ? 'live' : 'unknown'),
      worker: null,
      performers,
      otherMixInputs: mixer ? [...mixer.attached.keys()].filter((pid) => !stage?.performer(pid)).length : 0,
      consumers: f?.consumers ?? 0,
      onAirSeconds: mixer ? round1((now - mixer.originWallMs) / 1000) : null,
      listeners: this.#deps.metrics.listeners.count(id, now),
      mixerLagSeconds: f?.mixerLagSeconds == null ? null : Math.round(f.mixerLagSeconds * 1000) / 1000,
      ffmpeg: mixer
        ? { pid: mixer.ffmpeg.pid, restarts: mixer.ffmpeg.restarts, failure: mixer.ffmpeg.failure }
        : end?.ffmpegFailure
          ? { pid: null, restarts: end.restarts, failure: end.ffmpegFailure }
          : null,
      endReason: mixer ? null : end?.reason ?? null,
      archive,
      calls: this.#deps.calls?.counts().byStage.get(id) ?? { waiting: 0, onAir: 0 },
    };
  }

  /** The stage's current or last broadcast's archive (cached for ARCHIVE_REFRESH_MS). */
  #archive(stageId: string): Promise<AdminArchive | null> {
    const archiver = this.#deps.archiver;
    if (!archiver) return Promise.resolve(null);
    const cached = this.#archives.get(stageId);
    const now = performance.now();
    if (cached && now - cached.atMs < ARCHIVE_REFRESH_MS) return cached.value;
    const value = (async (): Promise<AdminArchive | null> => {
      const rec = (await archiver.repo.recordingsForStage(stageId))[0];
      if (!rec) return null;
      const segments = await archiver.repo.objects(rec.id, 'segment');
      return {
        broadcastId: rec.id,
        status: rec.archiveStatus,
        error: rec.archiveError,
        startedAt: rec.startedAt.toISOString(),
        endedAt: rec.endedAt?.toISOString() ?? null,
        segments: { queued: segments.length, uploaded: segments.filter((s) => s.state === 'uploaded').length },
      };
    })();
    // A failed read is not cached: the next snapshot tries again.
    value.catch(() => this.#archives.delete(stageId));
    this.#archives.set(stageId, { atMs: now, value });
    for (const id of this.#archives.keys()) if (!this.#recent.has(id)) this.#archives.delete(id);
    return value;
  }

  readonly #watchStage = (stage: Stage): void => {
    if (this.#closed || this.#stageListeners.has(stage)) return;
    const onLevels = (levels: { performerId: string; volume: number }[]) => this.#onLevels(stage.id, levels);
    const onClose = () => {
      this.#stageListeners.get(stage)?.();
      this.#levels.delete(stage.id);
    };
    stage.on('audioLevels', onLevels);
    stage.once('@close', onClose);
    this.#stageListeners.set(stage, () => {
      stage.off('audioLevels', onLevels);
      stage.off('@close', onClose);
      this.#stageListeners.delete(stage);
      const send = this.#levelSends.get(stage.id);
      if (send?.timer) clearTimeout(send.timer);
      this.#levelSends.delete(stage.id);
    });
  };

  #onLevels(stageId: string, levels: { performerId: string; volume: number }[]): void {
    this.#levels.set(stageId, levels.map((l) => ({ performerId: l.performerId, volume: round1(l.volume) })));
    if (this.#closed || this.#nsp.sockets.size === 0) return;
    let send = this.#levelSends.get(stageId);
    if (!send) {
      send = { lastMs: 0, timer: null };
      this.#levelSends.set(stageId, send);
    }
    // A send is already scheduled: it will carry these, the latest, levels.
    if (send.timer) return;
    const s = send;
    const flush = () => {
      s.timer = null;
      s.lastMs = performance.now();
      if (this.#closed) return;
      this.#nsp.local.volatile.emit('audioLevels', { stageId, levels: this.#levels.get(stageId) ?? [] });
    };
    const wait = s.lastMs + LEVELS_MIN_INTERVAL_MS - performance.now();
    if (wait <= 0) flush();
    else s.timer = setTimeout(flush, wait);
  }

  /** Idempotent: disconnects every admin and stops every timer and listener. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#stopTimer();
    this.#deps.registry.off('stageOpened', this.#watchStage);
    for (const off of [...this.#stageListeners.values()]) off();
    this.#nsp.local.disconnectSockets(true);
    this.#nsp.removeAllListeners('connection');
  }
}

function rank(s: AdminStage): number {
  return s.status === 'live' ? 0 : s.status === 'idle' ? 1 : 2;
}

function round1(n: number): number {
  return Math.round(n * 10) / 10;
}

function errorText(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).slice(0, 200);
}
