// Publishes FFmpeg's live playlist with EXT-X-DATERANGE tags added (chapters, tracks, markers), atomically: the
// playlist players fetch is always a whole file (temp file + rename), rewritten whenever FFmpeg's changes or the
// tags do.
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Log } from '../log.ts';
import { endPlaylist, parseMediaPlaylist } from './playlist.ts';

export interface DateRange {
  id: string;
  /** CLASS attribute, e.g. com.stage-radio.chapter. */
  class: string;
  /** ISO 8601 START-DATE. */
  startDate: string;
  /** Client attributes, e.g. { 'X-TITLE': 'Intro' }: quoted strings. */
  attributes: Record<string, string>;
  durationSeconds?: number;
}

const POLL_MS = 250;

/** A segment as it first appears in the published playlist (for metrics: services/ops/metrics.ts). */
export interface ListedSegment {
  uri: string;
  sequence: number;
  /** EXTINF duration, seconds. */
  duration: number;
  /** The segment's PROGRAM-DATE-TIME as FFmpeg wrote it. */
  programDateTime: string;
  /** Preceded by EXT-X-DISCONTINUITY (the first segment of a run after an FFmpeg restart). */
  discontinuity: boolean;
  /** Wall clock (ms) of the segment's end: its PROGRAM-DATE-TIME plus its EXTINF duration. */
  endMs: number;
  /** Wall clock (ms) when the playlist listing it was published. */
  listedAtMs: number;
}

type PublisherObserverEvents = { segmentListed: [segment: ListedSegment] };

/** A quoted-string attribute value (RFC 8216 §4.2): no double quote, CR or LF. */
function quoted(v: string): string {
  return `"${v.replace(/["\r\n]/g, (c) => (c === '"' ? "'" : ' '))}"`;
}

export function dateRangeTag(r: DateRange): string {
  const attrs = [`ID=${quoted(r.id)}`, `CLASS=${quoted(r.class)}`, `START-DATE=${quoted(r.startDate)}`];
  if (r.durationSeconds !== undefined) attrs.push(`DURATION=${r.durationSeconds.toFixed(3)}`);
  for (const [k, v] of Object.entries(r.attributes)) if (/^X-[A-Z0-9-]+$/.test(k)) attrs.push(`${k}=${quoted(v)}`);
  return `#EXT-X-DATERANGE:${attrs.join(',')}`;
}

/**
 * The ranges a playlist window should carry: those starting at or after the window's first PROGRAM-DATE-TIME, plus
 * the latest range of each class that started before it (the chapter or track still current).
 */
export function rangesForWindow(ranges: readonly DateRange[], windowStartMs: number | null): DateRange[] {
  if (windowStartMs === null) return [...ranges];
  const inWindow = ranges.filter((r) => Date.parse(r.startDate) >= windowStartMs);
  const current = new Map<string, DateRange>();
  for (const r of ranges) {
    if (Date.parse(r.startDate) >= windowStartMs) continue;
    const prev = current.get(r.class);
    if (!prev || Date.parse(prev.startDate) <= Date.parse(r.startDate)) current.set(r.class, r);
  }
  return [...current.values(), ...inWindow].sort((a, b) => Date.parse(a.startDate) - Date.parse(b.startDate));
}

