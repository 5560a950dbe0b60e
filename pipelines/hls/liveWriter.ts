// The live HLS writer, a child of its mixer: it reads FFmpeg's fragmented MP4 (one stream per FFmpeg run), cuts it
// into parts (one moof+mdat each, about HLS_PART_SECONDS), groups the parts into segments (about
// HLS_SEGMENT_SECONDS), writes them with the init section into the stage's folder, and publishes the live playlist
// (Low-Latency HLS, or classic when LL is off), atomically, after every part. FFmpeg 5.1 cannot write LL-HLS parts;
// this is why Node does. It owns the playlist, so every tag comes from one place: PROGRAM-DATE-TIME from the
// programme clock itself (the mixer's origin plus the fragment's decode time), EXT-X-DATERANGE from the timeline,
// DISCONTINUITY and a new EXT-X-MAP when FFmpeg was restarted, ENDLIST at the end.
import { EventEmitter } from 'node:events';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { Writable } from 'node:stream';
import type { Log } from '../log.ts';
import { dateRangeTag, rangesForWindow, type DateRange } from './dateRange.ts';
import { renderLivePlaylist, type LivePart, type LiveSegment, type LivePlaylistOptions } from './livePlaylist.ts';
import { BoxReader, fragmentTiming, timescaleOf, trexDefaultDuration } from './mp4.ts';

export type { DateRange } from './dateRange.ts';

/** A segment as it first appears in the published playlist (the archive's sink, metrics). */
export interface ListedSegment {
  uri: string;
  sequence: number;
  /** Seconds. */
  duration: number;
  /** Its PROGRAM-DATE-TIME (ISO, UTC). */
  programDateTime: string;
  /** The first segment of a new FFmpeg run (after a crash). */
  discontinuity: boolean;
  /** Its run's init section (file name in the folder) and the run's index. */
  map: string;
  run: number;
  /** Wall clock (ms) of the segment's end: its PROGRAM-DATE-TIME plus its duration. */
  endMs: number;
  /**
   * Wall clock (ms) when its last part came out of FFmpeg to this writer. endMs → arrivedAtMs is the mix's lag (FFmpeg
   * behind the programme clock), arrivedAtMs → listedAtMs the writer's (files written, playlist published).
   */
  arrivedAtMs: number;
  /** Wall clock (ms) when the playlist listing it was published. */
  listedAtMs: number;
}

/** A part as it is published (blocking playlist reloads wait for these). */
export interface PublishedPart {
  msn: number;
  /** Its index in its segment. */
  part: number;
  uri: string;
  /** Wall clock (ms) of the part's end on the programme clock. */
  endMs: number;
  /** Wall clock (ms) when the playlist listing it was published. */
  publishedAtMs: number;
}

type WriterEvents = {
  segmentListed: [segment: ListedSegment];
  partPublished: [part: PublishedPart];
  /** ENDLIST is published: nothing more will be (the observer's listeners are dropped right after). */
  ended: [];
};

export interface LiveWriterOptions {
  dir: string;
  /** The playlist players fetch, in `dir`. */
  playlistName: string;
  segmentSeconds: number;
  /** Parts' duration (FFmpeg's fragments): also when LL is off, then only whole segments are listed. */
  partSeconds: number;
  lowLatency: boolean;
  /** Complete segments in the live window. */
  listSize: number;
  /** Wall clock (ms) of the programme clock's zero. */
  originWallMs: () => number;
  /** Where a run starts on the programme clock (seconds), once known. */
  runStartSeconds: (run: number) => number | null;
  /**
   * This playlist continues another one at the same address (a broadcast taken over from a node that died): its first
   * segment is number `msn`, after a DISCONTINUITY, and `discontinuitySequence` is the discontinuity number of the other
   * playlist's last segment. Players that were playing the other one go on across the break.
   */
  continues?: { msn: number; discontinuitySequence: number } | null;
  log: Log;
}

interface Run {
  index: number;
  map: string | null;
  timescale: number;
  defaultDuration: number | null;
  firstTfdt: number | null;
  startSeconds: number;
  moof: Buffer | null;
}

