// The CDN origin for live HLS: serves <cdnDir>/live/<stageId>/<file> at /live/<stageId>/<file>, as nginx does in
// production (infra/nginx/nginx.conf). Only a strict whitelist of names is served; everything else is a 404.
// Low-Latency HLS (RFC 8216bis 6.2.5.2, 6.2.6) is the origin's part: a playlist request with delivery directives
// (_HLS_msn, _HLS_part) is held until the playlist has what it asks for, and a request for the part the playlist
// hints at (EXT-X-PRELOAD-HINT) is held until that part is written. Both wait on the stage's live writer
// (pipelines/hls/liveWriter.ts): one wake-up per part it publishes, for every held request at once.
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import zlib from 'node:zlib';
import crypto from 'node:crypto';
import express, { type Request, type Response } from 'express';
import { type CachedFile, LiveFileCache } from './liveCache.ts';
import { setSecurityHeaders } from './guards.ts';
import { clientAddress } from './util.ts';
import { acceptedEncodings } from '../pages/bundle.ts';
import { PLAYLIST_NAME } from '../../pipelines/mixer/ffmpegArgs.ts';
import { PART_FILE_RE } from '../../pipelines/hls/liveWriter.ts';

/** The raw (not decoded) path: no percent-encoding, no dot segments, no empty segments can get through. */
const LIVE_PATH = /^\/([A-Za-z0-9_-]{6,64})\/([A-Za-z0-9_.-]{1,128})$/;

interface Kind {
  type: string;
  /** Rewritten in place (playlists): short cache, read whole through one file handle. Otherwise written once. */
  mutable: boolean;
}

// Live HLS is fragmented MP4 (CMAF), audio only: init sections (.mp4), segments and parts (.m4s) are audio/mp4
// (RFC 4337). Players go by the playlist and the bytes, not by this type: hls.js ignores it; Safari's native player
// plays fMP4 HLS served as video/mp4 or audio/mp4 (MediaMTX serves its LL-HLS parts and init as video/mp4).
// `video/iso.segment` (IANA's type for .m4s) is not in nginx's or most CDNs' tables; audio/mp4 says what it is.
const KINDS: Record<string, Kind> = {
  '.m3u8': { type: 'application/vnd.apple.mpegurl', mutable: true },
  '.json': { type: 'application/json', mutable: true },
  '.m4s': { type: 'audio/mp4', mutable: false },
  '.mp4': { type: 'audio/mp4', mutable: false },
  '.aac': { type: 'audio/aac', mutable: false },
  '.vtt': { type: 'text/vtt; charset=utf-8', mutable: false },
};

const CACHE_MUTABLE = 'no-cache, max-age=1';
const CACHE_IMMUTABLE = 'public, max-age=31536000, immutable';
/** Files larger than this are streamed from disk instead of kept in memory. */
export const LIVE_MAX_BUFFERED = 1024 * 1024;
/**
 * A held request is answered after this many target durations at most (RFC 8216bis 6.2.5.2 bounds the wait there):
 * a playlist with the current playlist, a hinted part with a 404 if it still is not there.
 */
export const HOLD_TARGET_DURATIONS = 3;
/** The target duration assumed before the first playlist is published. */
const DEFAULT_TARGET_SECONDS = 1;

function notFound(res: Response): void {
  for (const h of ['Content-Type', 'Content-Length', 'Content-Range', 'Accept-Ranges', 'ETag', 'Last-Modified']) res.removeHeader(h);
  res.setHeader('Cache-Control', 'no-store');
  res.status(404).json({ ok: false, error: { code: 'NOT_FOUND', message: 'no such live file' } });
}

/** The same bytes on both paths (the fast path has no Express to format them). */
function badRequest(req: IncomingMessage, res: ServerResponse, message: string): void {
  for (const h of ['Content-Range', 'Accept-Ranges', 'ETag', 'Last-Modified']) res.removeHeader(h);
  const body = Buffer.from(JSON.stringify({ ok: false, error: { code: 'BAD_REQUEST', message } }));
  res.statusCode = 400;
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.setHeader('Content-Length', body.length);
  res.end(req.method === 'HEAD' ? undefined : body);
}

