// Opens the configured database and brings its schema up to date.
import path from 'node:path';
import type { Config } from '../config.ts';
import type { Logger } from '../logger.ts';
import type { Db } from './db.ts';
import { migrate } from './migrate.ts';
import { openPglite } from './pglite.ts';
import { openPostgres } from './postgres.ts';

export type { Db, QueryResult } from './db.ts';
export { migrate, MigrationError, readMigrations, migrationChecksum } from './migrate.ts';
export { openPglite } from './pglite.ts';
export { openPostgres } from './postgres.ts';

/** Default migrations directory: <project root>/sql. */
export const DEFAULT_SQL_DIR = path.resolve(import.meta.dirname, '..', '..', 'sql');

/**
 * Opens PGlite or PostgreSQL per config, then applies pending migrations from sqlDir
 * (config.paths.sqlDir; defaults to the project's sql/). Closes the database again if migration fails.
 */
export async function openDb(config: Config['db'], log: Logger, sqlDir: string = DEFAULT_SQL_DIR): Promise<Db> {
  let db: Db;
  if (config.kind === 'postgres') {
    db = await openPostgres(config.url, { onPoolError: (err) => log.warn('idle postgres client error', { err: err.message }) });
    log.info('database opened', { kind: 'postgres', host: safeHost(config.url) });
  } else {
    db = await openPglite(config.dataDir);
    log.info('database opened', { kind: 'pglite', dataDir: config.dataDir ?? 'memory' });
  }
  try {
    await migrate(db, sqlDir, log);
  } catch (err) {
    await db.close().catch(() => {});
    throw err;
  }
  return db;
}

/** host:port/db of a postgres URL, without credentials, for logs. */
function safeHost(url: string): string {
  try {
    const u = new URL(url);
    return `${u.host}${u.pathname}`;
  } catch {
    return '(unparsable url)';
  }
}
