// The composition root: builds every part from the config and owns their lifetimes.
//
// The resource tree (README "Architecture"): App → WorkerPool → Worker; StageRegistry → Stage (Router) → Performer,
// and while on air Broadcast → Mixer (slot relays, FFmpeg, HLS publisher, tracks), archive sink, live timeline, usage
// ticks. Services the tree uses (database writes, the archive, the usage meter, the timeline bus) are made here and
// handed down; nothing below imports this file.
import http from 'node:http';
import path from 'node:path';
import { Admission } from './admission.ts';
import { Archiver } from './archive/archiver.ts';
import { openStore } from './archive/store.ts';
import { OnAir } from './broadcast/onAir.ts';
import { endOrphanedBroadcasts } from './broadcast/recovery.ts';
import type { BroadcastEnded, BroadcastServices } from './broadcast/services.ts';
import type { Config } from './config.ts';
import { openDb, type Db } from './db/index.ts';
import { WriteBehind } from './db/writeBehind.ts';
import { WRITE_EXECUTORS } from './db/writes.ts';
import { createRequestListener } from './http/app.ts';
import { listenPlainAndTls, loadTls, type TlsIdentity } from './http/tls.ts';
import type { LiveFastPath } from './http/live.ts';
import type { Logger } from './logger.ts';
import { AdminService } from './ops/admin.ts';
import { AppMetrics } from './ops/metrics.ts';
import { RecentProblems } from './ops/problems.ts';
import { buildPages } from './pages/bundle.ts';
import { StageRegistry } from './sfu/registry.ts';
import { WorkerPool } from './sfu/workerPool.ts';
import { ListenerSignaling } from './signaling/listeners.ts';
import { CallDesk, storedRates } from './calls/desk.ts';
import { Cluster } from './cluster/cluster.ts';
import { FORWARDED_HEADER, Forwarder, verifyForwarded } from './cluster/forward.ts';
import { ClusterBus, type ClusterLink } from './cluster/events.ts';
import { OrphanSweep } from './cluster/orphans.ts';
import { latestBroadcastNode } from './broadcast/takeover.ts';
import { LeaseRepo } from './db/leases.ts';
import { StageRepo } from './db/repositories.ts';
import type { NodeList } from './shared/rest.ts';
import { WhipIngest } from './whip/ingest.ts';
import { SignalingServer } from './signaling/server.ts';
import { StageCatalog } from './stages/catalog.ts';
import { StageLinks, requestOrigin } from './stages/links.ts';
import { SessionRecorder } from './stages/sessions.ts';
import { TimelineService } from './timeline/service.ts';
import { UsageMeter } from './usage.ts';

const LISTEN_BACKLOG = 4096;
/** How long the start waits for an earlier run's journaled writes to reach the database before going on. */
const JOURNAL_REPLAY_WAIT_MS = 30_000;

export interface App {
  readonly config: Config;
  readonly url: string;
  /** The same port over HTTPS (https://localhost:PORT), or null when TLS is off or no certificate could be had. */
  readonly secureUrl: string | null;
  /** The certificate served on the port, if any. */
  readonly tls: TlsIdentity | null;
  readonly port: number;
  readonly db: Db;
  readonly admission: Admission;
  readonly pool: WorkerPool;
  readonly registry: StageRegistry;
  readonly stages: StageCatalog;
  readonly onAir: OnAir;
  readonly usage: UsageMeter;
  readonly archiver: Archiver;
  readonly timeline: TimelineService;
  readonly writes: WriteBehind;
  readonly signaling: SignalingServer;
  readonly listeners: ListenerSignaling;
  /** Call-in: every stage's call queue and calls on air. */
  readonly calls: CallDesk;
  /** WHIP ingest: encoders publishing into stages. */
  readonly whip: WhipIngest;
  /** Prometheus metrics (GET /metrics) and the listener estimate. */
  readonly metrics: AppMetrics;
  /** The /admin namespace (live snapshots for the /admin page). */
  readonly admin: AdminService;
  /** Recent failures (/healthz, the admin view). */
  readonly problems: RecentProblems;
  /** The /live origin's fast path (live files from memory, in front of Express). */
  readonly liveOrigin: LiveFastPath;
  /** The nodes of the service (GET /api/nodes): every live node in cluster mode, else this one. */
  nodes(): Promise<NodeList>;
  /** Cluster mode (REDIS_URL): this node in the cluster; null on a single node. */
  readonly cluster: Cluster | null;
  /** Stops taking new work: new stages, going on air and joins answer UNAVAILABLE; /healthz answers 503 `draining`. */
  drain(): void;
  /**
   * Graceful shutdown (idempotent): drains, ends every broadcast on air (ENDLIST, performers told), lets their archives
   * be finalized and uploaded for up to `graceMs`, then closes everything. What is not finalized or uploaded stays
   * queued in the database for the next start.
   */
  close(opts?: ShutdownOptions): Promise<void>;
}