/** Adds the tags after the playlist's header (before its first segment's tags). */
export function withDateRanges(playlist: string, tags: readonly string[]): string {
  if (tags.length === 0) return playlist;
  const lines = playlist.split('\n');
  const first = lines.findIndex((l) => /^#EXTINF|^#EXT-X-PROGRAM-DATE-TIME|^#EXT-X-DISCONTINUITY$|^[^#\s]/.test(l.trim()));
  const at = first < 0 ? lines.length : first;
  return [...lines.slice(0, at), ...tags, ...lines.slice(at)].join('\n');
}

export class PlaylistPublisher {
  readonly source: string;
  readonly target: string;
  readonly #log: Log;
  #ranges: DateRange[] = [];
  #watcher: fs.FSWatcher | null = null;
  #timer: NodeJS.Timeout | null = null;
  #chain: Promise<void> = Promise.resolve();
  #lastSourceMtime = -1;
  #originDate: string | null = null;
  #ended = false;
  #lastListedSequence = -1;
  #newestSegmentEndMs: number | null = null;
  /** For onlookers (metrics): every newly published segment. */
  readonly observer = new EventEmitter<PublisherObserverEvents>();

  constructor(source: string, target: string, log: Log) {
    this.source = source;
    this.target = target;
    this.#log = log;
  }

  start(): void {
    try {
      this.#watcher = fs.watch(path.dirname(this.source), (_e, name) => {
        if (name === path.basename(this.source)) this.publish();
      });
      this.#watcher.on('error', () => undefined);
    } catch {
      // Polling alone still publishes.
    }
    this.#timer = setInterval(() => this.#publishIfChanged(), POLL_MS);
  }

  /** PROGRAM-DATE-TIME of the first segment (programme time 0), once seen. */
  get originDate(): string | null {
    return this.#originDate;
  }

  /** Wall clock (ms) of the end of the newest published segment (PROGRAM-DATE-TIME + EXTINF), once one is listed. */
  get newestSegmentEndMs(): number | null {
    return this.#newestSegmentEndMs;
  }

  setDateRanges(ranges: readonly DateRange[]): void {
    this.#ranges = [...ranges];
    this.publish();
  }

  #publishIfChanged(): void {
    fs.stat(this.source, (err, st) => {
      if (!err && st.mtimeMs !== this.#lastSourceMtime) this.publish();
    });
  }

  /** Rewrites the published playlist (serialized). */
  publish(): Promise<void> {
    this.#chain = this.#chain.then(() => this.#publish()).catch((err: unknown) => {
      this.#log.warn('could not publish the playlist', { error: String(err) });
    });
    return this.#chain;
  }

  async #publish(): Promise<void> {
    if (this.#ended) return;
    let text: string;
    try {
      const st = await fsp.stat(this.source);
      this.#lastSourceMtime = st.mtimeMs;
      text = await fsp.readFile(this.source, 'utf8');
    } catch {
      return;
    }
    const parsed = parseMediaPlaylist(text);
    const firstPdt = parsed.segments[0]?.programDateTime ?? null;
    if (this.#originDate === null && parsed.mediaSequence === 0 && firstPdt) this.#originDate = new Date(Date.parse(firstPdt)).toISOString();
    const ranges = rangesForWindow(this.#ranges, firstPdt ? Date.parse(firstPdt) : null);
    const out = withDateRanges(text, ranges.map(dateRangeTag));
    const tmp = `${this.target}.pub.tmp`;
    await fsp.writeFile(tmp, out);
    await fsp.rename(tmp, this.target);
    this.#noteListed(parsed.mediaSequence, parsed.segments);
  }

  #noteListed(mediaSequence: number, segments: ReturnType<typeof parseMediaPlaylist>['segments']): void {
    const listedAtMs = Date.now();
    segments.forEach((seg, i) => {
      const sequence = mediaSequence + i;
      const pdt = seg.programDateTime ? Date.parse(seg.programDateTime) : NaN;
      if (sequence <= this.#lastListedSequence || !Number.isFinite(pdt)) return;
      this.#lastListedSequence = sequence;
      const endMs = pdt + seg.duration * 1000;
      this.#newestSegmentEndMs = endMs;
      this.observer.emit('segmentListed', {
        uri: seg.uri,
        sequence,
        duration: seg.duration,
        programDateTime: seg.programDateTime!,
        discontinuity: seg.discontinuity,
        endMs,
        listedAtMs,
      });
    });
  }

  /** Publishes a last time and ends both playlists (ENDLIST). Idempotent. */
  async end(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    this.#watcher?.close();
    this.#watcher = null;
    await this.publish();
    this.#ended = true;
    this.observer.removeAllListeners();
    await endPlaylist(this.target);
  }

  /** Stops watching without ending anything. */
  close(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    this.#watcher?.close();
    this.#watcher = null;
    this.observer.removeAllListeners();
  }
}
