// Writes that must survive a database outage: timeline events, performers on and off air, performer sessions.
// A write is tried at once; if the database cannot be reached it waits in a FIFO and is retried, in order, with
// exponential backoff and jitter until the database answers again. Live media never waits on it.
// A write the database refuses for its content (a constraint, bad data) is logged and dropped: retrying cannot help.
//
// A write is an operation: a kind and JSON data, run by the executor registered for that kind. With a journal
// (WriteBehind.open({ journalPath })) every operation is appended to a file on local disk before write() returns,
// and the operations a run left unfinished (it crashed, or closed during an outage) are replayed, first and in
// their original order, by the next run. See journal.ts for the format and what survives what.
//
// Exactly once, as far as the database is concerned, needs the executors' help: an operation that committed just
// before the process died, before its completion reached the journal, is run again at the next start. Every
// executor must therefore be idempotent (INSERT ... ON CONFLICT DO NOTHING, upserts, updates to absolute values).
import type { Db } from './db.ts';
import type { Logger } from '../logger.ts';
import { Journal, type JournalEntry } from './journal.ts';

type Queryable = Pick<Db, 'query'>;

/**
 * Runs one kind of operation. `data` is what was given to write() in this run, or its JSON round trip when the
 * operation is replayed from the journal: use JSON types only (ISO strings, not Dates; no undefined that matters).
 * Must be idempotent (see above). A rejection with an SQLSTATE of a statement error (constraint, syntax, ...) or a
 * JavaScript TypeError/RangeError/ReferenceError/SyntaxError drops the operation; any other rejection (connection
 * errors, errors without an SQLSTATE) holds it for a retry.
 */
export type Executor<D = any> = (db: Queryable, data: D) => Promise<unknown>;
/** The executors of a WriteBehind, by kind. */
export type Executors = Record<string, Executor>;
/** The data type an executor takes. */
export type ExecutorData<X> = X extends (db: Queryable, data: infer D) => unknown ? D : never;
/** Anything but a function: what write(kind, data) takes when executors are untyped (keeps the closure overload apart). */
type NotFunction = string | number | boolean | null | undefined | readonly unknown[] | { [k: string]: any; call?: never; apply?: never; bind?: never };
type WriteData<D> = 0 extends 1 & D ? NotFunction : D;

export interface WriteBehindOptions<E extends Executors = Executors> {
  db: Queryable;
  log: Logger;
  /** How to run each kind of operation. */
  executors?: E;
  /** First retry delay; doubles up to retryMaxMs, with jitter. */
  retryBaseMs?: number;
  retryMaxMs?: number;
  /** Writes held beyond this are dropped, oldest first (and counted): memory must stay bounded in a long outage. */
  maxBuffered?: number;
}

export interface WriteBehindOpenOptions<E extends Executors> extends WriteBehindOptions<E> {
  executors: E;
  /** The journal file (its directory is created if missing); null keeps held writes in memory only. */
  journalPath: string | null;
  /** The journal is compacted only beyond this size (default 1 MiB). */
  journalCompactMinBytes?: number;
}

interface Pending {
  /** The kind, or the label of an unjournaled write. */
  label: string;
  exec: Executor;
  data: unknown;
  /** Its number in the journal; null when not journaled. */
  seq: number | null;
  resolve: (written: boolean) => void;
  since: number;
}

const noop = (): void => {};

/**
 * SQLSTATE classes that mean "the database is not reachable right now", not "this statement is wrong":
 * 08 connection exception, 53 insufficient resources, 57P admin shutdown / cannot connect now, 40001/40P01 retryable.
 * Errors without an SQLSTATE (ECONNREFUSED, "Connection terminated", a connect timeout) are transient too.
 */
export function isTransientDbError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== 'string' || !/^[0-9A-Z]{5}$/.test(code)) return true;
  return code.startsWith('08') || code.startsWith('53') || code.startsWith('57P') || code === '40001' || code === '40P01';
}

/** A database connection failure (not a failing statement): the server is down, unreachable, or restarting. */
export function isDbUnavailable(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown } | null;
  const code = typeof e?.code === 'string' ? e.code : '';
  if (['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH'].includes(code)) return true;
  if (/^(08|57P)/.test(code)) return true;
  const message = typeof e?.message === 'string' ? e.message : '';
  return /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error/.test(message);
}