/** After the shutdown grace, how long uploads already running may still take before they are abandoned. */
const IN_FLIGHT_AFTER_GRACE_MS = 3000;

export interface ShutdownOptions {
  /** How long finalization and uploads of the broadcasts ended by the shutdown may still run. Default 0. */
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
  const startedAt = new Date().toISOString();
  try {
    const admission = new Admission(log);
    const db = await openDb(config.db, log, config.paths.sqlDir);
    cleanups.push(() => db.close());
    // Writes that wait out a database outage, journaled on disk; an earlier run's journal is replayed first, in order.
    const writes = await WriteBehind.open({ db, log, journalPath: path.join(config.journalDir, 'writes.jsonl'), executors: WRITE_EXECUTORS });
    cleanups.push(() => writes.close());
    // (The write-behind logs what it replays.) They land before anything else reads or writes.
    if (writes.pending > 0 && !(await writes.flush(JOURNAL_REPLAY_WAIT_MS))) {
      log.warn('journaled writes are still waiting for the database', { count: writes.pending });
    }

    let baseUrl = config.http.publicUrl ?? '';
    // PUBLIC_URL wins; without it, the origin of the request being answered (http or https, the address used).
    const links = new StageLinks({ baseUrl: () => config.http.publicUrl ?? requestOrigin.getStore() ?? baseUrl, publicHlsBaseUrl: config.cdn.publicHlsBaseUrl, cdnDir: config.cdn.dir });
    // Cluster mode: this node joins the others through Redis (it takes stages once it is listening and beating).
    let registryRef: StageRegistry | null = null;
    let poolRef: WorkerPool | null = null;
    const cluster = config.cluster
      ? await Cluster.open({
          redisUrl: config.cluster.redisUrl,
          nodeId: config.cluster.nodeId,
          load: () => {
            const stages = registryRef?.stages ?? [];
            return {
              stages: stages.length,
              onAir: stages.filter((s) => s.onAir).length,
              performers: stages.reduce((n, s) => n + s.size, 0),
              workers: poolRef?.workers.filter((w) => !w.worker.closed).length ?? 0,
              draining: admission.draining,
            };
          },
          log,
        })
      : null;
    if (cluster) cleanups.push(() => cluster.close());
    if (cluster) admission.on('draining', () => void cluster.beatNow());
    if (cluster) {
      // The history of ownership (stage_leases): what an earlier run of this node held ended with it.
      const ended = await new LeaseRepo(db).endOpenOf(cluster.nodeId);
      if (ended > 0) log.info('lease holdings of an earlier run of this node recorded as ended', { count: ended });
      cluster.on('held', (stageId, id) => void writes.write('lease.taken', { id, stageId, nodeId: cluster.nodeId, at: new Date().toISOString() }));
      cluster.on('leaseEnded', (_stageId, id, reason) => void writes.write('lease.ended', { id, reason, at: new Date().toISOString() }));
    }
    const forwarder = cluster ? new Forwarder(cluster.nodeId, config.adminToken, log) : null;
    if (forwarder) cleanups.push(() => forwarder.close());

    const orphaned = await endOrphanedBroadcasts(db, links, cluster?.nodeId ?? null);
    if (orphaned.stages > 0) log.warn('ended broadcasts an earlier run left on air', { count: orphaned.stages });
    if (orphaned.handedOver > 0) log.warn('broadcasts an earlier run of this node left on air continue on the cluster', { count: orphaned.handedOver });
    if (orphaned.sessions > 0) log.info('closed performer sessions left open by an earlier run', { count: orphaned.sessions });
    if (orphaned.calls > 0) log.warn('ended calls an earlier run left open', { count: orphaned.calls });

    const pages = await buildPages(config.paths.pagesDir);
    const tls = await loadTls(config.tls, log);

    const pool = await WorkerPool.create(
      {
        numWorkers: config.mediasoup.numWorkers,
        logLevel: config.mediasoup.logLevel,
        rtcMinPort: config.mediasoup.rtcMinPort,
        rtcMaxPort: config.mediasoup.rtcMaxPort,
      },
      log,
    );
    poolRef = pool;
    cleanups.push(() => pool.closeAndWait());
    admission.on('draining', () => pool.drain());

    const q = config.archiveQueue;
    const archiver = new Archiver({
      db,
      store: openStore(config.archive, log),
      writes,
      log,
      spoolDir: q.spoolDir,
      aacBitrateKbps: config.hls.aacBitrateKbps,
      nodeId: cluster?.nodeId ?? null,
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

    const usage = new UsageMeter({ writes, log });
    cleanups.push(() => usage.close());

    const problems = new RecentProblems();
    let timeline: TimelineService | null = null;
    let admin: AdminService | null = null;
    const broadcasts: BroadcastServices = {
      settings: {
        slots: config.stage.maxPerformers,
        rtcPorts: { min: config.mediasoup.rtcMinPort, max: config.mediasoup.rtcMaxPort },
        segmentSeconds: config.hls.segmentSeconds,
        partSeconds: config.hls.partSeconds,
        lowLatency: config.hls.lowLatency,
        listSize: config.hls.listSize,
        aacBitrateKbps: config.hls.aacBitrateKbps,
        mixInput: config.hls.mixInput,
        hlsDir: (stageId) => links.hlsDir(stageId),
      },
      writes,
      archive: archiver,
      usage,
      publish: (stageId, event) => timeline?.publish(stageId, event),
      ended: (e: BroadcastEnded) => {
        problems.broadcastEnded(e);
        admin?.broadcastEnded(e);
      },
      log,
    };
    const registry = new StageRegistry({
      pool,
      rtc: { listenIp: config.mediasoup.listenIp, announcedIp: config.mediasoup.announcedIp },
      maxPerformers: config.stage.maxPerformers,
      services: { db, broadcasts },
      rejoinWaitMs: config.stage.rejoinWaitSeconds * 1000,
      ownership: cluster,
      log,
    });
    registryRef = registry;
    // Another node holds this stage's lease now, or this node has been cut off from Redis so long that its lease may
    // expire (and another node take the stage): this node lets its copy go at once, so that no stage is ever mixed
    // twice. The stage stays live in the database: the node that takes it over continues its playlist.
    cluster?.on('lost', (stageId, holder) => {
      const reason = holder === 'unknown' ? "cut off from the cluster's Redis: another node continues this stage" : 'another node took this stage over';
      void registry.get(stageId)?.close(reason, 'aborted', { handOver: true });
    });
    // Closes every stage, and so ends every broadcast still on air (shutdown ended them first: this is the backstop).
    cleanups.push(() => registry.close());
    timeline = new TimelineService({ db, registry });
    const calls = new CallDesk({ registry, writes, rates: storedRates(db), settings: config.calls, log });
    cleanups.push(() => calls.close());
    const sessions = new SessionRecorder({ registry, writes });
    cleanups.push(() => sessions.close());
    const stages = new StageCatalog({ db, registry, admission, links, log });
    const whip = new WhipIngest({
      registry,
      stages,
      admission,
      settings: { rtpTimeoutMs: config.whip.rtpTimeoutMs, attemptsPerMinute: config.rateLimits.joinPerMinute },
      log,
      sharedLimits: cluster?.buckets ?? null,
    });
    cleanups.push(() => whip.close());
    const onAir = new OnAir({ catalog: stages, registry, admission, db });

    await archiver.start();
    log.info('archive store', { store: archiver.store.description });
    usage.start();

    // Per app (never prom-client's global registry): several apps can share a process. Socket.IO comes later.
    let io: SignalingServer['io'] | null = null;
    const metrics = new AppMetrics({ pool, registry, onAir, archiver, calls, io: () => io, log });
    cleanups.push(() => metrics.close());

    const nodes = async (): Promise<NodeList> => {
      const self = { stages: registry.stages.length, onAir: onAir.live().length, performers: registry.stages.reduce((n, s) => n + s.size, 0) };
      if (!cluster) {
        const workers = pool.workers.filter((w) => !w.worker.closed).length;
        const now = new Date().toISOString();
        return { cluster: false, nodes: [{ id: 'local', url: baseUrl, self: true, ...self, workers, placed: self.stages, draining: admission.draining, startedAt, seenAt: now }] };
      }
      const nodes = await cluster.nodes();
      return {
        cluster: true,
        nodes: nodes.map((n) => ({ id: n.id, url: n.url, self: n.id === cluster.nodeId, ...n.load, placed: n.owned, startedAt: n.startedAt, seenAt: n.seenAt })),
      };
    };
    const web = createRequestListener({
      metrics,
      adminToken: config.adminToken,
      stages,
      onAir,
      timeline,
      calls,
      whip: { ingest: whip, iceServers: config.whip.iceServers },
      admission,
      pool,
      db,
      pages,
      log,
      cdnDir: config.cdn.dir,
      livePlaylists: (stageId) => registry.get(stageId)?.broadcast?.mixer.publisher ?? null,
      hlsOrigin: config.cdn.publicHlsBaseUrl ? new URL(config.cdn.publicHlsBaseUrl).origin : null,
      archiver,
      downloadTtlSeconds: q.downloadTtlSeconds,
      writesPerMinute: config.rateLimits.writePerMinute,
      hsts: config.http.publicUrl?.startsWith('https:') ?? false,
      nodes: () => nodes(),
      cluster:
        cluster && forwarder
          ? {
              elsewhere: async (stageId, place) => {
                if (registry.get(stageId)) return null; // served here
                const owner = place ? await cluster.place(stageId) : await cluster.owner(stageId);
                return owner && owner.id !== cluster.nodeId ? owner.url : null;
              },
              forward: (req, res, url, client) => forwarder.forward(req, res, url, client),
              forwardedFor: (req) => verifyForwarded(config.adminToken, req.headers[FORWARDED_HEADER] as string | undefined, req.method ?? 'GET', req.url ?? '/'),
            }
          : null,
      sharedLimits: cluster?.buckets ?? null,
      dbBacklog: () => writes.pending,
      problems: () => problems.list(),
    });
    const server = http.createServer(web.listener);
    server.keepAliveTimeout = 65_000;
    const otherNodes = cluster ? async () => (await cluster.others()).filter((n) => !n.load.draining).map((n) => n.url) : null;
    // Cluster mode: /listen and /admin are joined across nodes through Redis (services/cluster/events.ts).
    const bus = cluster && config.cluster ? await ClusterBus.open(config.cluster.redisUrl, cluster.nodeId, log) : null;
    if (bus) cleanups.push(() => bus.close());
    const signaling = new SignalingServer({ httpServer: server, registry, stages, onAir, timeline, admission, calls, log, joinsPerMinute: config.rateLimits.joinPerMinute, otherNodes, sharedLimits: cluster?.buckets ?? null, resumeTokens: cluster?.resumeTokens ?? null });
    const clusterBus: ClusterLink | null =
      bus && cluster
        ? { bus, nodeId: cluster.nodeId, otherNodes: async () => (await cluster.others()).length, owner: (id) => cluster.owner(id) }
        : null;
    const listeners = new ListenerSignaling({ io: signaling.io, stages, registry, timeline, calls, log, otherNodes, cluster: clusterBus });
    io = signaling.io;
    admin = new AdminService({ io: signaling.io, adminToken: config.adminToken, pool, registry, stages, onAir, archiver, metrics, problems, calls, log, cluster: clusterBus });
    const adminService = admin;
    let closeListener: () => Promise<void> = async () => {};
    cleanups.push(() => closeListener());
    cleanups.push(() => signaling.close());
    cleanups.push(() => listeners.close());
    cleanups.push(() => adminService.close());

    // A deep accept queue: a thousand players reconnecting at once must queue, not have their SYNs dropped.
    const listening = await listenPlainAndTls(server, tls, { port: config.http.port, host: config.http.host, backlog: LISTEN_BACKLOG, log });
    closeListener = listening.close;
    const port = listening.address.port;
    const localHost = config.http.host === '0.0.0.0' || config.http.host === '::' ? 'localhost' : config.http.host;
    baseUrl = config.http.publicUrl ?? `http://${localHost}:${port}`;
    const secureUrl = tls ? `https://${localHost}:${port}` : null;
    // Listening: the other nodes may now send this one clients and stages, and it takes over those of dead nodes.
    await cluster?.announce(config.cluster?.publicUrl ?? baseUrl);
    if (cluster) {
      const stageRepo = new StageRepo(db);
      const sweep = new OrphanSweep({
        cluster,
        liveStages: async () => (await stageRepo.listByStatus('live')).map((r) => r.id),
        recorder: (stageId) => latestBroadcastNode(db, stageId),
        onAirHere: (stageId) => registry.get(stageId)?.onAir ?? false,
        accepting: () => !admission.draining,
        takeOver: (stageId) => onAir.takeOver(stageId, 'the node recording it stopped answering; continued on another node'),
        log,
      });
      cleanups.push(() => sweep.close());
    }

    let closing: Promise<void> | null = null;
    // Broadcasts end while the HTTP server and the sockets are still up: performers get `stageStatus: ended`, players
    // can fetch the final playlist with its ENDLIST, and /healthz tells the load balancer to stop sending work.
    const shutdown = async (opts: ShutdownOptions): Promise<void> => {
      admission.drain();
      // Calls end as the server's doing (reason server), before their broadcasts end under them.
      calls.close();
      const ended = onAir.live().map((s) => s.broadcastId);
      try {
        // Cluster mode, with another node to take them: the stages are handed over (they stay live; the others
        // continue their playlists once this node has left), not ended.
        const others = cluster ? (await cluster.others().catch(() => [])).filter((n) => !n.load.draining) : [];
        if (cluster && others.length > 0) {
          const live = onAir.live();
          await Promise.all(live.map(({ stageId }) => registry.get(stageId)?.close('handed over to another node: this node is shutting down', 'aborted', { handOver: true })));
          await cluster.withdraw();
          if (live.length > 0) log.info('shutdown: stages handed over to the other nodes', { stages: live.map((l) => l.stageId), nodes: others.map((n) => n.id) });
        } else {
          await onAir.stopAll('server shutting down');
        }
      } catch (err) {
        log.error('shutdown: could not end every broadcast', { error: String(err) });
      }
      // The grace starts once the broadcasts have ended (each FFmpeg finishing its last segment: bounded by its stop).
      const graceMs = opts.signal?.aborted ? 0 : Math.max(0, opts.graceMs ?? 0);
      const deadline = Date.now() + graceMs;
      // Their ends recorded (normally at once), the archives of every broadcast that has ended (now, or just before
      // the signal) are finalized within the grace, then uploaded.
      await writes.flush(Math.max(0, deadline - Date.now()));
      const cut = new Promise<number>((resolve) => opts.signal?.addEventListener('abort', () => resolve(Date.now()), { once: true }));
      const settled = await Promise.race([archiver.settle(deadline), cut.then((now) => archiver.settle(now))]);
      if (!settled.complete) log.warn('shutdown: archives left to finalize at the next start', { broadcasts: settled.broadcasts });
      const toUpload = [...new Set([...ended, ...settled.broadcasts])];
      if (toUpload.length > 0) {
        const left = Math.max(0, deadline - Date.now());
        if (left > 0) log.info('shutdown: uploading what the ended broadcasts left', { broadcasts: toUpload, graceSeconds: Math.round(left / 100) / 10 });
        try {
          const r = await archiver.queue.flush(toUpload, { deadline: Date.now() + left, ...(opts.signal ? { signal: opts.signal } : {}) });
          const fields = { broadcasts: toUpload, uploaded: r.uploaded, left: r.left, waitedMs: r.waitedMs, cutShort: opts.signal?.aborted ?? false };
          if (r.complete) log.info('shutdown: every upload of the ended broadcasts is done', fields);
          else log.warn('shutdown: uploads left queued for the next start', fields);
          // The grace is over: uploads in flight get a moment to finish, not a request timeout's worth.
          if (!r.complete) await archiver.queue.close({ waitMs: IN_FLIGHT_AFTER_GRACE_MS });
        } catch (err) {
          log.error('shutdown: could not flush uploads; they stay queued for the next start', { error: String(err) });
        }
      }
      // Writes held through a database outage get what is left of the grace; they stay journaled for the next start.
      if (writes.pending > 0 && !(await writes.flush(Math.max(0, deadline - Date.now())))) {
        log.warn('shutdown: database writes held through an outage stay journaled for the next start', { count: writes.pending });
      }
      await closeAll();
    };
    return {
      config,
      url: baseUrl,
      secureUrl,
      tls,
      port,
      db,
      admission,
      pool,
      registry,
      stages,
      onAir,
      usage,
      archiver,
      timeline,
      writes,
      signaling,
      listeners,
      calls,
      whip,
      liveOrigin: web.live,
      nodes,
      cluster,
      metrics,
      admin,
      problems,
      drain: () => admission.drain(),
      close: (opts: ShutdownOptions = {}) => (closing ??= shutdown(opts)),
    };
  } catch (err) {
    await closeAll();
    throw err;
  }
}
