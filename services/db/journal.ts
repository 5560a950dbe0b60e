// An append-only journal of pending operations on local disk, so that writes held through a database outage
// survive a crash of the process (see writeBehind.ts). One JSON object per line:
//
//   {"seq":12,"kind":"timeline event","data":{...},"at":"2025-01-01T00:00:00.000Z"}   an operation, appended when queued
//   {"done":12}                                                                         operation 12 is finished
//
// "Finished" means written, refused by the database for its content, or dropped: none of them is to be replayed.
// When nothing is pending any more the file is truncated to zero bytes instead of recording a "done" line, so a
// healthy run keeps it empty. seq only grows within a file (it goes on from the highest one read at open).
//
// Durability: each line is written with one write(2) on a descriptor kept open (O_APPEND), before the caller's
// write() returns. The page cache survives the death of the process (SIGKILL, OOM kill, a crash), so nothing
// acknowledged as queued is lost then. There is no fsync per line: a power loss or kernel crash can lose the last
// lines (seconds' worth) or leave the last one cut; the reader ignores a cut last line.
//
// Growth: the file holds the pending operations plus the lines of finished ones. When it is over compactMinBytes
// and more than twice what is still pending, it is rewritten with only the pending lines (written to a temporary
// file, synced and renamed over the journal, so a crash during it leaves the old or the new file, both valid).
// The pending operations are bounded by the caller (WriteBehind's maxBuffered), so the file is too.
//
// Only one process may use a journal at a time (not enforced).
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from '../logger.ts';

export interface JournalEntry {
  seq: number;
  kind: string;
  /** As read back by JSON.parse: what was given to append(), serialized. */
  data: unknown;
  /** ISO time the operation was first queued. */
  at: string;
}

export interface JournalOptions {
  log: Logger;
  /** No compaction below this size (bytes). */
  compactMinBytes?: number;
}

interface Parsed {
  entries: JournalEntry[];
  maxSeq: number;
}

const DEFAULT_COMPACT_MIN_BYTES = 1 << 20;

/** Reads a journal's text: the operations not marked done, in order. Never throws on bad content. */
export function parseJournal(text: string, log: Logger, file: string): Parsed {
  const lines = text.split('\n');
  // The text after the last newline is a line cut by a crash (or a power loss) while it was being written,
  // unless it happens to be complete.
  const tail = lines.pop() ?? '';
  const entries = new Map<number, JournalEntry>();
  const done = new Set<number>();
  let maxSeq = 0;
  const readLine = (line: string, lineNo: number, isTail: boolean): void => {
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch {
      v = undefined;
    }
    const o = v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
    if (o && typeof o.done === 'number' && Number.isSafeInteger(o.done)) {
      done.add(o.done);
      maxSeq = Math.max(maxSeq, o.done);
      return;
    }
    if (o && typeof o.seq === 'number' && Number.isSafeInteger(o.seq) && o.seq > 0 && typeof o.kind === 'string' && typeof o.at === 'string') {
      if (entries.has(o.seq)) {
        log.error('write journal: a duplicate operation number; the later line is skipped', { file, line: lineNo, seq: o.seq });
        return;
      }
      entries.set(o.seq, { seq: o.seq, kind: o.kind, data: o.data, at: o.at });
      maxSeq = Math.max(maxSeq, o.seq);
      return;
    }
    if (isTail) log.warn('write journal: the last line is incomplete (the process stopped while writing it); it is ignored', { file, line: lineNo });
    else log.error('write journal: a corrupt line is skipped', { file, line: lineNo, text: line.slice(0, 200) });
  };
  lines.forEach((line, i) => {
    if (line.trim() !== '') readLine(line, i + 1, false);
  });
  if (tail.trim() !== '') readLine(tail, lines.length + 1, true);
  return { entries: [...entries.values()].filter((e) => !done.has(e.seq)).sort((a, b) => a.seq - b.seq), maxSeq };
}

export class Journal {
  readonly file: string;
  readonly #log: Logger;
  readonly #compactMinBytes: number;
  #fd: number | null;
  #nextSeq: number;
  /** Lines of the operations not finished yet, by seq (in seq order: Map keeps insertion order). */
  readonly #live = new Map<number, string>();
  // Sizes in UTF-16 code units (string lengths), not bytes: they only drive compaction.
  #liveBytes = 0;
  #fileBytes = 0;
  /** An append failed: the file may miss lines or end with a cut one, until a rewrite (#compact) repairs it. */
  #broken = false;
  #brokenAt = 0;
  /** Failed appends, truncations, compactions (disk full, I/O errors). The operations stay in memory. */
  errors = 0;

  private constructor(file: string, fd: number, opts: JournalOptions, parsed: Parsed, lines: string[]) {
    this.file = file;
    this.#fd = fd;
    this.#log = opts.log;
    this.#compactMinBytes = opts.compactMinBytes ?? DEFAULT_COMPACT_MIN_BYTES;
    this.#nextSeq = parsed.maxSeq + 1;
    parsed.entries.forEach((e, i) => {
      this.#live.set(e.seq, lines[i]!);
      this.#liveBytes += lines[i]!.length;
    });
    this.#fileBytes = this.#liveBytes;
  }

