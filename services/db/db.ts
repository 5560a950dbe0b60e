// The thin database interface. Two implementations: PGlite in-process (embedded default) and a pg Pool
// (DATABASE_URL). Repositories take a Db and use only plain parameterized SQL both engines accept.

export interface QueryResult<R> {
  rows: R[];
  rowCount: number;
}

export interface Db {
  readonly kind: 'pglite' | 'postgres';
  query<R extends object = Record<string, unknown>>(text: string, params?: readonly unknown[]): Promise<QueryResult<R>>;
  /** Runs fn inside BEGIN/COMMIT on one connection; ROLLBACK on throw. */
  transaction<T>(fn: (tx: Pick<Db, 'query'>) => Promise<T>): Promise<T>;
  /** Idempotent. */
  close(): Promise<void>;
}