// ---------------------------------------------------------------------------------------------------------------
// LL-HLS: what the origin reads of a stage's live writer, and the pure rules of blocking reloads.

/** A part the writer has published (its playlist is in place). */
export interface PublishedPartEvent {
  msn: number;
  part: number;
  uri: string;
}

/**
 * The writer's onlooker emitter, as the origin uses it: a wake-up per published part, and per listed segment (a
 * segment closed at the end of an FFmpeg run comes with no part).
 */
export interface LiveWriterObserver {
  on(event: 'partPublished', listener: (part: PublishedPartEvent) => void): unknown;
  on(event: 'segmentListed' | 'ended', listener: () => void): unknown;
  off(event: 'partPublished', listener: (part: PublishedPartEvent) => void): unknown;
  off(event: 'segmentListed' | 'ended', listener: () => void): unknown;
}

/** What the origin needs of a stage's live HLS writer (pipelines/hls/liveWriter.ts, LiveHlsWriter). */
export interface LivePlaylistSource {
  /** The newest published part; null before the first. */
  readonly position: { msn: number; part: number } | null;
  /** The playlist as last published (the same bytes as the file). */
  readonly text: string;
  readonly ended: boolean;
  readonly observer: LiveWriterObserver;
}

/** The live writer of a stage on air, or null (not on air: its folder is served as it is). */
export type LivePlaylists = (stageId: string) => LivePlaylistSource | null;

/** Delivery directives of a playlist request (RFC 8216bis 6.2.5). `part` null: a whole segment is asked for. */
export interface Directives {
  msn: number;
  part: number | null;
}

const DECIMAL_INTEGER = /^\d{1,15}$/;

/**
 * The delivery directives of a playlist request's query string: null when it asks for no blocking reload (no
 * _HLS_msn; _HLS_skip alone is accepted and ignored, we do not advertise CAN-SKIP-UNTIL), or a message saying why it
 * is a bad request. Other parameters are ignored.
 */
export function parseDirectives(query: string): Directives | null | string {
  const params = new URLSearchParams(query);
  const one = (name: string): string | null | Error => {
    const all = params.getAll(name);
    return all.length > 1 ? new Error(`${name} is given more than once`) : (all[0] ?? null);
  };
  const msn = one('_HLS_msn');
  const part = one('_HLS_part');
  const skip = one('_HLS_skip');
  for (const v of [msn, part, skip]) if (v instanceof Error) return v.message;
  if (skip !== null && skip !== 'YES' && skip !== 'v2') return '_HLS_skip must be YES or v2';
  if (msn !== null && !DECIMAL_INTEGER.test(msn as string)) return '_HLS_msn must be a decimal integer';
  if (part !== null && !DECIMAL_INTEGER.test(part as string)) return '_HLS_part must be a decimal integer';
  if (part !== null && msn === null) return '_HLS_part needs _HLS_msn';
  if (msn === null) return null;
  return { msn: Number(msn), part: part === null ? null : Number(part) };
}

/** What a published live playlist holds, as far as blocking reloads and hints are concerned. */
export interface PlaylistState {
  /** Media sequence number of the newest complete segment (EXTINF); one less than the first when there is none. */
  complete: number;
  /** The newest part listed (EXT-X-PART), whether its segment is complete or being made; null when none is. */
  last: { msn: number; part: number } | null;
  /** EXT-X-TARGETDURATION (seconds); 0 when absent. */
  targetSeconds: number;
  /** The URI of EXT-X-PRELOAD-HINT:TYPE=PART, if any. */
  hint: string | null;
  ended: boolean;
}

