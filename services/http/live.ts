// The CDN origin for live HLS: serves <cdnDir>/live/<stageId>/<file> at /live/<stageId>/<file>, as nginx does in
// production (infra/nginx/nginx.conf). Only a strict whitelist of names is served; everything else is a 404.
import path from 'node:path';
import express, { type Request, type Response } from 'express';
import { LiveFileCache } from './liveCache.ts';
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
/** Playlists larger than this are streamed like segments instead of read into memory. */
const MAX_BUFFERED = 1024 * 1024;

function notFound(res: Response): void {
  for (const h of ['Content-Type', 'Content-Length', 'Content-Range', 'Accept-Ranges', 'ETag', 'Last-Modified']) res.removeHeader(h);
  res.setHeader('Cache-Control', 'no-store');
  res.status(404).json({ ok: false, error: { code: 'NOT_FOUND', message: 'no such live file' } });
}

export interface LiveRouterOptions {
  /** A client fetched a stage's index.m3u8 (GET, the file exists): for the listener estimate (services/ops/metrics.ts). */
  onPlaylist?: (stageId: string, req: Request) => void;
  /** The origin's memory of the folder (one per app). */
  cache?: LiveFileCache;
}

export function liveRouter(cdnDir: string, opts: LiveRouterOptions = {}): express.Router {
  const liveDir = path.resolve(cdnDir, 'live');
  const router = express.Router();
  const cache = opts.cache ?? new LiveFileCache({ maxFileBytes: MAX_BUFFERED });

  router.use((req: Request, res: Response) => {
    res.setHeader('Access-Control-Allow-Origin', '*');
    res.setHeader('Access-Control-Expose-Headers', 'Content-Length, Content-Range');

    if (req.method === 'OPTIONS') {
      res.setHeader('Access-Control-Allow-Methods', 'GET, HEAD, OPTIONS');
      res.setHeader('Access-Control-Allow-Headers', 'Range');
      res.setHeader('Access-Control-Max-Age', '86400');
      res.status(204).end();
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return notFound(res);

    const m = LIVE_PATH.exec(req.path);
    const stageId = m?.[1];
    const name = m?.[2];
    const kind = name && !name.startsWith('.') ? KINDS[path.extname(name)] : undefined;
    if (!stageId || !name || !kind) return notFound(res);
    const rel = `${stageId}/${name}`;
    const full = path.resolve(liveDir, rel);
    if (!full.startsWith(liveDir + path.sep)) return notFound(res);

    res.setHeader('Content-Type', kind.type);
    res.setHeader('Cache-Control', kind.mutable ? CACHE_MUTABLE : CACHE_IMMUTABLE);

    const stream = () =>
      res.sendFile(rel, { root: liveDir, dotfiles: 'deny', cacheControl: false, acceptRanges: true, lastModified: true }, (err) => {
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
        if (name === PLAYLIST_NAME && req.method === 'GET') opts.onPlaylist?.(stageId, req);
        if (r === 'large') return stream();
        res.setHeader('ETag', r.etag);
        if (kind.mutable) {
          // Range is not offered on these small, ever-changing files: a client asking for one gets the whole file (200).
          // No Last-Modified: its one-second resolution would let an If-Modified-Since revalidation (a CDN's) get a 304
          // for a playlist rewritten within the same second. The ETag is computed from the content, so it is exact.
          res.setHeader('Accept-Ranges', 'none');
        } else {
          res.setHeader('Accept-Ranges', 'bytes');
          res.setHeader('Last-Modified', r.mtime.toUTCString());
        }
        res.send(r.body); // 304 on a matching If-None-Match / If-Modified-Since, and HEAD, are handled by Express
      },
      () => notFound(res),
    );
  });

  return router;
}
