// Embedded PostgreSQL (PGlite, WASM, in-process). One connection: transactions are serialized by an async
// mutex, and a query issued outside an open transaction waits for it to finish.
//
// Convention shared with postgres.ts: a query with no parameters (params undefined or empty) goes through the
// simple query protocol, so it may hold several statements; the result of the last statement is returned.
import { AsyncLocalStorage } from 'node:async_hooks';
import fs from 'node:fs/promises';
import path from 'node:path';
import { PGlite, type Results } from '@electric-sql/pglite';
import type { Db, QueryResult } from './db.ts';

/** Minimal FIFO async mutex. */
export class Mutex {
  #tail: Promise<void> = Promise.resolve();

  async run<T>(fn: () => Promise<T>): Promise<T> {
    let release!: () => void;
    const next = new Promise<void>((resolve) => (release = resolve));
    const prev = this.#tail;
    this.#tail = prev.then(() => next);
    await prev;
    try {
      return await fn();
    } finally {
      release();
    }
  }
}

interface PgliteRunner {
  query<T>(query: string, params?: unknown[]): Promise<Results<T>>;
  exec(query: string): Promise<Results[]>;
}

function toResult<R extends object>(r: Results<R> | undefined): QueryResult<R> {
  if (!r) return { rows: [], rowCount: 0 };
  return { rows: r.rows, rowCount: r.rowCount ?? r.affectedRows ?? r.rows.length };
}

async function run<R extends object>(
  conn: PgliteRunner,
  text: string,
  params: readonly unknown[] | undefined,
): Promise<QueryResult<R>> {
  if (params === undefined || params.length === 0) {
    const all = await conn.exec(text);
    return toResult(all[all.length - 1] as Results<R> | undefined);
  }
  return toResult(await conn.query<R>(text, [...params]));
}

/** Opens PGlite on dataDir (a directory, created with its parents if missing) or in memory when dataDir is null. */
export async function openPglite(dataDir: string | null): Promise<Db> {
  if (dataDir !== null) await fs.mkdir(path.dirname(path.resolve(dataDir)), { recursive: true });
  const pg = dataDir === null ? await PGlite.create() : await PGlite.create(dataDir);
  const mutex = new Mutex();
  // Marks the async context of a running transaction callback, so that a db.query() made from inside it
  // (which would wait for the transaction forever) fails loudly instead of deadlocking.
  const inTx = new AsyncLocalStorage<{ open: boolean }>();
  let closing: Promise<void> | null = null;

  const checkOpen = (): void => {
    if (closing) throw new Error('database is closed');
  };
  const checkNotInTx = (): void => {
    if (inTx.getStore()?.open) {
      throw new Error('db.query()/db.transaction() called inside transaction(): use the tx object (PGlite has one connection)');
    }
  };

  return {
    kind: 'pglite',

    async query<R extends object = Record<string, unknown>>(text: string, params?: readonly unknown[]) {
      checkOpen();
      checkNotInTx();
      return mutex.run(() => run<R>(pg, text, params));
    },

    async transaction<T>(fn: (tx: Pick<Db, 'query'>) => Promise<T>): Promise<T> {
      checkOpen();
      checkNotInTx();
      return mutex.run(() =>
        pg.transaction(async (ptx) => {
          const marker = { open: true };
          const tx: Pick<Db, 'query'> = {
            query: <R extends object = Record<string, unknown>>(text: string, params?: readonly unknown[]) => {
              if (!marker.open) return Promise.reject(new Error('transaction is already finished'));
              return run<R>(ptx, text, params);
            },
          };
          try {
            return await inTx.run(marker, () => fn(tx));
          } finally {
            marker.open = false;
          }
        }),
      );
    },

    close(): Promise<void> {
      // Wait for whatever holds the mutex (a running transaction) before closing.
      closing ??= mutex.run(async () => {
        if (!pg.closed) await pg.close();
      });
      return closing;
    },
  };
}
