// The composition root: builds every part from the config and owns their lifetimes.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Archiver } from './archive/archiver.ts';
import { openStore } from './archive/store.ts';
import type { Config } from './config.ts';
import { openDb, type Db } from './db/index.ts';
import { PerformerSessionRepo } from './db/repositories.ts';
import { createHttpApp } from './http/app.ts';
import type { Logger } from './logger.ts';
import { buildPages } from './pages/bundle.ts';
import { StageRegistry } from './sfu/registry.ts';
import { WorkerPool } from './sfu/workerPool.ts';
import { SignalingServer } from './signaling/server.ts';
import { StageService } from './stages.ts';
import { ListenerSignaling } from './signaling/listeners.ts';
import { TimelineService } from './timeline/service.ts';
import { UsageMeter } from './usage.ts';

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
  readonly signaling: SignalingServer;
  readonly listeners: ListenerSignaling;
  close(): Promise<void>;
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
    });
    const timeline = new TimelineService({ db, stages, registry, log });
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

    const server = http.createServer(createHttpApp({ adminToken: config.adminToken, stages, pool, db, pages, log, cdnDir: config.cdn.dir, hlsOrigin: config.cdn.publicHlsBaseUrl ? new URL(config.cdn.publicHlsBaseUrl).origin : null, archiver, downloadTtlSeconds: q.downloadTtlSeconds }));
    server.keepAliveTimeout = 65_000;
    const signaling = new SignalingServer({ httpServer: server, registry, stages, log });
    const listeners = new ListenerSignaling({ io: signaling.io, stages, timeline, log });
    cleanups.push(
      () =>
        new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        }),
    );
    cleanups.push(() => signaling.close());
    cleanups.push(() => listeners.close());

    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(config.http.port, config.http.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const port = (server.address() as AddressInfo).port;
    const localHost = config.http.host === '0.0.0.0' || config.http.host === '::' ? 'localhost' : config.http.host;
    baseUrl = config.http.publicUrl ?? `http://${localHost}:${port}`;

    let closing: Promise<void> | null = null;
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
      signaling,
      listeners,
      close: () => (closing ??= closeAll()),
    };
  } catch (err) {
    await closeAll();
    throw err;
  }
}