export function playlistState(text: string): PlaylistState {
  let msn = 0;
  let complete = -1;
  let parts = 0;
  let last: PlaylistState['last'] = null;
  let targetSeconds = 0;
  let hint: string | null = null;
  let ended = false;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('#EXT-X-PART:')) last = { msn, part: parts++ };
    else if (line.startsWith('#EXT-X-MEDIA-SEQUENCE:')) {
      msn = Number(line.slice(22)) || 0;
      complete = msn - 1;
    } else if (line.startsWith('#EXT-X-TARGETDURATION:')) targetSeconds = Number(line.slice(22)) || 0;
    else if (line.startsWith('#EXT-X-PRELOAD-HINT:') && /(?:^|[:,])TYPE=PART(?:,|$)/.test(line.slice(20))) hint = /URI="([^"]*)"/.exec(line)?.[1] ?? null;
    else if (line === '#EXT-X-ENDLIST') ended = true;
    else if (line !== '' && !line.startsWith('#')) {
      complete = msn++;
      parts = 0;
    }
  }
  return { complete, last, targetSeconds, hint, ended };
}

/**
 * Whether the playlist answers these directives (RFC 8216bis 6.2.5.2): it holds segment `msn` (no part asked for),
 * or part `part` of segment `msn`, or anything after it. A part index past the last part of its segment is part 0 of
 * the next. A playlist without parts (LL-HLS off) answers a part of a segment once that segment is complete.
 */
export function playlistHas(s: PlaylistState, d: Directives): boolean {
  if (s.ended) return true;
  if (d.part === null) return s.complete >= d.msn;
  if (s.complete > d.msn) return true;
  if (s.last === null) return s.complete >= d.msn;
  return s.last.msn > d.msn || (s.last.msn === d.msn && s.last.part >= d.part);
}

/**
 * The segment a client may block for at most: the one after the segment of the newest part (a request for the
 * segment after that, two ahead, is refused with a 400 at once).
 */
export function furthestBlockable(s: PlaylistState, position: { msn: number } | null): number {
  return Math.max(position?.msn ?? -1, s.last?.msn ?? -1, s.complete) + 1;
}

/** Whether (msn, part) a comes after (or is) b. */
const atOrAfter = (a: { msn: number; part: number }, b: { msn: number; part: number }) => a.msn > b.msn || (a.msn === b.msn && a.part >= b.part);

// ---------------------------------------------------------------------------------------------------------------
// Held requests.

/** Why a held request is answered: what it waited for came ('ready'), or its part was skipped, time ran out, the writer ended. */
export type HoldOutcome = 'ready' | 'passed' | 'timeout' | 'ended';

interface Held {
  res: ServerResponse;
  group: Group;
  timer: NodeJS.Timeout;
  onClose: () => void;
  answer: (outcome: HoldOutcome) => void;
}

/** Held requests waiting for the same thing: a playlist with these directives, or one part. */
interface Group {
  key: string;
  kind: 'playlist' | 'part';
  msn: number;
  part: number | null;
  held: Set<Held>;
}

/** The held requests on one writer, and the listeners that wake them (there only while something is held). */
interface Feed {
  src: LivePlaylistSource;
  groups: Map<string, Group>;
  count: number;
  onPart: (p: PublishedPartEvent) => void;
  onListed: () => void;
  onEnded: () => void;
  detached: boolean;
}

/**
 * Every request the origin holds, grouped by writer and by what they wait for. A writer's observer gets two
 * listeners while at least one request waits on it, and none otherwise. A held request leaves no trace once it is
 * answered or its client has gone: its timer is cleared, its 'close' listener removed, its group and feed dropped
 * when empty.
 */
export class LiveHolds {
  readonly #sources: LivePlaylists | null;
  readonly #feeds = new Map<LivePlaylistSource, Feed>();
  /** The text last seen of each writer, parsed, and as a file to send. */
  readonly #seen = new WeakMap<LivePlaylistSource, { text: string; state: PlaylistState; file: CachedFile | null }>();
  #held = 0;

  constructor(sources: LivePlaylists | null) {
    this.#sources = sources;
  }

  /** Requests held right now (playlists and parts). */
  get held(): number {
    return this.#held;
  }

  /** Writers with a held request (each has the origin's listeners on its observer). */
  get feeds(): number {
    return this.#feeds.size;
  }

