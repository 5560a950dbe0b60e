// The composition root: builds every part from the config and owns their lifetimes.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Archiver } from './archive/archiver.ts';
import { openStore } from './archive/store.ts';
import type { Config } from './config.ts';
import { openDb, type Db } from './db/index.ts';
import { PerformerSessionRepo } from './db/repositories.ts';
import { createRequestListener } from './http/app.ts';
import type { LiveFastPath } from './http/live.ts';
import type { Logger } from './logger.ts';
import { buildPages } from './pages/bundle.ts';
import { StageRegistry } from './sfu/registry.ts';
import { WorkerPool } from './sfu/workerPool.ts';
import { SignalingServer } from './signaling/server.ts';
import { StageService } from './stages.ts';
import { ListenerSignaling } from './signaling/listeners.ts';
import { TimelineService } from './timeline/service.ts';
import { UsageMeter } from './usage.ts';
import { WriteBehind } from './db/writeBehind.ts';
import { AdminService } from './ops/admin.ts';
import { AppMetrics } from './ops/metrics.ts';

const LISTEN_BACKLOG = 4096;

export interface App {
  readonly config: Config;
  readonly url: string;
  readonly port: number;
  readonly db: Db;
  readonly pool: WorkerPool;
  readonly registry: StageRegistry;
  readonly stages: StageService;
  readonly usage: UsageMeter;
  readonly archiver: Archiver;
  readonly timeline: TimelineService;
  readonly writes: WriteBehind;
  readonly signaling: SignalingServer;
  readonly listeners: ListenerSignaling;
  /** Prometheus metrics (GET /metrics) and the listener estimate. */
  readonly metrics: AppMetrics;
  /** The /admin namespace (live snapshots for the /admin page). */
  readonly admin: AdminService;
  /** The /live origin's fast path (live files from memory, in front of Express). */
  readonly liveOrigin: LiveFastPath;
  /** Stops taking new work: new stages, going on air and joins answer UNAVAILABLE; /healthz answers 503 `draining`. */
  drain(): void;
  /**
   * Graceful shutdown (idempotent): drains, ends every broadcast on air (ENDLIST, performers told, archive finalized
   * and queued), lets those broadcasts' uploads run for up to `graceMs`, then closes everything. What is not uploaded
   * stays queued in the database for the next start.
   */
  close(opts?: ShutdownOptions): Promise<void>;
}

/** After the shutdown grace, how long uploads already running may still take before they are abandoned. */
const IN_FLIGHT_AFTER_GRACE_MS = 3000;

export interface ShutdownOptions {
  /** How long uploads of the broadcasts ended by the shutdown may still run. Default 0: only uploads in flight finish. */
  graceMs?: number;
  /** Aborting it ends the grace at once (a second SIGTERM). */
  signal?: AbortSignal;
}