/**
 * Worth retrying. A JavaScript error raised by the executor itself (a TypeError on data of an unexpected shape,
 * e.g. replayed from an older version's journal) is not: retrying it would hold every later write forever.
 */
function isRetryable(err: unknown): boolean {
  if (err instanceof TypeError || err instanceof RangeError || err instanceof ReferenceError || err instanceof SyntaxError) return false;
  return isTransientDbError(err);
}

export class WriteBehind<E extends Executors = Executors> {
  readonly #db: Queryable;
  readonly #log: Logger;
  readonly #executors: E;
  readonly #retryBaseMs: number;
  readonly #retryMaxMs: number;
  readonly #maxBuffered: number;
  readonly #queue: Pending[] = [];
  #journal: Journal | null = null;
  #running = false;
  #attempt = 0;
  #timer: NodeJS.Timeout | null = null;
  #wake: (() => void) | null = null;
  #closed = false;
  #outageSince: number | null = null;
  /** Totals since start, for metrics and health. replayed: operations taken over from an earlier run's journal. */
  readonly counters = { written: 0, deferred: 0, dropped: 0, failed: 0, replayed: 0 };

  /** Memory only: held writes are lost with the process. Use WriteBehind.open() for a journal. */
  constructor(opts: WriteBehindOptions<E>) {
    this.#db = opts.db;
    this.#log = opts.log.child({ component: 'write-behind' });
    this.#executors = opts.executors ?? ({} as E);
    this.#retryBaseMs = opts.retryBaseMs ?? 250;
    this.#retryMaxMs = opts.retryMaxMs ?? 5000;
    this.#maxBuffered = opts.maxBuffered ?? 100_000;
  }

  /**
   * Creates a WriteBehind. With a journalPath, the operations an earlier run left unfinished there are queued
   * first, in their original order, and written as soon as the database answers; an operation of a kind with no
   * executor is logged and skipped. Rejects only if the journal cannot be read or written (permissions, I/O).
   */
  static async open<E extends Executors>(opts: WriteBehindOpenOptions<E>): Promise<WriteBehind<E>> {
    const w = new WriteBehind<E>(opts);
    if (opts.journalPath !== null) {
      const { journal, entries } = await Journal.open(opts.journalPath, {
        log: w.#log,
        ...(opts.journalCompactMinBytes !== undefined ? { compactMinBytes: opts.journalCompactMinBytes } : {}),
      });
      w.#attach(journal, entries);
    }
    return w;
  }

