import type { RequestListener } from 'node:http';
import express, { type ErrorRequestHandler, type NextFunction, type Request, type Response } from 'express';
import type { z } from 'zod';
import type { Admission } from '../admission.ts';
import type { Archiver } from '../archive/archiver.ts';
import type { CallDesk } from '../calls/desk.ts';
import { CallRepo } from '../db/calls.ts';
import { bearerToken, tokenMatches } from '../auth.ts';
import type { OnAir } from '../broadcast/onAir.ts';
import type { Db } from '../db/db.ts';
import { isDbUnavailable } from '../db/writeBehind.ts';
import { RequestError } from '../errors.ts';
import { KeyedLimits, type SharedBuckets } from '../limits.ts';
import type { Logger } from '../logger.ts';
import type { AppMetrics } from '../ops/metrics.ts';
import { pickEncoding, type Encoded, type PageBundle } from '../pages/bundle.ts';
import type { WorkerPool } from '../sfu/workerPool.ts';
import { HTTP_STATUS, type ErrorCode } from '../shared/errors.ts';
import { stageIdSchema } from '../shared/ids.ts';
import { createStageBody, emptyBody, type EncoderList, type Health, type NodeList, type StageCreated, type StageList, type StageTransition, type StageView } from '../shared/rest.ts';
import { performerEventSchema, type TimelineEvent, type TimelineSnapshot } from '../shared/timeline.ts';
import type { StageCatalog } from '../stages/catalog.ts';
import { originOf, requestOrigin } from '../stages/links.ts';
import type { TimelineService } from '../timeline/service.ts';
import { PAGE_CSP_EXTRA, PERFORMER_PERMISSIONS, securityHeaders, writeLimits } from './guards.ts';
import { LIVE_MAX_BUFFERED, type LiveFastPath, LiveHolds, type LivePlaylists, liveFastPath, liveRouter } from './live.ts';
import { LiveFileCache } from './liveCache.ts';
import { openApiJson } from './openapi.ts';
import { callsRouter } from './calls.ts';
import { clusterRouting, type ClusterRouting } from './cluster.ts';
import { whipRouter } from './whip.ts';
import type { WhipIngest } from '../whip/ingest.ts';
import { recordingsRouter } from './recordings.ts';
import { parseWith, wrap } from './util.ts';

const MAX_BODY = '16kb';

export interface HttpDeps {
  adminToken: string;
  stages: StageCatalog;
  onAir: OnAir;
  timeline: TimelineService;
  /** Call-in (REST: a stage's calls, one call, the rate). */
  calls?: CallDesk;
  /** WHIP ingest at /whip (docs/whip.md), and the ICE servers its answers name in Link headers. */
  whip?: { ingest: WhipIngest; iceServers: readonly string[] };
  admission: Admission;
  pool: WorkerPool;
  db: Db;
  pages: PageBundle;
  log: Logger;
  /** The CDN-origin folder: HLS is served from its live/ subfolder at /live. */
  cdnDir: string;
  /** Origin of PUBLIC_HLS_BASE_URL when it is set (it may differ from the app's), allowed by the pages' CSP. */
  hlsOrigin: string | null;
  /** The archive (recordings listing and downloads). */
  archiver: Archiver | null;
  downloadTtlSeconds: number;
  /** Prometheus metrics (GET /metrics, admin token) and the listener estimate that playlist requests feed. */
  metrics?: AppMetrics | null;
  /** Database writes waiting for the database (it was unreachable); the health check reports them. */
  dbBacklog?: () => number;
  /** Recent failures (a mix that failed, a broadcast aborted), for the health check. */
  problems?: () => string[];
  /** REST writes per client address per minute (a stage takes twice as many). Default 120. */
  writesPerMinute?: number;
  /** Send Strict-Transport-Security (the public URL is https). */
  hsts?: boolean;
  /** The origin's memory of the live folder, shared with the fast path (createRequestListener makes one). */
  liveCache?: LiveFileCache;
  /** The nodes of the service (GET /api/nodes). */
  nodes: () => Promise<NodeList>;
  /** Cluster mode: the rate limits' buckets, shared by every node. */
  sharedLimits?: SharedBuckets | null;
  /** Cluster mode: requests about stages other nodes serve are passed on to them. */
  cluster?: ClusterRouting | null;
  /** The live HLS writer of a stage on air: LL-HLS blocking playlist reloads and preload-hinted parts wait on it. */
  livePlaylists?: LivePlaylists;
  /** The origin's held requests, shared with the fast path (createRequestListener makes them). */
  liveHolds?: LiveHolds;
}

/** The health check gives the database this long to answer before calling it unreachable. */
const HEALTH_DB_TIMEOUT_MS = 1000;