  source(stageId: string): LivePlaylistSource | null {
    return this.#sources?.(stageId) ?? null;
  }

  #seenOf(src: LivePlaylistSource): { text: string; state: PlaylistState; file: CachedFile | null } {
    const text = src.text;
    let seen = this.#seen.get(src);
    if (!seen || seen.text !== text) {
      const body = Buffer.from(text);
      const file = text === '' ? null : { body, etag: `"${crypto.createHash('sha1').update(body).digest('base64url')}"`, mtime: new Date() };
      seen = { text, state: playlistState(text), file };
      this.#seen.set(src, seen);
    }
    return seen;
  }

  /** The writer's playlist, parsed (computed once per published text). */
  state(src: LivePlaylistSource): PlaylistState {
    return this.#seenOf(src).state;
  }

  /** The writer's playlist as a file to send (null before the first is published). */
  file(src: LivePlaylistSource): CachedFile | null {
    return this.#seenOf(src).file;
  }

  /** How long a request may be held on this writer. */
  holdMs(src: LivePlaylistSource): number {
    return HOLD_TARGET_DURATIONS * (this.state(src).targetSeconds || DEFAULT_TARGET_SECONDS) * 1000;
  }

  /**
   * Holds `res` until the writer's playlist answers `d` (`kind` playlist) or part `d` is published or passed (`kind`
   * part, `key` its name), the time runs out, or the writer ends; then calls `answer` once. Not if its client has
   * already gone. The caller has checked that it is not answered yet.
   */
  hold(src: LivePlaylistSource, kind: 'playlist' | 'part', d: { msn: number; part: number | null }, key: string, res: ServerResponse, answer: (outcome: HoldOutcome) => void): void {
    const socket = res.socket;
    if (res.destroyed || !socket || socket.destroyed) return;
    let feed = this.#feeds.get(src);
    if (!feed) feed = this.#attach(src);
    let group = feed.groups.get(key);
    if (!group) {
      group = { key, kind, msn: d.msn, part: d.part, held: new Set() };
      feed.groups.set(key, group);
    }
    const f = feed;
    const g = group;
    const held: Held = {
      res,
      group: g,
      answer,
      onClose: () => this.#drop(f, held),
      timer: setTimeout(() => {
        this.#drop(f, held);
        answer('timeout');
      }, this.holdMs(src)),
    };
    g.held.add(held);
    f.count++;
    this.#held++;
    res.once('close', held.onClose);
  }

  #attach(src: LivePlaylistSource): Feed {
    const feed: Feed = {
      src,
      groups: new Map(),
      count: 0,
      onPart: (p) => this.#wake(feed, p),
      onListed: () => this.#wake(feed, null),
      // The writer has published ENDLIST: no wake-up will ever come after that, so whatever is still held is
      // answered now, with the last playlist.
      onEnded: () => {
        if (!feed.detached) this.#finishAll(feed, 'ended');
      },
      detached: false,
    };
    src.observer.on('partPublished', feed.onPart);
    src.observer.on('segmentListed', feed.onListed);
    src.observer.on('ended', feed.onEnded);
    this.#feeds.set(src, feed);
    return feed;
  }

  #detach(feed: Feed): void {
    if (feed.detached) return;
    feed.detached = true;
    this.#feeds.delete(feed.src);
    feed.src.observer.off('partPublished', feed.onPart);
    feed.src.observer.off('segmentListed', feed.onListed);
    feed.src.observer.off('ended', feed.onEnded);
  }

  /** Forgets a held request (answered, timed out, or its client gone): nothing of it is left. */
  #drop(feed: Feed, held: Held): void {
    if (!held.group.held.delete(held)) return;
    clearTimeout(held.timer);
    held.res.off('close', held.onClose);
    this.#held--;
    feed.count--;
    if (held.group.held.size === 0 && feed.groups.get(held.group.key) === held.group) feed.groups.delete(held.group.key);
    if (feed.count === 0) this.#detach(feed);
  }

  /** One published part (or listed segment): every group whose wait is over is answered, each request once. */
  #wake(feed: Feed, p: PublishedPartEvent | null): void {
    if (feed.src.ended) return this.#finishAll(feed, 'ended');
    const state = this.state(feed.src);
    for (const g of [...feed.groups.values()]) {
      if (g.kind === 'playlist') {
        if (playlistHas(state, { msn: g.msn, part: g.part })) this.#finish(feed, g, 'ready');
      } else if (p && atOrAfter(p, { msn: g.msn, part: g.part ?? 0 })) {
        this.#finish(feed, g, p.uri === g.key ? 'ready' : 'passed');
      }
    }
  }

  #finish(feed: Feed, g: Group, outcome: HoldOutcome): void {
    for (const held of [...g.held]) {
      this.#drop(feed, held);
      try {
        held.answer(outcome);
      } catch {
        // A response that cannot be written any more (its socket broke meanwhile): nothing to answer.
      }
    }
  }

  #finishAll(feed: Feed, outcome: HoldOutcome): void {
    for (const g of [...feed.groups.values()]) this.#finish(feed, g, outcome);
    this.#detach(feed);
  }
}

