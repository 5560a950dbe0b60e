// Real PostgreSQL (a throwaway server from test/support/postgres.ts): the shared Db contract, concurrent
// migrations, pool resilience, and the harness's pause/resume.
import { expect } from 'chai';
import pg from 'pg';
import type { Db } from '../../services/db/db.ts';
import { DEFAULT_SQL_DIR, migrate, openDb, openPostgres } from '../../services/db/index.ts';
import { StageRepo } from '../../services/db/repositories.ts';
import { createDatabase, startPostgres, type PostgresServer } from '../support/postgres.ts';
import { dbContract, silentLog, tempSqlDir, projectVersions } from './contract.ts';

describe('db: PostgreSQL (real server)', function () {
  this.timeout(60_000);
  let server: PostgresServer;
  let n = 0;

  /** Creates an empty database and returns its URL. */
  const freshUrl = () => createDatabase(server.url, `t${++n}_${process.pid}`);

  before(async () => {
    server = await startPostgres();
  });
  after(async () => {
    await server?.stop();
  });

  dbContract(async () => openPostgres(await freshUrl()));

  it('openDb() connects and migrates', async () => {
    const db = await openDb({ kind: 'postgres', url: await freshUrl() }, silentLog);
    try {
      expect(db.kind).to.equal('postgres');
      const { rows } = await db.query<{ version: number }>('select version from schema_migrations');
      expect(rows.map((r) => r.version)).to.deep.equal(await projectVersions());
    } finally {
      await db.close();
    }
  });

  it('openPostgres() fails within the connection timeout when nobody listens', async () => {
    const u = new URL(server.url);
    u.port = '1';
    const started = Date.now();
    let err: unknown = null;
    await openPostgres(u.toString()).catch((e: unknown) => (err = e));
    expect(err).to.be.instanceOf(Error);
    expect(Date.now() - started).to.be.lessThan(6_000);
  });

  it('lets concurrent migrate() calls on one database both succeed, applying each file once', async () => {
    const url = await freshUrl();
    const sql = tempSqlDir({
      '001_a.sql': 'create table a (x int); select pg_sleep(0.2);',
      '002_b.sql': 'create table b (x int);',
    });
    const dbs: Db[] = await Promise.all([openPostgres(url), openPostgres(url), openPostgres(url)]);
    try {
      const results = await Promise.all(dbs.map((db) => migrate(db, sql.dir, silentLog)));
      expect(results.flat().sort()).to.deep.equal([1, 2]);
      // Again, concurrently: nothing left to do.
      const again = await Promise.all(dbs.map((db) => migrate(db, sql.dir, silentLog)));
      expect(again.flat()).to.deep.equal([]);
      const { rows } = await dbs[0]!.query<{ version: number }>('select version from schema_migrations order by version');
      expect(rows.map((r) => r.version)).to.deep.equal([1, 2]);
    } finally {
      await Promise.all(dbs.map((db) => db.close()));
      sql.remove();
    }
  });

  it('concurrent openDb() on a fresh database: both succeed, schema_migrations has no duplicates', async () => {
    const url = await freshUrl();
    const dbs = await Promise.all([1, 2, 3, 4].map(() => openDb({ kind: 'postgres', url }, silentLog)));
    try {
      const { rows } = await dbs[0]!.query<{ version: number }>('select version from schema_migrations');
      expect(rows.map((r) => r.version)).to.deep.equal(await projectVersions());
    } finally {
      await Promise.all(dbs.map((db) => db.close()));
    }
  });

  it('survives idle pooled connections being killed by the server', async () => {
    const url = await freshUrl();
    const errors: Error[] = [];
    const db = await openPostgres(url, { onPoolError: (e) => errors.push(e) });
    try {
      await Promise.all([1, 2, 3].map(() => db.query('select pg_sleep(0.05)')));
      const admin = new pg.Client({ connectionString: server.url });
      await admin.connect();
      try {
        const dbName = new URL(url).pathname.slice(1);
        await admin.query('select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()', [dbName]);
      } finally {
        await admin.end();
      }
      await new Promise((r) => setTimeout(r, 200));
      expect(errors.length).to.be.greaterThan(0);
      expect((await db.query('select 1 as one')).rows).to.deep.equal([{ one: 1 }]);
    } finally {
      await db.close();
    }
  });

  it('harness: pause() stops the server keeping its data, resume() brings it back on the same port', async () => {
    const url = await freshUrl();
    const db = await openDb({ kind: 'postgres', url }, silentLog);
    try {
      await new StageRepo(db).create({ id: 'survivor', title: 't', performerKeyHash: 'h' });
      const pid = server.pid;
      await server.pause();
      expect(server.pid).to.equal(null);
      expect(() => process.kill(pid!, 0)).to.throw();
      let err: unknown = null;
      await db.query('select 1').catch((e: unknown) => (err = e));
      expect(err).to.be.instanceOf(Error);
      await server.resume();
      expect(server.pid).to.be.a('number').and.not.equal(pid);
      expect((await new StageRepo(db).get('survivor'))?.title).to.equal('t');
    } finally {
      await db.close();
    }
  });
});
