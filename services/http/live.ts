// The CDN origin for live HLS: serves <cdnDir>/live/<stageId>/<file> at /live/<stageId>/<file>, as nginx does in
// production (infra/nginx/nginx.conf). Only a strict whitelist of names is served; everything else is a 404.
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import express, { type Request, type Response } from 'express';
import { type CachedFile, LiveFileCache } from './liveCache.ts';
import { setSecurityHeaders } from './guards.ts';
import { clientAddress } from './util.ts';
import { PLAYLIST_NAME } from '../../pipelines/mixer/ffmpegArgs.ts';

/** The raw (not decoded) path: no percent-encoding, no dot segments, no empty segments can get through. */
const LIVE_PATH = /^\/([A-Za-z0-9_-]{6,64})\/([A-Za-z0-9_.-]{1,128})$/;

interface Kind {
  type: string;
  /** Rewritten in place (playlists): short cache, read whole through one file handle. Otherwise written once. */
  mutable: boolean;
}

const KINDS: Record<string, Kind> = {
  '.m3u8': { type: 'application/vnd.apple.mpegurl', mutable: true },
  '.json': { type: 'application/json', mutable: true },
  '.ts': { type: 'video/mp2t', mutable: false },
  '.m4s': { type: 'video/iso.segment', mutable: false },
  '.mp4': { type: 'audio/mp4', mutable: false },
  '.aac': { type: 'audio/aac', mutable: false },
  '.vtt': { type: 'text/vtt; charset=utf-8', mutable: false },
};

const CACHE_MUTABLE = 'no-cache, max-age=1';
const CACHE_IMMUTABLE = 'public, max-age=31536000, immutable';
/** Files larger than this are streamed from disk instead of kept in memory. */
export const LIVE_MAX_BUFFERED = 1024 * 1024;

function notFound(res: Response): void {
  for (const h of ['Content-Type', 'Content-Length', 'Content-Range', 'Accept-Ranges', 'ETag', 'Last-Modified']) res.removeHeader(h);
  res.setHeader('Cache-Control', 'no-store');
  res.status(404).json({ ok: false, error: { code: 'NOT_FOUND', message: 'no such live file' } });
}

export interface LiveRouterOptions {
  /**
   * A client fetched a stage's index.m3u8 (GET, the file exists): for the listener estimate (services/ops/metrics.ts).
   * The address is the client's (X-Forwarded-For believed from a loopback proxy only).
   */
  onPlaylist?: (stageId: string, address: string, userAgent: string) => void;
  /** The origin's memory of the folder (one per app; the fast path and the router share it). */
  cache?: LiveFileCache;
}

/** Where a request path (after /live) points, if it is a name the origin serves at all. */
function resolveLive(liveDir: string, livePath: string): { stageId: string; name: string; kind: Kind; full: string } | null {
  const m = LIVE_PATH.exec(livePath);
  const stageId = m?.[1];
  const name = m?.[2];
  const kind = name && !name.startsWith('.') ? KINDS[path.extname(name)] : undefined;
  if (!stageId || !name || !kind) return null;
  const full = path.resolve(liveDir, `${stageId}/${name}`);
  if (!full.startsWith(liveDir + path.sep)) return null;
  return { stageId, name, kind, full };
}

function setCors(res: ServerResponse): void {
  res.setHeader('Access-Control-Allow-Origin', '*');
  res.setHeader('Access-Control-Expose-Headers', 'Content-Length, Content-Range');
}

/** The headers of a file served from memory (both paths). */
function setFileHeaders(res: ServerResponse, kind: Kind, file: CachedFile): void {
  res.setHeader('Content-Type', kind.type);
  res.setHeader('Cache-Control', kind.mutable ? CACHE_MUTABLE : CACHE_IMMUTABLE);
  res.setHeader('ETag', file.etag);
  if (kind.mutable) {
    // Range is not offered on these small, ever-changing files: a client asking for one gets the whole file (200).
    // No Last-Modified: its one-second resolution would let an If-Modified-Since revalidation (a CDN's) get a 304
    // for a playlist rewritten within the same second. The ETag is computed from the content, so it is exact.
    res.setHeader('Accept-Ranges', 'none');
  } else {
    res.setHeader('Accept-Ranges', 'bytes');
    res.setHeader('Last-Modified', file.mtime.toUTCString());
  }
}

