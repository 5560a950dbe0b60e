// Writes that must survive a database outage: timeline events, performers on and off air, performer sessions.
// A write is tried at once; if the database cannot be reached it waits in an in-memory FIFO and is retried, in
// order, with exponential backoff and jitter until the database answers again. Live media never waits on it.
// A write the database refuses for its content (a constraint, bad data) is logged and dropped: retrying cannot help.
import type { Db } from './db.ts';
import type { Logger } from '../logger.ts';

export interface WriteBehindOptions {
  db: Pick<Db, 'query'>;
  log: Logger;
  /** First retry delay; doubles up to retryMaxMs, with jitter. */
  retryBaseMs?: number;
  retryMaxMs?: number;
  /** Writes held beyond this are dropped, oldest first (and counted): memory must stay bounded in a long outage. */
  maxBuffered?: number;
}

interface Pending {
  label: string;
  fn: (db: Pick<Db, 'query'>) => Promise<unknown>;
  resolve: (written: boolean) => void;
  since: number;
}

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

export class WriteBehind {
  readonly #db: Pick<Db, 'query'>;
  readonly #log: Logger;
  readonly #retryBaseMs: number;
  readonly #retryMaxMs: number;
  readonly #maxBuffered: number;
  readonly #queue: Pending[] = [];
  #running = false;
  #attempt = 0;
  #timer: NodeJS.Timeout | null = null;
  #wake: (() => void) | null = null;
  #closed = false;
  #outageSince: number | null = null;
  /** Totals since start, for metrics and health. */
  readonly counters = { written: 0, deferred: 0, dropped: 0, failed: 0 };

  constructor(opts: WriteBehindOptions) {
    this.#db = opts.db;
    this.#log = opts.log.child({ component: 'write-behind' });
    this.#retryBaseMs = opts.retryBaseMs ?? 250;
    this.#retryMaxMs = opts.retryMaxMs ?? 5000;
    this.#maxBuffered = opts.maxBuffered ?? 100_000;
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
   * Queues a write. Resolves true once it is in the database, false if it was refused for its content or dropped.
   * Never rejects. Writes run one at a time, in the order they were queued.
   */
  write(label: string, fn: (db: Pick<Db, 'query'>) => Promise<unknown>): Promise<boolean> {
    if (this.#closed) return Promise.resolve(false);
    return new Promise<boolean>((resolve) => {
      this.#queue.push({ label, fn, resolve, since: Date.now() });
      if (this.#queue.length > this.#maxBuffered) {
        const dropped = this.#queue.shift()!;
        this.counters.dropped++;
        this.#log.error('database write buffer is full; dropping the oldest write', { label: dropped.label, buffered: this.#queue.length });
        dropped.resolve(false);
      }
      void this.#run();
    });
  }

  async #run(): Promise<void> {
    if (this.#running) return;
    this.#running = true;
    try {
      while (this.#queue.length > 0 && !this.#closed) {
        const head = this.#queue[0]!;
        try {
          await head.fn(this.#db);
          this.#remove(head);
          this.counters.written++;
          head.resolve(true);
          if (this.#outageSince !== null) {
            this.#log.info('database is back; buffered writes are being written', {
              outageMs: Date.now() - this.#outageSince,
              buffered: this.#queue.length,
            });
            this.#outageSince = null;
          }
          this.#attempt = 0;
        } catch (err) {
          if (!isTransientDbError(err)) {
            this.#remove(head);
            this.counters.failed++;
            this.#log.error('database refused a write; it is dropped', { label: head.label, error: String(err) });
            head.resolve(false);
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

  /** Stops retrying. Writes still buffered are reported and resolved false. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.retryNow();
    if (this.#queue.length > 0) {
      this.#log.error('closing with database writes that could not be written', {
        count: this.#queue.length,
        labels: [...new Set(this.#queue.map((p) => p.label))],
      });
    }
    for (const p of this.#queue.splice(0)) p.resolve(false);
  }
}