export async function startApp(config: Config, log: Logger): Promise<App> {
  const cleanups: (() => Promise<void> | void)[] = [];
  const closeAll = async () => {
    for (const fn of cleanups.reverse()) {
      try {
        await fn();
      } catch (err) {
        log.error('error while closing', { error: String(err) });
      }
    }
  };
  try {
    const db = await openDb(config.db, log, config.paths.sqlDir);
    cleanups.push(() => db.close());
    // Writes that wait out a database outage; closed after everything that writes through it.
    const writes = new WriteBehind({ db, log });
    cleanups.push(() => writes.close());
    const orphaned = await new PerformerSessionRepo(db).closeAllOpen('server restarted');
    if (orphaned > 0) log.info('closed performer sessions left open by an earlier run', { count: orphaned });

    const pages = await buildPages(config.paths.pagesDir);

    const pool = await WorkerPool.create(
      {
        numWorkers: config.mediasoup.numWorkers,
        logLevel: config.mediasoup.logLevel,
        rtcMinPort: config.mediasoup.rtcMinPort,
        rtcMaxPort: config.mediasoup.rtcMaxPort,
      },
      log,
    );
    cleanups.push(() => pool.closeAndWait());

    const registry = new StageRegistry({
      pool,
      rtc: { listenIp: config.mediasoup.listenIp, announcedIp: config.mediasoup.announcedIp },
      maxPerformers: config.stage.maxPerformers,
      log,
    });
    cleanups.push(() => registry.close());

    const q = config.archiveQueue;
    const archiver = new Archiver({
      db,
      store: openStore(config.archive, log),
      log,
      spoolDir: q.spoolDir,
      aacBitrateKbps: config.hls.aacBitrateKbps,
      queue: {
        concurrency: q.concurrency,
        retryBaseSeconds: q.retryBaseSeconds,
        retryMaxSeconds: q.retryMaxSeconds,
        maxAttempts: q.maxAttempts,
        retentionSeconds: q.retentionSeconds,
        sweepSchedule: `*/${q.sweepSeconds} * * * * *`,
      },
    });
    cleanups.push(() => archiver.close());

    let baseUrl = config.http.publicUrl ?? '';
    const stages = new StageService({
      db,
      registry,
      log,
      baseUrl: () => baseUrl,
      publicHlsBaseUrl: config.cdn.publicHlsBaseUrl,
      cdnDir: config.cdn.dir,
      hls: config.hls,
      maxPerformers: config.stage.maxPerformers,
      archiver,
      writes,
    });
    const timeline = new TimelineService({ db, stages, registry, log, writes });
    stages.timeline = timeline;
    cleanups.push(() => timeline.close());
    const orphanedLive = await stages.endOrphanedBroadcasts();
    if (orphanedLive > 0) log.warn('ended broadcasts an earlier run left on air', { count: orphanedLive });
    await archiver.start();
    log.info('archive store', { store: archiver.store.description });
    cleanups.push(() => stages.stopAll('server shutting down'));
    const usage = new UsageMeter({ db, log, snapshot: () => stages.liveSnapshot() });
    usage.start();
    cleanups.push(() => usage.close());

    // Per app (never prom-client's global registry): several apps can share a process. Socket.IO comes later.
    let io: SignalingServer['io'] | null = null;
    const metrics = new AppMetrics({ pool, registry, stages, archiver, io: () => io, log });
    cleanups.push(() => metrics.close());

    const web = createRequestListener({ metrics, adminToken: config.adminToken, stages, pool, db, pages, log, cdnDir: config.cdn.dir, hlsOrigin: config.cdn.publicHlsBaseUrl ? new URL(config.cdn.publicHlsBaseUrl).origin : null, archiver, downloadTtlSeconds: q.downloadTtlSeconds, writesPerMinute: config.rateLimits.writePerMinute, hsts: config.http.publicUrl?.startsWith('https:') ?? false, dbBacklog: () => writes.pending + usage.backlog + archiver.heldSegments() });
    const server = http.createServer(web.listener);
    server.keepAliveTimeout = 65_000;
    const signaling = new SignalingServer({ httpServer: server, registry, stages, log, joinsPerMinute: config.rateLimits.joinPerMinute });
    const listeners = new ListenerSignaling({ io: signaling.io, stages, timeline, log });
    io = signaling.io;
    const admin = new AdminService({ io: signaling.io, adminToken: config.adminToken, pool, registry, stages, archiver, metrics, log });
    cleanups.push(
      () =>
        new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        }),
    );
    cleanups.push(() => signaling.close());
    cleanups.push(() => listeners.close());
    cleanups.push(() => admin.close());

    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      // A deep accept queue: a thousand players reconnecting at once must queue, not have their SYNs dropped.
      server.listen(config.http.port, config.http.host, LISTEN_BACKLOG, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const port = (server.address() as AddressInfo).port;
    const localHost = config.http.host === '0.0.0.0' || config.http.host === '::' ? 'localhost' : config.http.host;
    baseUrl = config.http.publicUrl ?? `http://${localHost}:${port}`;

    let closing: Promise<void> | null = null;
    // Broadcasts end while the HTTP server and the sockets are still up: performers get `stageStatus: ended`, players
    // can fetch the final playlist with its ENDLIST, and /healthz tells the load balancer to stop sending work.
    const shutdown = async (opts: ShutdownOptions): Promise<void> => {
      stages.drain();
      const deadline = Date.now() + (opts.signal?.aborted ? 0 : Math.max(0, opts.graceMs ?? 0));
      const broadcasts = stages.liveSnapshot().map((s) => s.broadcastId);
      try {
        await stages.stopAll('server shutting down');
      } catch (err) {
        log.error('shutdown: could not end every broadcast', { error: String(err) });
      }
      if (broadcasts.length > 0) {
        const graceMs = opts.signal?.aborted ? 0 : Math.max(0, opts.graceMs ?? 0);
        if (graceMs > 0) log.info('shutdown: uploading what the ended broadcasts left', { broadcasts, graceSeconds: graceMs / 1000 });
        try {
          const r = await archiver.queue.flush(broadcasts, { deadline: Date.now() + graceMs, ...(opts.signal ? { signal: opts.signal } : {}) });
          const fields = { broadcasts, uploaded: r.uploaded, left: r.left, waitedMs: r.waitedMs, cutShort: opts.signal?.aborted ?? false };
          if (r.complete) log.info('shutdown: every upload of the ended broadcasts is done', fields);
          else log.warn('shutdown: uploads left queued for the next start', fields);
          // The grace is over: uploads in flight get a moment to finish, not a request timeout's worth.
          if (!r.complete) await archiver.queue.close({ waitMs: IN_FLIGHT_AFTER_GRACE_MS });
        } catch (err) {
          log.error('shutdown: could not flush uploads; they stay queued for the next start', { error: String(err) });
        }
      }
      // Writes held through a database outage get what is left of the grace (they live in memory only).
      if (writes.pending > 0 && !(await writes.flush(Math.max(0, deadline - Date.now())))) {
        log.error('shutdown: database writes held through an outage are lost', { count: writes.pending });
      }
      await closeAll();
    };
    return {
      config,
      url: baseUrl,
      port,
      db,
      pool,
      registry,
      stages,
      usage,
      archiver,
      timeline,
      writes,
      signaling,
      listeners,
      liveOrigin: web.live,
      metrics,
      admin,
      drain: () => stages.drain(),
      close: (opts: ShutdownOptions = {}) => (closing ??= shutdown(opts)),
    };
  } catch (err) {
    await closeAll();
    throw err;
  }
}