/** A conditional GET/HEAD the client's copy satisfies (the rules of the `fresh` module Express uses). */
function isFresh(req: IncomingMessage, file: CachedFile, kind: Kind): boolean {
  const noneMatch = req.headers['if-none-match'];
  const modifiedSince = req.headers['if-modified-since'];
  if (!noneMatch && !modifiedSince) return false;
  if (/(?:^|,)\s*?no-cache\s*?(?:,|$)/.test(req.headers['cache-control'] ?? '')) return false;
  if (noneMatch && noneMatch !== '*') {
    const tags = noneMatch.split(',').map((t) => t.trim().replace(/^W\//, ''));
    if (!tags.includes(file.etag.replace(/^W\//, ''))) return false;
  }
  if (modifiedSince) {
    if (kind.mutable) return false;
    const since = Date.parse(modifiedSince);
    if (Number.isNaN(since) || Math.floor(file.mtime.getTime() / 1000) * 1000 > since) return false;
  }
  return true;
}

export interface LiveFastPath {
  /**
   * Serves GET and HEAD of a live file from memory without going through Express (its routing and middleware cost a
   * third of the origin's throughput under a thousand listeners). Anything else (another path or method, a byte
   * range, a missing or large file, an error) goes to `next`, the Express app, which answers as it always did.
   */
  handle(req: IncomingMessage, res: ServerResponse, next: () => void): void;
  /** Responses the fast path sent itself. */
  readonly served: number;
}

export function liveFastPath(cdnDir: string, opts: LiveRouterOptions & { cache: LiveFileCache; hsts: boolean }): LiveFastPath {
  const liveDir = path.resolve(cdnDir, 'live');
  const cache = opts.cache;
  let served = 0;
  return {
    get served() {
      return served;
    },
    handle(req, res, next) {
      const url = req.url ?? '';
      if (!url.startsWith('/live/') || (req.method !== 'GET' && req.method !== 'HEAD')) return next();
      const q = url.indexOf('?');
      const target = resolveLive(liveDir, q < 0 ? url.slice(5) : url.slice(5, q));
      if (!target || (!target.kind.mutable && req.headers.range)) return next();
      const { stageId, name, kind, full } = target;
      const send = (r: CachedFile) => {
        if (name === PLAYLIST_NAME && req.method === 'GET') {
          opts.onPlaylist?.(stageId, clientAddress(req.socket.remoteAddress ?? '', req.headers['x-forwarded-for']), req.headers['user-agent'] ?? '');
        }
        served++;
        setSecurityHeaders(res, true, opts.hsts);
        setCors(res);
        setFileHeaders(res, kind, r);
        if (isFresh(req, r, kind)) {
          res.removeHeader('Content-Type');
          res.statusCode = 304;
          res.end();
          return;
        }
        res.setHeader('Content-Length', r.body.length);
        if (req.method === 'HEAD') res.end();
        else res.end(r.body);
      };
      // Most requests: known at once (a cached segment, a playlist checked in the last 50 ms).
      const known = cache.peek(full, !kind.mutable);
      if (known) return send(known);
      cache.get(full, !kind.mutable).then(
        (r) => (r === 'missing' || r === 'large' || res.headersSent ? next() : send(r)),
        () => next(),
      );
    },
  };
}

export function liveRouter(cdnDir: string, opts: LiveRouterOptions = {}): express.Router {
  const liveDir = path.resolve(cdnDir, 'live');
  const router = express.Router();
  const cache = opts.cache ?? new LiveFileCache({ maxFileBytes: LIVE_MAX_BUFFERED });

  router.use((req: Request, res: Response) => {
    setCors(res);

    if (req.method === 'OPTIONS') {
      res.setHeader('Access-Control-Allow-Methods', 'GET, HEAD, OPTIONS');
      res.setHeader('Access-Control-Allow-Headers', 'Range');
      res.setHeader('Access-Control-Max-Age', '86400');
      res.status(204).end();
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return notFound(res);

    const target = resolveLive(liveDir, req.path);
    if (!target) return notFound(res);
    const { stageId, name, kind, full } = target;

    res.setHeader('Content-Type', kind.type);
    res.setHeader('Cache-Control', kind.mutable ? CACHE_MUTABLE : CACHE_IMMUTABLE);

    const stream = () =>
      res.sendFile(`${stageId}/${name}`, { root: liveDir, dotfiles: 'deny', cacheControl: false, acceptRanges: true, lastModified: true }, (err) => {
        if (!err || res.headersSent) return;
        const status = (err as { status?: number }).status;
        if (status === 416 || status === 412) {
          res.removeHeader('Content-Type');
          res.status(status).end();
          return;
        }
        notFound(res);
      });

    // A byte range of a segment is the rare case: send's Range handling. Everything else comes from memory.
    if (!kind.mutable && req.headers.range) return stream();
    cache.get(full, !kind.mutable).then(
      (r) => {
        if (r === 'missing') return notFound(res);
        if (name === PLAYLIST_NAME && req.method === 'GET') {
          opts.onPlaylist?.(stageId, clientAddress(req.socket.remoteAddress ?? '', req.headers['x-forwarded-for']), req.get('user-agent') ?? '');
        }
        if (r === 'large') return stream();
        setFileHeaders(res, kind, r);
        res.send(r.body); // 304 on a matching If-None-Match / If-Modified-Since, and HEAD, are handled by Express
      },
      () => notFound(res),
    );
  });

  return router;
}
