// The origin's memory of the live folder. A thousand listeners of one stage fetch the same playlist and the same
// segment within a second; reading each from disk per request (open, fstat, read, close, and send's own stat) made the
// file system the origin's bottleneck. Each request now costs one stat: a file whose inode, size and mtime are unchanged
// is served from memory. Reads of one changed file are shared by the requests that arrive meanwhile.
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

export class LiveFileCache {
  readonly #maxBytes: number;
  readonly #maxFileBytes: number;
  /** Insertion order is recency: a hit moves the entry to the end; eviction takes from the front. */
  readonly #entries = new Map<string, Entry>();
  readonly #reading = new Map<string, Promise<CacheResult>>();
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

  /** The file's current content (never a mix of two versions), or 'missing' (absent, not a regular file, a symlink). */
  async get(file: string): Promise<CacheResult> {
    let st;
    try {
      st = await fs.lstat(file, { bigint: false });
    } catch {
      this.#drop(file);
      return 'missing';
    }
    if (!st.isFile()) {
      this.#drop(file);
      return 'missing';
    }
    if (st.size > this.#maxFileBytes) return 'large';
    const hit = this.#entries.get(file);
    if (hit && hit.ino === st.ino && hit.size === st.size && hit.mtimeMs === st.mtimeMs) {
      this.#entries.delete(file);
      this.#entries.set(file, hit);
      this.hits++;
      return hit;
    }
    let reading = this.#reading.get(file);
    if (!reading) {
      this.misses++;
      reading = this.#read(file).finally(() => this.#reading.delete(file));
      this.#reading.set(file, reading);
    }
    return reading;
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
    this.#bytes = 0;
  }
}