  #attach(journal: Journal, entries: JournalEntry[]): void {
    this.#journal = journal;
    for (const e of entries) {
      const exec = this.#executor(e.kind);
      if (!exec) {
        this.counters.failed++;
        this.#log.error('a journaled write of an unknown kind is skipped', { seq: e.seq, kind: e.kind, at: e.at, data: JSON.stringify(e.data)?.slice(0, 1000) });
        journal.done(e.seq);
        continue;
      }
      this.counters.replayed++;
      void this.#enqueue({ label: e.kind, exec, data: e.data, seq: e.seq, resolve: noop, since: Date.parse(e.at) || Date.now() });
    }
    if (this.counters.replayed > 0) {
      this.#log.info('replaying writes an earlier run left unfinished', { count: this.counters.replayed, file: journal.file, since: entries[0]?.at });
    }
  }

  /** Writes waiting for the database. */
  get pending(): number {
    return this.#queue.length;
  }

  /** Since when the database has been refusing writes (epoch ms), or null when it answers. */
  get outageSince(): number | null {
    return this.#outageSince;
  }

  /**
   * Queues an operation: executors[kind](db, data). With a journal it is on disk when this returns (before the
   * promise settles). Resolves true once it is in the database, false if it was refused for its content, dropped,
   * or still held at close() (then it stays in the journal for the next start). Never rejects. Operations run one
   * at a time, in the order they were queued. data must be JSON-serializable and not be changed afterwards.
   */
  write<K extends keyof E & string>(kind: K, data: WriteData<ExecutorData<E[K]>>): Promise<boolean> {
    if (this.#closed) return Promise.resolve(false);
    const exec = this.#executor(kind);
    if (!exec) {
      this.counters.failed++;
      this.#log.error('a write of an unknown kind is dropped', { kind });
      return Promise.resolve(false);
    }
    let seq: number | null = null;
    if (this.#journal) {
      try {
        seq = this.#journal.append(kind, data);
      } catch (err) {
        this.counters.failed++;
        this.#log.error('a write whose data cannot be serialized is dropped', { kind, error: String(err) });
        return Promise.resolve(false);
      }
    }
    return this.#enqueue({ label: kind, exec, data, seq, resolve: noop, since: Date.now() });
  }

  #executor(kind: string): Executor | undefined {
    return Object.hasOwn(this.#executors, kind) ? this.#executors[kind] : undefined;
  }

  #enqueue(p: Pending): Promise<boolean> {
    const done = new Promise<boolean>((resolve) => {
      p.resolve = resolve;
    });
    this.#queue.push(p);
    if (this.#queue.length > this.#maxBuffered) {
      const dropped = this.#queue.shift()!;
      this.counters.dropped++;
      this.#log.error('database write buffer is full; dropping the oldest write', { label: dropped.label, buffered: this.#queue.length });
      this.#finish(dropped, false);
    }
    void this.#run();
    return done;
  }

  /** A write is over (written, refused or dropped): it leaves the journal and its caller learns the outcome. */
  #finish(p: Pending, written: boolean): void {
    if (p.seq !== null) this.#journal?.done(p.seq);
    p.resolve(written);
  }

  async #run(): Promise<void> {
    if (this.#running) return;
    this.#running = true;
    try {
      while (this.#queue.length > 0 && !this.#closed) {
        const head = this.#queue[0]!;
        try {
          await head.exec(this.#db, head.data);
          this.#remove(head);
          this.counters.written++;
          this.#finish(head, true);
          if (this.#outageSince !== null) {
            this.#log.info('database is back; buffered writes are being written', {
              outageMs: Date.now() - this.#outageSince,
              buffered: this.#queue.length,
            });
            this.#outageSince = null;
          }
          this.#attempt = 0;
        } catch (err) {
          if (!isRetryable(err)) {
            this.#remove(head);
            this.counters.failed++;
            this.#log.error('database refused a write; it is dropped', { label: head.label, error: String(err) });
            this.#finish(head, false);
            continue;
          }
          if (this.#outageSince === null) {
            this.#outageSince = Date.now();
            this.#log.warn('database unreachable; writes are buffered until it is back', { label: head.label, error: String(err) });
          }
          this.counters.deferred++;
          const delay = Math.min(this.#retryMaxMs, this.#retryBaseMs * 2 ** this.#attempt++) * (0.5 + Math.random() * 0.5);
          await new Promise<void>((resolve) => {
            this.#wake = resolve;
            this.#timer = setTimeout(resolve, delay);
          });
          this.#timer = null;
          this.#wake = null;
        }
      }
    } finally {
      this.#running = false;
    }
  }

  /** Removes a write that ran (it may have been dropped for space meanwhile). */
  #remove(p: Pending): void {
    const i = this.#queue.indexOf(p);
    if (i >= 0) this.#queue.splice(i, 1);
  }

  /** Tries the buffered writes now (e.g. the database was seen to answer again). */
  retryNow(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#wake?.();
  }

  /** Waits until everything queued is written, or until timeoutMs. True when nothing is left. */
  async flush(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (this.#queue.length > 0 && Date.now() < deadline && !this.#closed) {
      this.retryNow();
      await new Promise((r) => setTimeout(r, Math.min(100, Math.max(1, deadline - Date.now()))));
    }
    return this.#queue.length === 0;
  }

  /**
   * Stops retrying. Writes still buffered resolve false; the journaled ones stay in the journal, to be replayed
   * by the next open() on it. Closes the journal. Idempotent.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.retryNow();
    if (this.#queue.length > 0) {
      const journaled = this.#journal ? this.#queue.filter((p) => p.seq !== null).length : 0;
      this.#log.error('closing with database writes that could not be written', {
        count: this.#queue.length,
        keptInJournal: journaled,
        lost: this.#queue.length - journaled,
        labels: [...new Set(this.#queue.map((p) => p.label))],
      });
    }
    for (const p of this.#queue.splice(0)) p.resolve(false);
    this.#journal?.close();
  }
}