// ---------------------------------------------------------------------------------------------------------------

export interface LiveRouterOptions {
  /**
   * A client fetched a stage's index.m3u8 (GET, the file exists): for the listener estimate (services/ops/metrics.ts).
   * The address is the client's (X-Forwarded-For believed from a loopback proxy only).
   */
  onPlaylist?: (stageId: string, address: string, userAgent: string) => void;
  /** The origin's memory of the folder (one per app; the fast path and the router share it). */
  cache?: LiveFileCache;
  /** The live writer of a stage on air, for LL-HLS blocking reloads and preload hints. */
  livePlaylists?: LivePlaylists;
  /** The held requests (one per app; the fast path and the router share it). Made from livePlaylists if not given. */
  holds?: LiveHolds;
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

/** Playlists (text, a few KiB with LL-HLS parts) at least this long are gzipped for clients that take it. */
const GZIP_MIN_BYTES = 512;
/** Each playlist version is compressed once, however many listeners fetch it (the cache hands out one object per version). */
const gzipped = new WeakMap<CachedFile, Buffer>();

/**
 * What to send for a file served from memory: a playlist gzipped when the client takes it (its ETag marked `-gz`, a
 * different representation), anything else as it is. Segments and parts are never compressed: AAC does not shrink.
 */
function representation(req: IncomingMessage, kind: Kind, file: CachedFile): { body: Buffer; etag: string; gzip: boolean } {
  if (!kind.mutable || file.body.length < GZIP_MIN_BYTES || !acceptedEncodings(req.headers['accept-encoding']).has('gzip')) return { body: file.body, etag: file.etag, gzip: false };
  let body = gzipped.get(file);
  if (!body) {
    body = zlib.gzipSync(file.body, { level: 6 });
    gzipped.set(file, body);
  }
  return { body, etag: `${file.etag.slice(0, -1)}-gz"`, gzip: true };
}

/** The headers of a file served from memory (both paths). */
function setFileHeaders(res: ServerResponse, kind: Kind, file: CachedFile, sent: { etag: string; gzip: boolean } = { etag: file.etag, gzip: false }): void {
  res.setHeader('Content-Type', kind.type);
  res.setHeader('Cache-Control', kind.mutable ? CACHE_MUTABLE : CACHE_IMMUTABLE);
  res.setHeader('ETag', sent.etag);
  if (sent.gzip) res.setHeader('Content-Encoding', 'gzip');
  if (kind.mutable) {
    // Compressed or not by the client's Accept-Encoding: shared caches must keep the two apart.
    res.setHeader('Vary', 'Accept-Encoding');
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
function isFresh(req: IncomingMessage, file: CachedFile, kind: Kind, etag = file.etag): boolean {
  const noneMatch = req.headers['if-none-match'];
  const modifiedSince = req.headers['if-modified-since'];
  if (!noneMatch && !modifiedSince) return false;
  if (/(?:^|,)\s*?no-cache\s*?(?:,|$)/.test(req.headers['cache-control'] ?? '')) return false;
  if (noneMatch && noneMatch !== '*') {
    const tags = noneMatch.split(',').map((t) => t.trim().replace(/^W\//, ''));
    if (!tags.includes(etag.replace(/^W\//, ''))) return false;
  }
  if (modifiedSince) {
    if (kind.mutable) return false;
    const since = Date.parse(modifiedSince);
    if (Number.isNaN(since) || Math.floor(file.mtime.getTime() / 1000) * 1000 > since) return false;
  }
  return true;
}

/** How a playlist request is answered, on either path. */
interface PlaylistAnswers {
  bad(message: string): void;
  /** With the writer's playlist as it is now. */
  playlist(file: CachedFile): void;
  /** From the folder, as a request without directives is. */
  disk(): void;
}

/**
 * A playlist request with delivery directives (RFC 8216bis 6.2.5.2). Returns false when it has none (served as any
 * other). Bad directives: 400. A stage not on air: what is on disk, at once. Otherwise the writer's current playlist
 * (never a cached file that may be a part behind), at once if it has what is asked for (or ENDLIST), else when it
 * does; a segment two ahead of the newest part's: 400.
 */
function blockingReload(holds: LiveHolds | null, stageId: string, query: string, res: ServerResponse, answers: PlaylistAnswers): boolean {
  const d = parseDirectives(query);
  if (d === null) return false;
  if (typeof d === 'string') {
    answers.bad(d);
    return true;
  }
  const src = holds?.source(stageId) ?? null;
  if (!holds || !src) {
    answers.disk();
    return true;
  }
  const now = () => {
    const file = holds.file(src);
    if (file) answers.playlist(file);
    else answers.disk();
  };
  if (src.ended) {
    now();
    return true;
  }
  const state = holds.state(src);
  const furthest = furthestBlockable(state, src.position);
  if (d.msn > furthest) {
    answers.bad(`_HLS_msn ${d.msn} is too far ahead: the newest segment is ${furthest - 1}`);
    return true;
  }
  if (playlistHas(state, d)) {
    now();
    return true;
  }
  holds.hold(src, 'playlist', d, `${d.msn}/${d.part ?? ''}`, res, now);
  return true;
}

/**
 * A part that is not on disk: if it is the one the playlist hints at, or the one right after the newest, it is held
 * until written (then `serve(true)`), or until its turn passes, the time runs out or the writer ends (then
 * `serve(false)`: one more look, a 404 if it is still not there). Returns false when it is none of those (a 404 now).
 */
function holdPart(holds: LiveHolds | null, stageId: string, name: string, res: ServerResponse, serve: (written: boolean) => void): boolean {
  const m = PART_FILE_RE.exec(name);
  const src = m && holds ? holds.source(stageId) : null;
  if (!m || !holds || !src || src.ended) return false;
  const want = { msn: Number(m[1]), part: Number(m[2]) };
  const pos = src.position;
  // Written already (the writer writes a part before it moves its position): the stat that missed it was older.
  if (pos && atOrAfter(pos, want)) {
    serve(true);
    return true;
  }
  const next = pos ? (want.msn === pos.msn && want.part === pos.part + 1) || (want.msn === pos.msn + 1 && want.part === 0) : false;
  if (!next && holds.state(src).hint !== name) return false;
  holds.hold(src, 'part', want, name, res, (outcome) => serve(outcome === 'ready'));
  return true;
}

export interface LiveFastPath {
  /**
   * Serves GET and HEAD of a live file from memory without going through Express (its routing and middleware cost a
   * third of the origin's throughput under a thousand listeners), and LL-HLS blocking playlist reloads. Anything
   * else (another path or method, a byte range, a missing or large file, an error) goes to `next`, the Express app,
   * which answers as it always did.
   */
  handle(req: IncomingMessage, res: ServerResponse, next: () => void): void;
  /** Responses the fast path sent itself. */
  readonly served: number;
  /** Requests held right now (blocking playlist reloads and hinted parts, both paths). */
  readonly held: number;
  /** The held requests. */
  readonly holds: LiveHolds;
}

export function liveFastPath(cdnDir: string, opts: LiveRouterOptions & { cache: LiveFileCache; hsts: boolean }): LiveFastPath {
  const liveDir = path.resolve(cdnDir, 'live');
  const cache = opts.cache;
  const holds = opts.holds ?? new LiveHolds(opts.livePlaylists ?? null);
  let served = 0;
  return {
    get served() {
      return served;
    },
    get held() {
      return holds.held;
    },
    holds,
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
        const sent = representation(req, kind, r);
        setFileHeaders(res, kind, r, sent);
        if (isFresh(req, r, kind, sent.etag)) {
          res.removeHeader('Content-Type');
          res.removeHeader('Content-Encoding');
          res.statusCode = 304;
          res.end();
          return;
        }
        res.setHeader('Content-Length', sent.body.length);
        if (req.method === 'HEAD') res.end();
        else res.end(sent.body);
      };
      const fromDisk = () => {
        // Most requests: known at once (a cached segment, a playlist checked in the last 50 ms).
        const known = cache.peek(full, !kind.mutable);
        if (known) return send(known);
        cache.get(full, !kind.mutable).then(
          (r) => (r === 'missing' || r === 'large' || res.headersSent ? next() : send(r)),
          () => next(),
        );
      };
      if (q >= 0 && name === PLAYLIST_NAME) {
        const handled = blockingReload(holds, stageId, url.slice(q + 1), res, {
          bad: (message) => {
            served++;
            setSecurityHeaders(res, true, opts.hsts);
            setCors(res);
            badRequest(req, res, message);
          },
          playlist: send,
          disk: fromDisk,
        });
        if (handled) return;
      }
      fromDisk();
    },
  };
}

export function liveRouter(cdnDir: string, opts: LiveRouterOptions = {}): express.Router {
  const liveDir = path.resolve(cdnDir, 'live');
  const router = express.Router();
  const cache = opts.cache ?? new LiveFileCache({ maxFileBytes: LIVE_MAX_BUFFERED });
  const holds = opts.holds ?? (opts.livePlaylists ? new LiveHolds(opts.livePlaylists) : null);

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
    const send = (r: CachedFile) => {
      if (name === PLAYLIST_NAME && req.method === 'GET') {
        opts.onPlaylist?.(stageId, clientAddress(req.socket.remoteAddress ?? '', req.headers['x-forwarded-for']), req.get('user-agent') ?? '');
      }
      const sent = representation(req, kind, r);
      setFileHeaders(res, kind, r, sent);
      if (sent.gzip && req.fresh) res.removeHeader('Content-Encoding');
      res.send(sent.body); // 304 on a matching If-None-Match / If-Modified-Since, and HEAD, are handled by Express
    };
    /** `look`: the first look (a part that is not there may be held), or the one after a hold (or after a write). */
    const fromDisk = (look: 'first' | 'written' | 'last' = 'first') => {
      // A byte range of a segment is the rare case: send's Range handling. Everything else comes from memory.
      if (!kind.mutable && req.headers.range) return stream();
      cache.get(full, !kind.mutable, look === 'written').then(
        (r) => {
          if (r === 'missing') {
            if (look !== 'first' || !holdPart(holds, stageId, name, res, (written) => fromDisk(written ? 'written' : 'last'))) notFound(res);
            return;
          }
          if (r === 'large') return stream();
          send(r);
        },
        () => notFound(res),
      );
    };

    const q = req.originalUrl.indexOf('?');
    if (q >= 0 && name === PLAYLIST_NAME) {
      const handled = blockingReload(holds, stageId, req.originalUrl.slice(q + 1), res, {
        bad: (message) => badRequest(req, res, message),
        playlist: send,
        disk: () => fromDisk(),
      });
      if (handled) return;
    }
    fromDisk();
  });

  return router;
}
