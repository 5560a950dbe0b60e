// Forward-only SQL migrations: sql/NNN_name.sql, applied in numeric order, each in its own transaction and
// recorded in schema_migrations with the sha256 of its text. An applied file must never change: a different
// checksum is an error. On real PostgreSQL concurrent starts are serialized with a transaction-scoped
// advisory lock (PGlite has a single connection, so it needs none).
//
// A file may hold several statements (it runs as one simple-protocol query), but it must not contain its own
// BEGIN/COMMIT nor statements that cannot run in a transaction block (CREATE INDEX CONCURRENTLY, ...).
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../logger.ts';
import type { Db } from './db.ts';

/** Arbitrary constant key for pg_advisory_xact_lock: "stage-radio migrations". */
const MIGRATION_LOCK_KEY = 7_243_118_305;

const FILE_RE = /^(\d+)_([A-Za-z0-9_.-]+)\.sql$/;

export interface MigrationFile {
  version: number;
  name: string;
  file: string;
  sql: string;
  checksum: string;
}

export class MigrationError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'MigrationError';
  }
}

/** sha256 (hex) of the file text, line endings normalized so a CRLF checkout does not count as a change. */
export function migrationChecksum(sql: string): string {
  return crypto.createHash('sha256').update(sql.replace(/\r\n/g, '\n'), 'utf8').digest('hex');
}

/** Reads and orders the migration files of sqlDir. */
export async function readMigrations(sqlDir: string): Promise<MigrationFile[]> {
  const entries = await fs.readdir(sqlDir);
  const out: MigrationFile[] = [];
  for (const file of entries) {
    if (!file.endsWith('.sql')) continue;
    const m = FILE_RE.exec(file);
    if (!m) throw new MigrationError(`migration file name must look like NNN_name.sql: ${path.join(sqlDir, file)}`);
    const sql = await fs.readFile(path.join(sqlDir, file), 'utf8');
    out.push({ version: Number(m[1]), name: m[2]!, file, sql, checksum: migrationChecksum(sql) });
  }
  out.sort((a, b) => a.version - b.version);
  for (let i = 1; i < out.length; i++) {
    if (out[i]!.version === out[i - 1]!.version) {
      throw new MigrationError(`two migration files share version ${out[i]!.version}: ${out[i - 1]!.file}, ${out[i]!.file}`);
    }
  }
  return out;
}

interface AppliedRow {
  version: number;
  name: string;
  checksum: string;
}

function checkUnchanged(m: MigrationFile, row: AppliedRow): void {
  if (row.checksum !== m.checksum) {
    throw new MigrationError(
      `migration ${m.file} was changed after it was applied (recorded sha256 ${row.checksum}, file sha256 ${m.checksum}); ` +
        'applied migrations are immutable: revert the file and add a new migration instead',
    );
  }
}

/**
 * Applies the pending migrations of sqlDir. Safe to call concurrently from several processes on PostgreSQL.
 * Returns the versions applied by this call.
 */
export async function migrate(db: Db, sqlDir: string, log: Logger): Promise<number[]> {
  const files = await readMigrations(sqlDir);
  const lock = async (tx: Pick<Db, 'query'>): Promise<void> => {
    if (db.kind === 'postgres') await tx.query('select pg_advisory_xact_lock($1::bigint)', [MIGRATION_LOCK_KEY]);
  };

  await db.transaction(async (tx) => {
    await lock(tx);
    await tx.query(`create table if not exists schema_migrations (
      version int primary key,
      name text not null,
      checksum text not null,
      applied_at timestamptz not null default now()
    )`);
  });

  const { rows: appliedRows } = await db.query<AppliedRow>('select version, name, checksum from schema_migrations order by version');
  const applied = new Map(appliedRows.map((r) => [r.version, r]));
  for (const m of files) {
    const row = applied.get(m.version);
    if (row) checkUnchanged(m, row);
  }
  const known = new Set(files.map((m) => m.version));
  for (const r of appliedRows) {
    if (!known.has(r.version)) log.warn('applied migration has no file (database newer than code?)', { version: r.version, name: r.name });
  }

  const done: number[] = [];
  for (const m of files) {
    if (applied.has(m.version)) continue;
    const ran = await db.transaction(async (tx) => {
      await lock(tx);
      // Another process may have applied it while we waited for the lock.
      const { rows } = await tx.query<AppliedRow>('select version, name, checksum from schema_migrations where version = $1', [m.version]);
      if (rows[0]) {
        checkUnchanged(m, rows[0]);
        return false;
      }
      const started = Date.now();
      try {
        if (m.sql.trim() !== '') await tx.query(m.sql);
      } catch (err) {
        const e = err as Error;
        throw new MigrationError(`migration ${m.file} failed: ${e.message}`, { cause: err });
      }
      await tx.query('insert into schema_migrations (version, name, checksum) values ($1, $2, $3)', [m.version, m.name, m.checksum]);
      log.info('applied migration', { version: m.version, name: m.name, ms: Date.now() - started });
      return true;
    });
    if (ran) done.push(m.version);
  }
  if (done.length === 0) log.debug('database schema up to date', { latest: files[files.length - 1]?.version ?? null });
  return done;
}
