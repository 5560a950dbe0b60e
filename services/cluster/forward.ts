// Cluster mode: a request for a stage that another node serves is passed on to that node as it came (method, path,
// headers, body streamed), and its answer passed back. The client sees one answer, whichever node it reached.
import crypto from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { Logger } from '../logger.ts';

/**
 * Set on a forwarded request: `<node id> <client address> <signature>`, the signature an HMAC-SHA256 (keyed with the
 * cluster's shared ADMIN_TOKEN) of the node, the client, the method and the URL. A node that verifies it answers the
 * request itself (never forwarding it again) and counts it against the client's address, not the forwarding node's.
 */
export const FORWARDED_HEADER = 'x-stage-radio-forwarded-by';

function signature(secret: string, nodeId: string, client: string, method: string, url: string): string {
  return crypto.createHmac('sha256', secret).update(`${nodeId}\n${client}\n${method}\n${url}`).digest('base64url');
}

/** The client address a forwarded request carries, if its header is a valid signature of another node; else null. */
export function verifyForwarded(secret: string, header: string | undefined, method: string, url: string): string | null {
  const parts = header?.split(' ');
  if (parts?.length !== 3) return null;
  const [nodeId, client, sig] = parts as [string, string, string];
  const expected = Buffer.from(signature(secret, nodeId, client, method, url));
  const given = Buffer.from(sig);
  return given.length === expected.length && crypto.timingSafeEqual(given, expected) ? client : null;
}
/** How long the owner may take to answer before the client gets UNAVAILABLE. */
const FORWARD_TIMEOUT_MS = 30_000;

// Connection-level headers (RFC 9110 §7.6.1) are the hop's own, not the request's.
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

export class Forwarder {
  readonly #selfId: string;
  readonly #secret: string;
  readonly #log: Logger;
  readonly #agents = { http: new http.Agent({ keepAlive: true, maxSockets: 64 }), https: new https.Agent({ keepAlive: true, maxSockets: 64 }) };

  constructor(selfId: string, secret: string, log: Logger) {
    this.#selfId = selfId;
    this.#secret = secret;
    this.#log = log;
  }

  /**
   * Sends `req` on to the node at `ownerUrl` and pipes its answer to `res`. The Host header goes along unchanged (and
   * the scheme as X-Forwarded-Proto), so links in the answer point where the client is. Resolves when the answer is
   * sent; an unreachable owner is answered 503 UNAVAILABLE (Retry-After 2).
   */
  forward(req: http.IncomingMessage, res: http.ServerResponse, ownerUrl: string, client: string): Promise<void> {
    const selfId = this.#selfId;
    const log = this.#log;
    const agents = this.#agents;
    return new Promise((resolve) => {
      const url = (req as { originalUrl?: string }).originalUrl ?? req.url ?? '/';
      const target = new URL(url, ownerUrl);
      const headers: http.OutgoingHttpHeaders = {};
      for (const [name, value] of Object.entries(req.headers)) if (!HOP_BY_HOP.has(name) && value !== undefined) headers[name] = value;
      const encrypted = 'encrypted' in req.socket && (req.socket as { encrypted?: boolean }).encrypted === true;
      headers['x-forwarded-proto'] ??= encrypted ? 'https' : 'http';
      const prior = req.headers['x-forwarded-for'];
      const peer = req.socket.remoteAddress ?? '';
      headers['x-forwarded-for'] = prior ? `${Array.isArray(prior) ? prior.join(', ') : prior}, ${peer}` : peer;
      headers[FORWARDED_HEADER] = `${selfId} ${client} ${signature(this.#secret, selfId, client, req.method ?? 'GET', url)}`;
      const lib = target.protocol === 'https:' ? https : http;
      const upstream = lib.request(
        target,
        {
          method: req.method ?? 'GET',
          headers,
          agent: target.protocol === 'https:' ? agents.https : agents.http,
          timeout: FORWARD_TIMEOUT_MS,
          // Nodes reach each other on their own addresses; a self-signed certificate (the embedded default) is fine there.
          ...(target.protocol === 'https:' ? { rejectUnauthorized: false } : {}),
        },
        (answer) => {
          const out: http.OutgoingHttpHeaders = {};
          for (const [name, value] of Object.entries(answer.headers)) if (!HOP_BY_HOP.has(name) && value !== undefined) out[name] = value;
          res.writeHead(answer.statusCode ?? 502, out);
          answer.pipe(res);
          answer.on('end', () => resolve());
          answer.on('error', () => {
            res.destroy();
            resolve();
          });
        },
      );
      const unavailable = (why: string) => {
        log.warn('could not forward a request to the node that serves the stage', { to: target.origin, path: target.pathname, error: why });
        if (!res.headersSent) {
          res.setHeader('Retry-After', '2');
          res.statusCode = 503;
          res.setHeader('Content-Type', 'application/json; charset=utf-8');
          res.end(JSON.stringify({ ok: false, error: { code: 'UNAVAILABLE', message: 'the node that serves this stage did not answer; try again', retryAfterSeconds: 2 } }));
        } else res.destroy();
        resolve();
      };
      upstream.on('timeout', () => upstream.destroy(new Error('timed out')));
      upstream.on('error', (err) => unavailable(err.message));
      req.pipe(upstream);
    });
  }

  /** Lets go of the keep-alive connections to other nodes (at close). */
  close(): void {
    this.#agents.http.destroy();
    this.#agents.https.destroy();
  }
}