interface Partial {
  msn: number;
  programDateTime: string;
  startMs: number;
  discontinuity: boolean;
  map: string;
  run: number;
  parts: (LivePart & { bytes: Buffer })[];
  duration: number;
  /** When its newest part came out of FFmpeg (wall clock, ms). */
  arrivedAtMs: number;
}

const pad = (n: number) => String(n).padStart(5, '0');
export const segmentUri = (msn: number) => `seg_${pad(msn)}.m4s`;
export const partUri = (msn: number, part: number) => `part_${pad(msn)}_${part}.m4s`;
export const initUri = (run: number) => `init_${run}.mp4`;
/** Segments of this form are the programme's (the archive and the origin look for them). */
export const SEGMENT_FILE_RE = /^seg_(\d+)\.m4s$/;
export const INIT_FILE_RE = /^init_(\d+)\.mp4$/;
/** A part as the writer names it: part_<msn>_<index>.m4s. */
export const PART_FILE_RE = /^part_(\d{1,15})_(\d{1,6})\.m4s$/;

export class LiveHlsWriter {
  readonly #o: LiveWriterOptions;
  readonly #log: Log;
  readonly #playlistOptions: LivePlaylistOptions;
  readonly #segments: (LiveSegment & { startMs: number })[] = [];
  #partial: Partial | null = null;
  #nextMsn = 0;
  #discontinuitySequence = 0;
  /** The first segment follows another playlist's last (continues): it starts after a DISCONTINUITY. */
  #leadingDiscontinuity = false;
  /** The run of the last part written: a part of another run begins a new segment, after a DISCONTINUITY. */
  #lastRun: Run | null = null;
  #ranges: DateRange[] = [];
  /** The DATERANGE lines last rendered, and the window start they were rendered for. */
  #tags: { windowStart: number | null; lines: string[] } | null = null;
  #ended = false;
  #chain: Promise<void> = Promise.resolve();
  #text = '';
  #position: { msn: number; part: number } | null = null;
  #newestSegmentEndMs: number | null = null;
  /** For onlookers (the archive's sink, metrics, the origin's blocking reloads). */
  readonly observer = new EventEmitter<WriterEvents>();

