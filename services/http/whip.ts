// WHIP's HTTP side (RFC 9725), mounted at /whip: POST /whip/<stageId> with the stage's performer key as Bearer token
// and an SDP offer answers 201 with the SDP answer and Location /whip/<stageId>/<resourceId>; DELETE there ends the
// publisher; PATCH is 405 (no trickle ICE, no ICE restart: the answer has every candidate, the offer may have none);
// OPTIONS and CORS for browser clients; ICE servers, when configured, in one Link header each. Errors are JSON
// ({ok: false, error: {code, message}}) with the RFC's statuses: 400 malformed, 401 wrong key, 404 unknown stage or
// session, 409 full stage or ended stage, 415 not application/sdp, 422 unsupported offer, 429, 503 draining.
import express, { type Request, type Response } from 'express';
import { bearerToken } from '../auth.ts';
import { RequestError } from '../errors.ts';
import { HTTP_STATUS } from '../shared/errors.ts';
import { stageIdSchema } from '../shared/ids.ts';
import { displayNameSchema } from '../shared/model.ts';
import { MAX_OFFER_BYTES, SdpError } from '../whip/sdp.ts';
import type { WhipIngest } from '../whip/ingest.ts';
import { clientAddress } from './util.ts';

const RESOURCE_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** The Link header of one ICE server (one header per server: OBS keeps only the first link of a list). */
export function iceServerLink(url: string): string {
  return `<${url}>; rel="ice-server"`;
}

function cors(res: Response, methods: string): void {
  res.setHeader('Access-Control-Allow-Origin', '*');
  res.setHeader('Access-Control-Allow-Methods', methods);
  res.setHeader('Access-Control-Allow-Headers', 'Authorization, Content-Type, If-Match');
  res.setHeader('Access-Control-Expose-Headers', 'Location, Link, ETag');
  res.setHeader('Access-Control-Max-Age', '600');
  res.setHeader('Cache-Control', 'no-store');
}

function fail(res: Response, status: number, code: string, message: string, retryAfterSeconds?: number): void {
  if (retryAfterSeconds) res.setHeader('Retry-After', String(retryAfterSeconds));
  if (status === 401) res.setHeader('WWW-Authenticate', 'Bearer');
  res.status(status).json({ ok: false, error: { code, message } });
}

function sendFailure(res: Response, err: unknown, onInternal: (err: unknown) => void): void {
  if (err instanceof SdpError) return fail(res, err.status, 'BAD_REQUEST', err.message);
  if (err instanceof RequestError) {
    // An ended stage takes no publisher: 409, as a full one.
    return fail(res, HTTP_STATUS[err.code], err.code, err.message, err.retryAfterSeconds ?? (err.code === 'UNAVAILABLE' ? 5 : undefined));
  }
  onInternal(err);
  fail(res, 500, 'INTERNAL', 'internal error');
}

export function whipRouter(deps: { ingest: WhipIngest; iceServers: readonly string[]; onError: (err: unknown) => void }): express.Router {
  const router = express.Router();
  const stageOf = (req: Request): string | null => {
    const r = stageIdSchema.safeParse(req.params['stageId']);
    return r.success ? r.data : null;
  };

  router.options('/:stageId', (_req, res) => {
    cors(res, 'POST, OPTIONS');
    res.setHeader('Accept-Post', 'application/sdp');
    res.status(204).end();
  });

  router.post(
    '/:stageId',
    (req, res, next) => {
      cors(res, 'POST, OPTIONS');
      const type = (req.get('content-type') ?? '').split(';')[0]!.trim().toLowerCase();
      if (type !== 'application/sdp') return fail(res, 415, 'BAD_REQUEST', `send the offer as Content-Type: application/sdp (got ${type.slice(0, 60) || 'none'})`);
      next();
    },
    express.text({ type: () => true, limit: MAX_OFFER_BYTES }),
    (req, res) => {
      const stageId = stageOf(req);
      if (!stageId) return fail(res, 404, 'NOT_FOUND', 'no such stage');
      const key = bearerToken(req.get('authorization'));
      if (!key) return fail(res, 401, 'UNAUTHORIZED', "send the stage's performer key as a Bearer token");
      const rawName = typeof req.query['name'] === 'string' ? req.query['name'] : 'OBS';
      const name = displayNameSchema.safeParse(rawName);
      if (!name.success) return fail(res, 400, 'BAD_REQUEST', `name: ${name.error.issues[0]?.message ?? 'invalid'}`);
      const offer = typeof req.body === 'string' ? req.body : '';
      const address = clientAddress(req.socket.remoteAddress ?? 'unknown', req.headers['x-forwarded-for']);
      deps.ingest.publish({ stageId, key, name: name.data, address, offer }).then(
        ({ resourceId, answer }) => {
          for (const url of deps.iceServers) res.append('Link', iceServerLink(url));
          res.status(201).location(`/whip/${encodeURIComponent(stageId)}/${resourceId}`).type('application/sdp').send(answer);
        },
        (err: unknown) => sendFailure(res, err, deps.onError),
      );
    },
  );

  router.options('/:stageId/:resourceId', (_req, res) => {
    cors(res, 'DELETE, OPTIONS');
    res.status(204).end();
  });

  router.delete('/:stageId/:resourceId', (req, res) => {
    cors(res, 'DELETE, OPTIONS');
    const stageId = stageOf(req);
    const resourceId = String(req.params['resourceId']);
    if (!stageId || !RESOURCE_ID.test(resourceId)) return fail(res, 404, 'NOT_FOUND', 'no such WHIP session');
    const key = bearerToken(req.get('authorization'));
    if (!key) return fail(res, 401, 'UNAUTHORIZED', "send the stage's performer key as a Bearer token");
    deps.ingest.unpublish({ stageId, resourceId, key }).then(
      () => res.status(200).end(),
      (err: unknown) => sendFailure(res, err, deps.onError),
    );
  });

  // No trickle ICE and no ICE restart (the answer carries every candidate): PATCH is not allowed here.
  router.patch('/:stageId/:resourceId', (_req, res) => {
    cors(res, 'DELETE, OPTIONS');
    res.setHeader('Allow', 'DELETE, OPTIONS');
    fail(res, 405, 'BAD_REQUEST', 'this WHIP server supports neither trickle ICE nor ICE restarts: PATCH is not allowed');
  });

  router.all('/:stageId', (_req, res) => {
    cors(res, 'POST, OPTIONS');
    res.setHeader('Allow', 'POST, OPTIONS');
    fail(res, 405, 'BAD_REQUEST', 'POST an SDP offer here');
  });

  router.use((_req, res) => fail(res, 404, 'NOT_FOUND', 'no such WHIP endpoint'));
  // A body over the limit, or one that cannot be read.
  router.use((err: unknown, _req: Request, res: Response, _next: express.NextFunction) => {
    const e = err as { type?: string };
    if (e.type === 'entity.too.large') return fail(res, 413, 'BAD_REQUEST', `the offer is larger than ${MAX_OFFER_BYTES} bytes`);
    fail(res, 400, 'BAD_REQUEST', 'the request body could not be read');
  });
  return router;
}