function sendError(res: Response, code: ErrorCode, message: string, retryAfterSeconds?: number): void {
  if (retryAfterSeconds) res.setHeader('Retry-After', String(retryAfterSeconds));
  res.status(HTTP_STATUS[code]).json({ ok: false, error: { code, message, ...(retryAfterSeconds ? { retryAfterSeconds } : {}) } });
}

function parseBody<T>(schema: z.ZodType<T>, body: unknown): T {
  return parseWith(schema, body ?? {}, 'body');
}

function stageIdParam(req: Request): string {
  const r = stageIdSchema.safeParse(req.params['id']);
  if (!r.success) throw new RequestError('BAD_REQUEST', 'invalid stage id');
  return r.data;
}

/** Playlist fetches feed the listener estimate of /metrics. */
function listenerSeen(deps: HttpDeps): (stageId: string, address: string, userAgent: string) => void {
  return (stageId, address, userAgent) => deps.metrics?.listeners.seen(stageId, address, userAgent);
}

/**
 * The server's request listener: live HLS files served from memory go straight out (liveFastPath), everything else
 * through the Express app. Both share one LiveFileCache.
 */
export function createRequestListener(deps: HttpDeps): { listener: RequestListener; app: express.Express; live: LiveFastPath } {
  const liveCache = deps.liveCache ?? new LiveFileCache({ maxFileBytes: LIVE_MAX_BUFFERED });
  const liveHolds = deps.liveHolds ?? new LiveHolds(deps.livePlaylists ?? null);
  const app = createHttpApp({ ...deps, liveCache, liveHolds });
  const live = liveFastPath(deps.cdnDir, { cache: liveCache, holds: liveHolds, hsts: deps.hsts ?? false, onPlaylist: listenerSeen(deps) });
  return { app, live, listener: (req, res) => live.handle(req, res, () => app(req, res)) };
}