  constructor(opts: LiveWriterOptions) {
    this.#o = opts;
    this.#log = opts.log;
    if (opts.continues) {
      this.#nextMsn = opts.continues.msn;
      this.#discontinuitySequence = opts.continues.discontinuitySequence;
      this.#leadingDiscontinuity = true;
    }
    this.#playlistOptions = {
      // A segment closes once it is within half a part of its target (#addPart): it is at most half a part longer.
      targetDuration: Math.max(1, Math.round(opts.segmentSeconds + opts.partSeconds / 2)),
      partTarget: opts.lowLatency ? opts.partSeconds : null,
      partHoldBack: 3 * opts.partSeconds,
      // Two complete segments, then the one being made: every part within three target durations of the end.
      partsForSegments: 2,
    };
  }

  get playlistPath(): string {
    return path.join(this.#o.dir, this.#o.playlistName);
  }

  /** PROGRAM-DATE-TIME of programme time 0. */
  get originDate(): string {
    return new Date(this.#o.originWallMs()).toISOString();
  }

  /** Wall clock (ms) of the end of the newest listed segment, once one is. */
  get newestSegmentEndMs(): number | null {
    return this.#newestSegmentEndMs;
  }

  /** The newest published part: its segment's sequence number and its index there; null before the first. */
  get position(): { msn: number; part: number } | null {
    return this.#position;
  }

  /** The playlist as last published (the same bytes as the file). */
  get text(): string {
    return this.#text;
  }

  get ended(): boolean {
    return this.#ended;
  }

  setDateRanges(ranges: readonly DateRange[]): void {
    this.#ranges = [...ranges];
    this.#tags = null;
    this.#enqueue(() => this.#publish(null));
  }

  /** The DATERANGE lines for a window starting at `windowStart`: rebuilt when the ranges or the window's start change, not on every part. */
  #dateRangeTags(windowStart: number | null): string[] {
    if (this.#tags?.windowStart !== windowStart) this.#tags = { windowStart, lines: rangesForWindow(this.#ranges, windowStart).map(dateRangeTag) };
    return this.#tags.lines;
  }

  /** FFmpeg's stdout for run `index` (0 for the first, +1 per restart): its fragmented MP4, parsed as it comes. */
  runStream(index: number): Writable {
    const reader = new BoxReader();
    const run: Run = { index, map: null, timescale: 48000, defaultDuration: null, firstTfdt: null, startSeconds: 0, moof: null };
    let pending: Buffer[] = [];
    return new Writable({
      write: (chunk: Buffer, _enc, cb) => {
        for (const box of reader.push(chunk)) {
          if (box.type === 'ftyp') pending = [Buffer.from(box.bytes)];
          else if (box.type === 'moov') {
            const init = Buffer.concat([...pending, box.bytes]);
            pending = [];
            run.timescale = timescaleOf(box.bytes) ?? 48000;
            run.defaultDuration = trexDefaultDuration(box.bytes);
            run.map = initUri(index);
            this.#enqueue(() => atomicWrite(path.join(this.#o.dir, run.map!), init));
          } else if (box.type === 'moof') run.moof = Buffer.from(box.bytes);
          else if (box.type === 'mdat' && run.moof) {
            const moof = run.moof;
            run.moof = null;
            const bytes = Buffer.concat([moof, box.bytes]);
            const arrivedAtMs = Date.now();
            this.#enqueue(() => this.#addPart(run, moof, bytes, arrivedAtMs));
          }
        }
        if (reader.failed) this.#log.error('the mix output is not fragmented MP4 as expected', { run: index, error: reader.failed });
        cb();
      },
      final: (cb) => {
        // The run is over (FFmpeg stopped or died): what it made of its last segment is a segment.
        this.#enqueue(() => this.#closeSegment(true));
        cb();
      },
    });
  }

  /** Every write runs in order, one at a time; a failure is logged and the next one goes on. */
  #enqueue(fn: () => Promise<unknown>): void {
    this.#chain = this.#chain.then(fn).then(
      () => undefined,
      (err: unknown) => void this.#log.error('could not write the live HLS', { error: String(err) }),
    );
  }

  async #addPart(run: Run, moof: Buffer, bytes: Buffer, arrivedAtMs: number): Promise<void> {
    if (this.#ended || !run.map) return;
    const timing = fragmentTiming(moof, run.defaultDuration);
    if (!timing) {
      this.#log.warn('a fragment without timing is skipped', { run: run.index });
      return;
    }
    if (run.firstTfdt === null) {
      run.firstTfdt = timing.baseMediaDecodeTime;
      run.startSeconds = this.#o.runStartSeconds(run.index) ?? 0;
    }
    const startSeconds = run.startSeconds + (timing.baseMediaDecodeTime - run.firstTfdt) / run.timescale;
    const duration = timing.duration / run.timescale;
    const startMs = this.#o.originWallMs() + startSeconds * 1000;
    // Decided here, in write order, not when the new run's stream is made: the last parts of the run before may still
    // be queued then.
    const newRun = this.#lastRun !== null && this.#lastRun !== run;
    this.#lastRun = run;
    if (newRun && this.#partial) await this.#closeSegment(true);
    let partial = this.#partial;
    if (!partial) {
      const discontinuity = newRun || this.#leadingDiscontinuity;
      this.#leadingDiscontinuity = false;
      partial = {
        msn: this.#nextMsn++,
        programDateTime: new Date(startMs).toISOString(),
        startMs,
        discontinuity,
        map: run.map,
        run: run.index,
        parts: [],
        duration: 0,
        arrivedAtMs,
      };
      this.#partial = partial;
    }
    const index = partial.parts.length;
    const uri = partUri(partial.msn, index);
    await atomicWrite(path.join(this.#o.dir, uri), bytes);
    partial.parts.push({ uri, duration, bytes });
    partial.duration += duration;
    partial.arrivedAtMs = arrivedAtMs;
    this.#position = { msn: partial.msn, part: index };
    // A segment closes once it reaches its target, less half a part: with 0.192 s parts and a 1 s target, 5 parts.
    if (partial.duration >= this.#o.segmentSeconds - duration / 2) await this.#closeSegment(false);
    await this.#publish({ msn: partial.msn, part: index, uri, endMs: startMs + duration * 1000, publishedAtMs: 0 });
  }

  /** The segment being made becomes a segment (its parts concatenated). `publish`: publish the playlist now. */
  async #closeSegment(publish: boolean): Promise<void> {
    const p = this.#partial;
    if (!p || p.parts.length === 0) return;
    this.#partial = null;
    const uri = segmentUri(p.msn);
    await atomicWrite(path.join(this.#o.dir, uri), Buffer.concat(p.parts.map((x) => x.bytes)));
    const seg = { msn: p.msn, uri, duration: p.duration, programDateTime: p.programDateTime, discontinuity: p.discontinuity, map: p.map, parts: p.parts.map(({ uri: u, duration }) => ({ uri: u, duration })), startMs: p.startMs };
    this.#segments.push(seg);
    const gone: LiveSegment[] = [];
    while (this.#segments.length > this.#o.listSize) {
      const old = this.#segments.shift()!;
      if (old.discontinuity) this.#discontinuitySequence++;
      gone.push(old);
    }
    this.#pendingListings.push({ seg, run: p.run, arrivedAtMs: p.arrivedAtMs });
    // Parts of segments that left the window are no longer listed anywhere: their files go (the segments stay).
    for (const old of gone) for (const part of old.parts) void fsp.rm(path.join(this.#o.dir, part.uri), { force: true });
    if (publish) await this.#publish(null);
  }

  readonly #pendingListings: { seg: LiveSegment & { startMs: number }; run: number; arrivedAtMs: number }[] = [];

  /** Renders and writes the playlist, then tells the onlookers what it newly lists. */
  async #publish(part: PublishedPart | null): Promise<void> {
    if (this.#position === null && this.#segments.length === 0) return;
    const windowStart = this.#segments[0]?.startMs ?? this.#partial?.startMs ?? null;
    const preload = this.#ended ? null : this.#partial ? partUri(this.#partial.msn, this.#partial.parts.length) : partUri(this.#nextMsn, 0);
    const text = renderLivePlaylist(
      {
        segments: this.#segments,
        partial: this.#partial,
        preloadHint: preload,
        discontinuitySequence: this.#discontinuitySequence,
        dateRanges: this.#dateRangeTags(windowStart),
        ended: this.#ended,
      },
      this.#playlistOptions,
    );
    await atomicWrite(this.playlistPath, text);
    this.#text = text;
    const now = Date.now();
    for (const { seg, run, arrivedAtMs } of this.#pendingListings.splice(0)) {
      const endMs = seg.startMs + seg.duration * 1000;
      this.#newestSegmentEndMs = endMs;
      this.observer.emit('segmentListed', { uri: seg.uri, sequence: seg.msn, duration: seg.duration, programDateTime: seg.programDateTime, discontinuity: seg.discontinuity, map: seg.map, run, endMs, arrivedAtMs, listedAtMs: now });
    }
    if (part) this.observer.emit('partPublished', { ...part, publishedAtMs: now });
  }

  /**
   * Ends the playlist: what was made of the last segment becomes one, and ENDLIST is published. Waits for what is
   * being written. Idempotent.
   */
  async end(): Promise<void> {
    let endedNow = false;
    this.#enqueue(async () => {
      if (this.#ended) return;
      await this.#closeSegment(false);
      this.#ended = true;
      await this.#publish(null);
      endedNow = true;
    });
    await this.#chain;
    if (endedNow) this.observer.emit('ended');
    this.observer.removeAllListeners();
  }
}

async function atomicWrite(file: string, data: Buffer | string): Promise<void> {
  const tmp = `${file}.tmp`;
  await fsp.writeFile(tmp, data);
  await fsp.rename(tmp, file);
}
