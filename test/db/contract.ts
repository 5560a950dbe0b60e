// Behaviour both Db implementations must share. Used by pglite.test.ts and postgres.test.ts.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import type { Db } from '../../services/db/db.ts';
import { DEFAULT_SQL_DIR, MigrationError, migrate, readMigrations } from '../../services/db/index.ts';
import { PerformerSessionRepo, StageRepo } from '../../services/db/repositories.ts';
import { createLogger } from '../../services/logger.ts';

export const silentLog = createLogger('error', { silent: true });

export function tempSqlDir(files: Record<string, string>): { dir: string; write(name: string, sql: string): void; remove(): void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sql-test-'));
  const write = (name: string, sql: string): void => fs.writeFileSync(path.join(dir, name), sql);
  for (const [name, sql] of Object.entries(files)) write(name, sql);
  return { dir, write, remove: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

async function tableExists(db: Pick<Db, 'query'>, name: string): Promise<boolean> {
  const { rows } = await db.query<{ t: string | null }>('select to_regclass($1)::text as t', [name]);
  return rows[0]?.t != null;
}

/**
 * @param fresh opens a Db on an empty database (the caller closes nothing: the contract closes what it opens).
 */
export function dbContract(fresh: () => Promise<Db>): void {
  describe('migrations', () => {
    it('applies sql/ and is idempotent on a second run', async () => {
      const db = await fresh();
      try {
        const all = (await readMigrations(DEFAULT_SQL_DIR)).map((m) => m.version);
        expect(all.slice(0, 2)).to.deep.equal([1, 2]);
        expect(await migrate(db, DEFAULT_SQL_DIR, silentLog)).to.deep.equal(all);
        expect(await migrate(db, DEFAULT_SQL_DIR, silentLog)).to.deep.equal([]);
        const { rows } = await db.query<{ version: number; name: string; checksum: string; applied_at: unknown }>(
          'select version, name, checksum, applied_at from schema_migrations order by version',
        );
        expect(rows).to.have.length(all.length);
        expect(rows[0]!.version).to.equal(1);
        expect(rows[0]!.name).to.equal('init');
        expect(rows[0]!.checksum).to.match(/^[0-9a-f]{64}$/);
        expect(rows[0]!.applied_at).to.be.instanceOf(Date);
        expect(await tableExists(db, 'stages')).to.equal(true);
        expect(await tableExists(db, 'performer_sessions')).to.equal(true);
        const idx = await db.query<{ indexname: string }>(
          "select indexname from pg_indexes where tablename = 'performer_sessions' and indexdef like '%(stage_id)%'",
        );
        expect(idx.rows).to.have.length(1);
      } finally {
        await db.close();
      }
    });

    it('applies files in numeric order, several statements per file', async () => {
      const sql = tempSqlDir({
        '10_second.sql': 'insert into t (v) values (10);\ninsert into t (v) values (11);',
        '2_first.sql': '-- comment\ncreate table t (v int not null);\ninsert into t (v) values (2);\n',
      });
      const db = await fresh();
      try {
        expect(await migrate(db, sql.dir, silentLog)).to.deep.equal([2, 10]);
        const { rows } = await db.query<{ v: number }>('select v from t order by v');
        expect(rows.map((r) => r.v)).to.deep.equal([2, 10, 11]);
      } finally {
        await db.close();
        sql.remove();
      }
    });

    it('refuses a migration whose file changed after it was applied', async () => {
      const sql = tempSqlDir({ '001_a.sql': 'create table a (x int);' });
      const db = await fresh();
      try {
        await migrate(db, sql.dir, silentLog);
        sql.write('001_a.sql', 'create table a (x int, y int);');
        sql.write('002_b.sql', 'create table b (x int);');
        let err: unknown = null;
        try {
          await migrate(db, sql.dir, silentLog);
        } catch (e) {
          err = e;
        }
        expect(err).to.be.instanceOf(MigrationError);
        expect((err as Error).message).to.match(/001_a\.sql was changed after it was applied/);
        // Nothing after the changed file ran.
        expect(await tableExists(db, 'b')).to.equal(false);
      } finally {
        await db.close();
        sql.remove();
      }
    });

    it('rolls back a failing migration entirely and does not record it', async () => {
      const sql = tempSqlDir({
        '001_ok.sql': 'create table ok (x int);',
        '002_bad.sql': 'create table half (x int);\nselect * from no_such_table;',
      });
      const db = await fresh();
      try {
        let err: unknown = null;
        try {
          await migrate(db, sql.dir, silentLog);
        } catch (e) {
          err = e;
        }
        expect(err).to.be.instanceOf(MigrationError);
        expect((err as Error).message).to.match(/002_bad\.sql failed: .*no_such_table/);
        expect(await tableExists(db, 'ok')).to.equal(true);
        expect(await tableExists(db, 'half')).to.equal(false);
        const { rows } = await db.query<{ version: number }>('select version from schema_migrations order by version');
        expect(rows.map((r) => r.version)).to.deep.equal([1]);
      } finally {
        await db.close();
        sql.remove();
      }
    });

    it('rejects badly named and duplicate migration files', async () => {
      const bad = tempSqlDir({ 'init.sql': 'select 1;' });
      const dup = tempSqlDir({ '1_a.sql': 'select 1;', '001_b.sql': 'select 1;' });
      const db = await fresh();
      try {
        let err: unknown = null;
        await migrate(db, bad.dir, silentLog).catch((e: unknown) => (err = e));
        expect((err as Error).message).to.match(/NNN_name\.sql/);
        err = null;
        await migrate(db, dup.dir, silentLog).catch((e: unknown) => (err = e));
        expect((err as Error).message).to.match(/share version 1/);
      } finally {
        await db.close();
        bad.remove();
        dup.remove();
      }
    });
  });

  describe('queries, transactions, repositories', () => {
    let db: Db;
    before(async () => {
      db = await fresh();
      await migrate(db, DEFAULT_SQL_DIR, silentLog);
    });
    after(async () => {
      await db?.close();
    });

    it('returns rows and rowCount', async () => {
      const r = await db.query<{ n: number; s: string }>('select $1::int as n, $2::text as s', [7, 'x']);
      expect(r.rows).to.deep.equal([{ n: 7, s: 'x' }]);
      expect(r.rowCount).to.equal(1);
      const multi = await db.query<{ n: number }>('select 1 as n; select 2 as n union all select 3');
      expect(multi.rows.map((x) => x.n)).to.deep.equal([2, 3]);
      expect(multi.rowCount).to.equal(2);
    });

    it('StageRepo round-trips, with Date timestamps and setStatus stamps', async () => {
      const stages = new StageRepo(db);
      const before = Date.now();
      const created = await stages.create({ id: 'st-1', title: 'Morning show', performerKeyHash: 'abc' });
      expect(created).to.include({ id: 'st-1', title: 'Morning show', performerKeyHash: 'abc', status: 'idle' });
      expect(created.createdAt).to.be.instanceOf(Date);
      expect(Math.abs(created.createdAt.getTime() - before)).to.be.lessThan(60_000);
      expect(created.startedAt).to.equal(null);
      expect(created.endedAt).to.equal(null);

      const got = await stages.get('st-1');
      expect(got).to.deep.equal(created);
      expect(await stages.get('nope')).to.equal(null);

      const live = await stages.setStatus('st-1', 'live');
      expect(live!.status).to.equal('live');
      expect(live!.startedAt).to.be.instanceOf(Date);
      expect(live!.endedAt).to.equal(null);
      expect(live!.startedAt!.getTime()).to.be.at.least(created.createdAt.getTime());

      await new Promise((r) => setTimeout(r, 5));
      const ended = await stages.setStatus('st-1', 'ended');
      expect(ended!.status).to.equal('ended');
      expect(ended!.startedAt!.getTime()).to.equal(live!.startedAt!.getTime());
      expect(ended!.endedAt).to.be.instanceOf(Date);
      expect(ended!.endedAt!.getTime()).to.be.greaterThan(live!.startedAt!.getTime());
      expect(await stages.get('st-1')).to.deep.equal(ended);

      expect(await stages.setStatus('nope', 'live')).to.equal(null);
      let err: unknown = null;
      await stages.setStatus('st-1', 'bogus' as 'live').catch((e: unknown) => (err = e));
      expect(String(err)).to.match(/check constraint/);
    });

    it('PerformerSessionRepo opens, lists, closes once, and closes all open', async () => {
      const stages = new StageRepo(db);
      const sessions = new PerformerSessionRepo(db);
      await stages.create({ id: 'st-2', title: 'Two', performerKeyHash: 'h' });
      await stages.create({ id: 'st-3', title: 'Three', performerKeyHash: 'h' });
      await sessions.open({ id: 'p-1', stageId: 'st-2', displayName: 'Ann' });
      await sessions.open({ id: 'p-2', stageId: 'st-2', displayName: 'Bob' });
      await sessions.open({ id: 'p-3', stageId: 'st-3', displayName: 'Cy' });

      const p1 = await sessions.get('p-1');
      expect(p1).to.include({ id: 'p-1', stageId: 'st-2', displayName: 'Ann', leftAt: null, leaveReason: null });
      expect(p1!.joinedAt).to.be.instanceOf(Date);

      expect((await sessions.listOpen('st-2')).map((s) => s.id)).to.have.members(['p-1', 'p-2']);
      expect(await sessions.close('p-1', 'left')).to.equal(true);
      const closed = await sessions.get('p-1');
      expect(closed!.leftAt).to.be.instanceOf(Date);
      expect(closed!.leaveReason).to.equal('left');
      // A second close keeps the first time and reason.
      expect(await sessions.close('p-1', 'kicked')).to.equal(false);
      expect(await sessions.get('p-1')).to.deep.equal(closed);
      expect((await sessions.listOpen('st-2')).map((s) => s.id)).to.deep.equal(['p-2']);

      expect(await sessions.closeAllOpen('server restart')).to.equal(2);
      expect(await sessions.closeAllOpen('server restart')).to.equal(0);
      expect(await sessions.listOpen('st-2')).to.deep.equal([]);
      expect((await sessions.get('p-3'))!.leaveReason).to.equal('server restart');
      expect((await sessions.get('p-1'))!.leaveReason).to.equal('left');

      let err: unknown = null;
      await sessions.open({ id: 'p-4', stageId: 'no-stage', displayName: 'X' }).catch((e: unknown) => (err = e));
      expect(String(err)).to.match(/foreign key/);
    });

    it('commits a transaction and returns its value', async () => {
      const out = await db.transaction(async (tx) => {
        await new StageRepo(tx).create({ id: 'tx-ok', title: 't', performerKeyHash: 'h' });
        return 42;
      });
      expect(out).to.equal(42);
      expect(await new StageRepo(db).get('tx-ok')).to.not.equal(null);
    });

    it('rolls a transaction back when its function throws', async () => {
      let err: unknown = null;
      await db
        .transaction(async (tx) => {
          await new StageRepo(tx).create({ id: 'tx-bad', title: 't', performerKeyHash: 'h' });
          throw new Error('boom');
        })
        .catch((e: unknown) => (err = e));
      expect((err as Error).message).to.equal('boom');
      expect(await new StageRepo(db).get('tx-bad')).to.equal(null);
      // The connection is usable afterwards.
      expect((await db.query('select 1 as one')).rows).to.deep.equal([{ one: 1 }]);
    });

    it('rolls back after a failed statement inside the transaction', async () => {
      let err: unknown = null;
      await db
        .transaction(async (tx) => {
          await new StageRepo(tx).create({ id: 'tx-bad2', title: 't', performerKeyHash: 'h' });
          await tx.query('select * from no_such_table');
        })
        .catch((e: unknown) => (err = e));
      expect(String(err)).to.match(/no_such_table/);
      expect(await new StageRepo(db).get('tx-bad2')).to.equal(null);
    });

    it('refuses tx.query after the transaction finished', async () => {
      let leaked: Pick<Db, 'query'> | null = null;
      await db.transaction(async (tx) => {
        leaked = tx;
      });
      let err: unknown = null;
      await leaked!.query('select 1').catch((e: unknown) => (err = e));
      expect(String(err)).to.match(/transaction is already finished/);
    });
  });

  it('close() is idempotent and later queries fail clearly', async () => {
    const db = await fresh();
    await Promise.all([db.close(), db.close()]);
    await db.close();
    let err: unknown = null;
    await db.query('select 1').catch((e: unknown) => (err = e));
    expect(String(err)).to.match(/database is closed/);
  });
}

/** The versions of the project's migrations (sql/), in order. */
export async function projectVersions(): Promise<number[]> {
  return (await readMigrations(DEFAULT_SQL_DIR)).map((m) => m.version);
}
