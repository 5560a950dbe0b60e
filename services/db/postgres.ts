// PostgreSQL through a pg Pool (DATABASE_URL).
//
// Convention shared with pglite.ts: a query with no parameters (params undefined or empty) goes through the
// simple query protocol, so it may hold several statements; the result of the last statement is returned.
import pg from 'pg';
import type { Db, QueryResult } from './db.ts';

type PgResult = pg.QueryResult<Record<string, unknown>>;

function toResult<R extends object>(res: PgResult | PgResult[] | undefined): QueryResult<R> {
  // A multi-statement simple query resolves to one result per statement.
  const last = Array.isArray(res) ? res[res.length - 1] : res;
  if (!last) return { rows: [], rowCount: 0 };
  const rows = (last.rows ?? []) as R[];
  return { rows, rowCount: last.rowCount ?? rows.length };
}

async function run<R extends object>(
  conn: pg.Pool | pg.PoolClient,
  text: string,
  params: readonly unknown[] | undefined,
): Promise<QueryResult<R>> {
  const res = params === undefined || params.length === 0 ? await conn.query(text) : await conn.query(text, [...params]);
  return toResult<R>(res as PgResult | PgResult[]);
}

export interface PostgresOptions {
  /** Called for errors on idle pooled clients (e.g. the server went away). Default: ignored. */
  onPoolError?: (err: Error) => void;
}

/** Opens a pool on url and checks that the server answers. */
export async function openPostgres(url: string, opts: PostgresOptions = {}): Promise<Db> {
  const pool = new pg.Pool({ connectionString: url, max: 10, connectionTimeoutMillis: 5000 });
  // An idle client whose connection drops emits 'error' on the pool; without a listener that crashes the process.
  pool.on('error', (err) => opts.onPoolError?.(err));
  let closing: Promise<void> | null = null;

  const checkOpen = (): void => {
    if (closing) throw new Error('database is closed');
  };

  const db: Db = {
    kind: 'postgres',

    async query<R extends object = Record<string, unknown>>(text: string, params?: readonly unknown[]) {
      checkOpen();
      return run<R>(pool, text, params);
    },

    async transaction<T>(fn: (tx: Pick<Db, 'query'>) => Promise<T>): Promise<T> {
      checkOpen();
      const client = await pool.connect();
      let finished = false;
      const tx: Pick<Db, 'query'> = {
        query: <R extends object = Record<string, unknown>>(text: string, params?: readonly unknown[]) => {
          if (finished) return Promise.reject(new Error('transaction is already finished'));
          return run<R>(client, text, params);
        },
      };
      try {
        await client.query('BEGIN');
      } catch (err) {
        client.release(err as Error);
        throw err;
      }
      try {
        const out = await fn(tx);
        finished = true;
        await client.query('COMMIT');
        client.release();
        return out;
      } catch (err) {
        finished = true;
        try {
          await client.query('ROLLBACK');
          client.release();
        } catch (rollbackErr) {
          // The connection is in an unknown state: destroy it rather than return it to the pool.
          client.release(rollbackErr as Error);
        }
        throw err;
      }
    },

    close(): Promise<void> {
      closing ??= pool.end();
      return closing;
    },
  };

  try {
    await db.query('select 1');
  } catch (err) {
    await db.close().catch(() => {});
    throw err;
  }
  return db;
}
