// What every HTTP response and every REST write goes through: security headers, and the per-address / per-stage
// write limits (docs/operations.md, "Limits"). No dependency (helmet is not needed for this handful of headers).
import type { ServerResponse } from 'node:http';
import type { RequestHandler } from 'express';
import { stageIdSchema } from '../shared/ids.ts';
import type { KeyedLimits } from '../limits.ts';

/** No browser feature for anything but the performer and listener pages, which need the microphone (call-in). */
const NO_FEATURES = 'camera=(), microphone=(), geolocation=(), display-capture=(), payment=(), usb=(), serial=(), hid=()';
export const PERFORMER_PERMISSIONS = NO_FEATURES.replace('microphone=()', 'microphone=(self)');

/** Appended to each page's own Content-Security-Policy: no framing, no <base>, forms post only here. */
export const PAGE_CSP_EXTRA = "; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/** Headers for responses that are data, not documents (the REST API, Socket.IO's HTTP long-polling). */
export const DATA_HEADERS: Readonly<Record<string, string>> = {
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'X-Frame-Options': 'DENY',
  'Content-Security-Policy': "default-src 'none'; frame-ancestors 'none'",
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Resource-Policy': 'same-site',
  'Permissions-Policy': NO_FEATURES,
};

/**
 * The defaults on every response; routes refine them: pages set their own CSP (plus PAGE_CSP_EXTRA), the performer
 * page allows the microphone, /live is fetchable from any origin (Cross-Origin-Resource-Policy: cross-origin),
 * /api adds `default-src 'none'`. HSTS only when the public URL is https.
 */
const LIVE_PREFIX = /^\/live\//i;

export function securityHeaders(opts: { hsts: boolean }): RequestHandler {
  return (req, res, next) => {
    // Express matches the /live mount without regard to case: so does this.
    setSecurityHeaders(res, LIVE_PREFIX.test(req.path), opts.hsts);
    next();
  };
}

/** What securityHeaders sets, on any response (the /live fast path in front of Express sets them itself). */
export function setSecurityHeaders(res: ServerResponse, live: boolean, hsts: boolean): void {
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('Referrer-Policy', 'no-referrer');
  res.setHeader('X-Frame-Options', 'DENY');
  res.setHeader('Content-Security-Policy', "frame-ancestors 'none'");
  res.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
  res.setHeader('Cross-Origin-Resource-Policy', live ? 'cross-origin' : 'same-site');
  res.setHeader('Permissions-Policy', NO_FEATURES);
  if (hsts) res.setHeader('Strict-Transport-Security', 'max-age=31536000');
}

const WRITE_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
const STAGE_PATH = /^\/stages\/([^/]+)/;

/**
 * REST writes under the router it is mounted on (/api), per client address (req.ip: X-Forwarded-For is honoured from
 * a loopback proxy only) and per stage. Runs before authentication, so wrong tokens and keys count too. Past the limit:
 * 429 RATE_LIMITED with Retry-After.
 */
export function writeLimits(limits: KeyedLimits): RequestHandler {
  return (req, res, next) => {
    if (!WRITE_METHODS.has(req.method)) return next();
    const raw = STAGE_PATH.exec(req.path)?.[1];
    const stage = raw === undefined ? null : stageIdSchema.safeParse(raw);
    void limits.takeShared(req.ip ?? req.socket.remoteAddress ?? 'unknown', stage?.success ? stage.data : null).then((wait) => {
      if (wait === 0) return next();
      res.setHeader('Retry-After', String(wait));
      res.setHeader('Cache-Control', 'no-store');
      res.status(429).json({ ok: false, error: { code: 'RATE_LIMITED', message: `too many writes; retry in ${wait} s` } });
    }, next);
  };
}