export function createHttpApp(deps: HttpDeps): express.Express {
  const app = express();
  const log = deps.log.child({ component: 'http' });
  app.disable('x-powered-by');
  app.set('trust proxy', 'loopback');
  app.use(securityHeaders({ hsts: deps.hsts ?? false }));
  // The links this request's answers hand out follow its scheme and address (StageLinks; PUBLIC_URL still wins). The
  // scheme is the connection's, or X-Forwarded-Proto from a proxy on this machine (trust proxy: loopback).
  app.use((req, _res, next) => {
    const origin = originOf(req.protocol === 'https', req.headers.host);
    if (origin) requestOrigin.run(origin, next);
    else next();
  });

  // Before anything reads the body: a request passed on to another node is passed on as it came.
  if (deps.cluster) app.use(clusterRouting(deps.cluster));

  const requireAdmin = (req: Request, res: Response, next: NextFunction) => {
    const token = bearerToken(req.get('authorization'));
    if (!token || !tokenMatches(token, deps.adminToken)) {
      res.setHeader('WWW-Authenticate', 'Bearer');
      sendError(res, 'UNAUTHORIZED', 'a valid admin token is required (Authorization: Bearer <ADMIN_TOKEN>)');
      return;
    }
    next();
  };

  const api = express.Router();
  api.use((_req, res, next) => {
    res.setHeader('Cache-Control', 'no-store');
    res.setHeader('Content-Security-Policy', "default-src 'none'; frame-ancestors 'none'");
    next();
  });
  // Before the body is read: a flood costs no parsing.
  api.use(writeLimits(new KeyedLimits(deps.writesPerMinute ?? 120, 2, deps.sharedLimits ? { buckets: deps.sharedLimits, name: 'write' } : null)));
  api.use(express.json({ limit: MAX_BODY, strict: true }));

  api.get(
    '/nodes',
    requireAdmin,
    wrap(async (_req, res) => {
      res.json(await deps.nodes());
    }),
  );

  api.post(
    '/stages',
    requireAdmin,
    wrap(async (req, res) => {
      const { title, callRate } = parseBody(createStageBody, req.body);
      const created: StageCreated = await deps.stages.create(title);
      if (callRate) await new CallRepo(deps.db).setRate(created.id, callRate);
      res.status(201).location(`/api/stages/${created.id}`).json(created);
    }),
  );

  api.get(
    '/stages',
    requireAdmin,
    wrap(async (_req, res) => {
      const body: StageList = await deps.stages.list();
      res.json(body);
    }),
  );

  /** Writes to a stage take the admin token or the stage's performer key, as a Bearer token. True for the admin. */
  const authorizeStage = async (req: Request, res: Response, id: string): Promise<boolean> => {
    const bearer = bearerToken(req.get('authorization'));
    if (!bearer) {
      res.setHeader('WWW-Authenticate', 'Bearer');
      throw new RequestError('UNAUTHORIZED', 'send the admin token or the performer key as a Bearer token');
    }
    if (tokenMatches(bearer, deps.adminToken)) return true;
    await deps.stages.checkKey(id, bearer);
    return false;
  };

  // Going on and off air.
  const stageTransition = (action: 'start' | 'stop') =>
    wrap(async (req, res) => {
      const id = stageIdParam(req);
      await authorizeStage(req, res, id);
      parseBody(emptyBody, req.body);
      const { view, changed } = action === 'start' ? await deps.onAir.start(id) : await deps.onAir.stop(id);
      const body: StageTransition = { ...view, changed };
      res.status(200).json(body);
    });
  // Timeline events (chapter, track, marker) by the admin or a performer of the stage: the same budget per stage as
  // the performers' Socket.IO postEvent (one limiter in the timeline service).
  api.post(
    '/stages/:id/events',
    wrap(async (req, res) => {
      const id = stageIdParam(req);
      const admin = await authorizeStage(req, res, id);
      const input = parseBody(performerEventSchema, req.body);
      if (!(await deps.stages.record(id))) throw new RequestError('NOT_FOUND', 'no such stage');
      const event: TimelineEvent = deps.timeline.post(id, input, { kind: admin ? 'admin' : 'performer' });
      res.status(201).json({ event });
    }),
  );
  api.get(
    '/stages/:id/events',
    wrap(async (req, res) => {
      const id = stageIdParam(req);
      if (!(await deps.stages.record(id))) throw new RequestError('NOT_FOUND', 'no such stage');
      const snapshot: TimelineSnapshot = await deps.timeline.snapshot(id);
      res.json(snapshot);
    }),
  );
  api.post('/stages/:id/start', stageTransition('start'));
  api.post('/stages/:id/stop', stageTransition('stop'));

  api.get(
    '/stages/:id',
    wrap(async (req, res) => {
      const view: StageView | null = await deps.stages.view(stageIdParam(req));
      if (!view) throw new RequestError('NOT_FOUND', 'no such stage');
      res.json(view);
    }),
  );

  // The stage's WHIP publishers (OBS…) with their state and level, for the performer page's encoder panel.
  if (deps.whip) {
    const ingest = deps.whip.ingest;
    api.get(
      '/stages/:id/encoders',
      wrap(async (req, res) => {
        const id = stageIdParam(req);
        const admin = await authorizeStage(req, res, id);
        if (admin && !(await deps.stages.record(id))) throw new RequestError('NOT_FOUND', 'no such stage');
        const body: EncoderList = { stageId: id, whipUrl: deps.stages.links.urls(id).whipUrl, encoders: ingest.view(id) };
        res.json(body);
      }),
    );
  }
  if (deps.calls) api.use(callsRouter({ calls: deps.calls, stages: deps.stages, db: deps.db, authorizeStage, requireAdmin }));
  if (deps.archiver) api.use(recordingsRouter({ archiver: deps.archiver, stages: deps.stages, db: deps.db, downloadTtlSeconds: deps.downloadTtlSeconds }));

  // This API's OpenAPI 3.1 document (services/http/openapi.ts, docs/api.md).
  api.get('/openapi.json', (_req, res) => {
    res.type('json').send(openApiJson());
  });

  api.use((_req, res) => sendError(res, 'NOT_FOUND', 'no such API route'));

  // Shutting down: a load balancer must stop sending new work here, whatever else is healthy.
  app.get('/healthz', (_req, res, next) => {
    if (!deps.admission.draining) return next();
    res.setHeader('Cache-Control', 'no-store');
    res.status(503).json({ status: 'draining' });
  });
  app.get(
    '/healthz',
    wrap(async (_req, res) => {
      const workers = deps.pool.workers.filter((w) => !w.worker.closed).length;
      let db: 'ok' | 'error' = 'ok';
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          deps.db.query('select 1'),
          new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('timeout')), HEALTH_DB_TIMEOUT_MS))),
        ]);
      } catch {
        db = 'error';
      } finally {
        clearTimeout(timer);
      }
      // Live media never depends on the database: without it the service is degraded (writes are held), not down.
      const dbBacklog = deps.dbBacklog?.() ?? 0;
      const problems = deps.problems?.() ?? [];
      const status = workers === 0 ? 'down' : db === 'ok' && dbBacklog === 0 && problems.length === 0 ? 'ok' : 'degraded';
      const body: Health = { status, workers, db, dbBacklog, problems };
      res.setHeader('Cache-Control', 'no-store');
      res.status(status === 'down' ? 503 : 200).json(body);
    }),
  );

  app.use('/api', api);

  // Prometheus text exposition (services/ops/metrics.ts, docs/operations.md): the admin token, never cached.
  const metrics = deps.metrics ?? null;
  if (metrics) {
    app.get(
      '/metrics',
      (_req, res, next) => {
        res.setHeader('Cache-Control', 'no-store');
        next();
      },
      requireAdmin,
      wrap(async (_req, res) => {
        const body = await metrics.render();
        res.setHeader('Content-Type', metrics.contentType);
        res.send(body);
      }),
    );
  }

  // Pages: the markup is static; the stage id and key are read by the page's script from its URL.
  // hls.js plays through a blob: MediaSource, fetches the HLS origin, and runs its transmuxer in a blob: worker.
  const hls = deps.hlsOrigin ? ` ${deps.hlsOrigin}` : '';
  const csp = `default-src 'self'; media-src 'self' blob:${hls}; connect-src 'self' ws: wss:${hls}; worker-src 'self' blob:; style-src 'self' 'unsafe-inline'`;
  /** A compressed body when the client takes one (brotli, then gzip), made once at start-up (pages/bundle.ts). */
  const sendEncoded = (req: Request, res: Response, e: Encoded) => {
    const { body, encoding } = pickEncoding(e, req.headers['accept-encoding']);
    res.setHeader('Vary', 'Accept-Encoding');
    if (encoding) res.setHeader('Content-Encoding', encoding);
    res.send(body);
  };
  const page = (html: Encoded, permissions?: string) => (req: Request, res: Response) => {
    res.setHeader('Content-Security-Policy', csp + PAGE_CSP_EXTRA);
    if (permissions) res.setHeader('Permissions-Policy', permissions);
    res.type('html');
    sendEncoded(req, res, html);
  };
  app.get('/stage/:id', page(deps.pages.performerHtml, PERFORMER_PERMISSIONS));
  // The listener page asks for the microphone only when a call it requested is accepted (call-in).
  app.get('/listen/:id', page(deps.pages.listenerHtml, PERFORMER_PERMISSIONS));
  // The admin page asks for the token (or reads it from the URL fragment) and talks to the /admin namespace.
  app.get('/admin', page(deps.pages.adminHtml));
  app.get('/assets/:name', (req, res) => {
    const asset = deps.pages.assets.get(String(req.params['name']));
    if (!asset) {
      sendError(res, 'NOT_FOUND', 'no such asset');
      return;
    }
    // Content-hashed names never change content: cached for a year without revalidation. Plain names revalidate.
    res.type(asset.type).setHeader('Cache-Control', asset.immutable ? 'public, max-age=31536000, immutable' : 'no-cache');
    sendEncoded(req, res, asset);
  });
  app.get('/', (_req, res) => res.type('text').send('stage-radio: see /healthz, /api/stages/<id>, /stage/<id>?key=<performerKey>\n'));

  if (deps.whip) {
    app.use('/whip', whipRouter({ ...deps.whip, onError: (err) => log.error('WHIP request failed', { error: err instanceof Error ? err.stack : String(err) }) }));
  }

  app.use('/live', liveRouter(deps.cdnDir, { cache: deps.liveCache, holds: deps.liveHolds, livePlaylists: deps.livePlaylists, onPlaylist: listenerSeen(deps) }));

  app.use((_req, res) => sendError(res, 'NOT_FOUND', 'not found'));

  const onError: ErrorRequestHandler = (err: unknown, _req, res, _next) => {
    if (err instanceof RequestError && res.statusCode === 416) {
      res.json({ ok: false, error: { code: err.code, message: err.message } });
      return;
    }
    if (err instanceof RequestError) return sendError(res, err.code, err.message, err.retryAfterSeconds);
    const e = err as { type?: string; status?: number; message?: string };
    if (e.type === 'entity.parse.failed') return sendError(res, 'BAD_REQUEST', 'request body is not valid JSON');
    if (e.type === 'entity.too.large') {
      res.status(413).json({ ok: false, error: { code: 'BAD_REQUEST', message: `request body is larger than ${MAX_BODY}` } });
      return;
    }
    if (typeof e.status === 'number' && e.status >= 400 && e.status < 500) return sendError(res, 'BAD_REQUEST', e.message ?? 'bad request');
    if (isDbUnavailable(err)) {
      log.warn('request failed: the database is unreachable', { error: String(err) });
      res.setHeader('Retry-After', '5');
      return sendError(res, 'UNAVAILABLE', 'the database is unreachable; live broadcasts go on, try this again shortly');
    }
    log.error('request failed', { error: err instanceof Error ? err.stack : String(err) });
    sendError(res, 'INTERNAL', 'internal error');
  };
  app.use(onError);
  return app;
}
