// The origin's memory of the live folder. A thousand listeners of one stage fetch the same playlist and the same
// segment within a second; reading each from disk per request (open, fstat, read, close, and send's own stat) made the
// file system, and libuv's four-thread pool behind it (shared with the archive's fsyncs), the origin's bottleneck.
// A segment never changes once FFmpeg has renamed it into place: a cached one is served without touching the disk. A
// playlist is checked with one stat, shared by every request that arrives while it runs and reused for CHECK_MS; a
// file whose inode, size and mtime are unchanged is served from memory. Reads of a changed file are shared too.
// Live HLS is fragmented MP4: the init sections (init_<run>.mp4), the segments (seg_<msn>.m4s) and the LL-HLS parts
// (part_<msn>_<i>.m4s) are each written once under a name never reused, so all of them are immutable here.
import crypto from 'node:crypto';
import fs from 'node:fs/promises';

export interface CachedFile {
  body: Buffer;
  /** Strong validator from the content. */
  etag: string;
  mtime: Date;
}

interface Entry extends CachedFile {
  ino: number;
  size: number;
  mtimeMs: number;
}

export type CacheResult = CachedFile | 'missing' | 'large';

/** A playlist's stat is reused this long: far below a segment's duration, and one stat per stage per tick at most. */
const CHECK_MS = 50;

type Stat = { ino: number; size: number; mtimeMs: number; isFile: boolean } | null;
/** A shared lstat: `value` once it has answered; `recheck` if it was made because the file was said to be written. */
type StatEntry = { at: number; stat: Promise<Stat>; value?: Stat; recheck: boolean };

export class LiveFileCache {
  readonly #maxBytes: number;
  readonly #maxFileBytes: number;
  /** Insertion order is recency: a hit moves the entry to the end; eviction takes from the front. */
  readonly #entries = new Map<string, Entry>();
  readonly #reading = new Map<string, Promise<CacheResult>>();
  readonly #stats = new Map<string, StatEntry>();
  #bytes = 0;
  hits = 0;
  misses = 0;

  constructor(opts: { maxBytes?: number; maxFileBytes?: number } = {}) {
    this.#maxBytes = opts.maxBytes ?? 64 * 2 ** 20;
    this.#maxFileBytes = opts.maxFileBytes ?? 2 ** 20;
  }

  get bytes(): number {
    return this.#bytes;
  }

  /**
   * The file's current content (never a mix of two versions), or 'missing' (absent, not a regular file, a symlink).
   * `immutable`: the file never changes once it exists (a segment, a part), so a cached copy needs no check.
   * `written`: the caller knows the file has been written (the writer said so): a shared stat that found it missing
   * is out of date and is made again, once for every caller that knows.
   */
  async get(file: string, immutable = false, written = false): Promise<CacheResult> {
    const cached = this.#entries.get(file);
    if (immutable && cached) return this.#hit(file, cached);
    const st = await this.#stat(file, written);
    if (!st || !st.isFile) {
      this.#drop(file);
      return 'missing';
    }
    if (st.size > this.#maxFileBytes) return 'large';
    const hit = this.#entries.get(file);
    if (hit && hit.ino === st.ino && hit.size === st.size && hit.mtimeMs === st.mtimeMs) return this.#hit(file, hit);
    let reading = this.#reading.get(file);
    if (!reading) {
      this.misses++;
      reading = this.#read(file).finally(() => this.#reading.delete(file));
      this.#reading.set(file, reading);
    }
    return reading;
  }

  /**
   * What get() would answer, when that is known without waiting: a cached segment, or a cached playlist whose shared
   * stat (at most CHECK_MS old) has come back unchanged. Null when get() has to look.
   */
  peek(file: string, immutable = false): CachedFile | null {
    const cached = this.#entries.get(file);
    if (!cached) return null;
    if (immutable) return this.#hit(file, cached);
    const prev = this.#stats.get(file);
    const st = prev && performance.now() - prev.at < CHECK_MS ? prev.value : undefined;
    if (!st || !st.isFile || st.ino !== cached.ino || st.size !== cached.size || st.mtimeMs !== cached.mtimeMs) return null;
    return this.#hit(file, cached);
  }

  #hit(file: string, e: Entry): Entry {
    this.#entries.delete(file);
    this.#entries.set(file, e);
    this.hits++;
    return e;
  }

  /**
   * One lstat per file at a time, and its answer reused for CHECK_MS. `written`: an answer that the file is missing
   * does not count unless it was itself made after a caller said so (files are written once: that is after the write).
   * So callers who know cost one more lstat per file, shared, however many they are.
   */
  #stat(file: string, written = false): Promise<Stat> {
    const now = performance.now();
    const prev = this.#stats.get(file);
    if (prev && now - prev.at < CHECK_MS) {
      if (!written || prev.value || prev.recheck) return prev.stat;
      // Still running: wait for it, and look again only if it says missing.
      if (prev.value === undefined) return prev.stat.then((v) => v ?? this.#stat(file, true));
    }
    const stat = fs.lstat(file).then(
      (s): Stat => ({ ino: s.ino, size: s.size, mtimeMs: s.mtimeMs, isFile: s.isFile() }),
      (): Stat => null,
    );
    const entry: StatEntry = { at: now, stat, recheck: written };
    this.#stats.set(file, entry);
    void stat.then((v) => {
      // Known from now on (peek), and forgotten once stale, so the map holds only files asked for lately.
      entry.value = v;
      setTimeout(() => {
        if (this.#stats.get(file) === entry) this.#stats.delete(file);
      }, CHECK_MS).unref();
    });
    return stat;
  }

  /**
   * Reads through one open handle, so the bytes and the fstat describe one version of a file that is replaced by
   * rename (a playlist); O_NOFOLLOW refuses a symlink planted in the folder.
   */
  async #read(file: string): Promise<CacheResult> {
    let fh: fs.FileHandle | undefined;
    try {
      fh = await fs.open(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
      const st = await fh.stat();
      if (!st.isFile()) return 'missing';
      if (st.size > this.#maxFileBytes) return 'large';
      const body = await fh.readFile();
      const entry: Entry = {
        body,
        etag: `"${crypto.createHash('sha1').update(body).digest('base64url')}"`,
        mtime: st.mtime,
        ino: st.ino,
        size: body.length,
        mtimeMs: st.mtimeMs,
      };
      this.#drop(file);
      this.#entries.set(file, entry);
      this.#bytes += body.length;
      while (this.#bytes > this.#maxBytes) {
        const oldest = this.#entries.keys().next().value;
        if (oldest === undefined) break;
        this.#drop(oldest);
      }
      return entry;
    } catch {
      this.#drop(file);
      return 'missing';
    } finally {
      await fh?.close().catch(() => undefined);
    }
  }

  #drop(file: string): void {
    const e = this.#entries.get(file);
    if (!e) return;
    this.#entries.delete(file);
    this.#bytes -= e.body.length;
  }

  clear(): void {
    this.#entries.clear();
    this.#stats.clear();
    this.#bytes = 0;
  }
}