  /**
   * Opens (or creates, with its directory) the journal at `file`, and returns the operations an earlier run left
   * unfinished, in their original order. The file is rewritten with only those, so it does not grow across runs.
   */
  static async open(file: string, opts: JournalOptions): Promise<{ journal: Journal; entries: JournalEntry[] }> {
    await fs.promises.mkdir(path.dirname(path.resolve(file)), { recursive: true });
    let text = '';
    try {
      text = await fs.promises.readFile(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    const parsed = parseJournal(text, opts.log, file);
    const lines = parsed.entries.map((e) => JSON.stringify(e) + '\n');
    const fd = text.length > 0 ? replaceFile(file, lines.join('')) : fs.openSync(file, 'a', 0o600);
    return { journal: new Journal(file, fd, opts, parsed, lines), entries: parsed.entries };
  }

  /** Operations appended and not finished yet. */
  get pending(): number {
    return this.#live.size;
  }

  /** Current size of the file as written by this process, in UTF-16 code units (bytes for ASCII). */
  get size(): number {
    return this.#fileBytes;
  }

  /**
   * Records an operation; returns its seq. Synchronous: the line is in the kernel when this returns.
   * Throws only when data cannot be serialized (a cycle, a BigInt); an I/O error is logged and counted, and the
   * operation is then held in memory only.
   */
  append(kind: string, data: unknown): number {
    const seq = this.#nextSeq;
    const line = JSON.stringify({ seq, kind, data, at: new Date().toISOString() }) + '\n';
    this.#nextSeq++;
    this.#live.set(seq, line);
    this.#liveBytes += line.length;
    this.#write(line);
    return seq;
  }

  /** Marks an operation finished (written, refused or dropped): it will not be replayed. Unknown seqs are ignored. */
  done(seq: number): void {
    const line = this.#live.get(seq);
    if (line === undefined) return;
    this.#live.delete(seq);
    this.#liveBytes -= line.length;
    if (this.#fd === null) return;
    if (this.#live.size === 0 && this.#truncate()) return;
    this.#write(`{"done":${seq}}\n`);
    if (this.#fileBytes > this.#compactMinBytes && this.#fileBytes > 2 * this.#liveBytes) this.#compact();
  }

  /** Closes the file; what is pending stays in it for the next open. Idempotent. */
  close(): void {
    if (this.#fd === null) return;
    const fd = this.#fd;
    this.#fd = null;
    try {
      fs.closeSync(fd);
    } catch (err) {
      this.#log.error('write journal: close failed', { file: this.file, error: String(err) });
    }
  }

  #write(line: string): void {
    if (this.#fd === null) return;
    if (this.#broken) {
      // An append failed (disk full, I/O error): some lines may be missing or cut. Rewriting the file from what is
      // pending (this line's effect included) repairs it; tried at most once a second while it keeps failing.
      if (Date.now() - this.#brokenAt >= 1000) {
        this.#brokenAt = Date.now();
        if (this.#compact()) {
          this.#broken = false;
          this.#log.info('write journal: appending again', { file: this.file, pending: this.#live.size });
        }
      }
      return;
    }
    try {
      const n = fs.writeSync(this.#fd, line);
      // A regular file takes the whole line unless the disk is full; write what is left then.
      if (n < line.length || n < Buffer.byteLength(line)) writeAll(this.#fd, Buffer.from(line).subarray(n));
      this.#fileBytes += line.length;
    } catch (err) {
      this.errors++;
      this.#broken = true;
      this.#brokenAt = Date.now();
      this.#log.error('write journal: append failed; held writes are in memory only until it works again', { file: this.file, error: String(err) });
    }
  }

  /** Empties the file (nothing is pending). False if that failed: the caller records a "done" line instead. */
  #truncate(): boolean {
    try {
      fs.ftruncateSync(this.#fd!, 0);
      this.#fileBytes = 0;
      // An empty file is the whole truth now, whatever failed before.
      this.#broken = false;
      return true;
    } catch (err) {
      this.errors++;
      this.#log.error('write journal: truncate failed', { file: this.file, error: String(err) });
      return false;
    }
  }

  /** Rewrites the file with only the pending lines. False if that failed (the old file is then left as it was). */
  #compact(): boolean {
    const started = Date.now();
    const before = this.#fileBytes;
    try {
      const text = [...this.#live.values()].join('');
      const fd = replaceFile(this.file, text);
      fs.closeSync(this.#fd!);
      this.#fd = fd;
      this.#fileBytes = text.length;
      this.#log.info('write journal: compacted', { file: this.file, pending: this.#live.size, sizeBefore: before, size: this.#fileBytes, ms: Date.now() - started });
      return true;
    } catch (err) {
      this.errors++;
      this.#log.error('write journal: compaction failed', { file: this.file, error: String(err) });
      return false;
    }
  }
}

function writeAll(fd: number, buf: Buffer): void {
  let off = 0;
  while (off < buf.length) off += fs.writeSync(fd, buf, off);
}

/**
 * Replaces file's content atomically (a crash leaves the old content or the new one, never a mix) and returns a
 * descriptor open for appending to the new file.
 */
function replaceFile(file: string, text: string): number {
  const tmp = `${file}.tmp`;
  // Opened for appending before the rename, so the descriptor follows the new file with no window.
  const { O_WRONLY, O_CREAT, O_TRUNC, O_APPEND } = fs.constants;
  const fd = fs.openSync(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0o600);
  try {
    writeAll(fd, Buffer.from(text));
    fs.fsyncSync(fd);
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw err;
  }
  return fd;
}
