// Embedded PGlite: the shared Db contract in memory, plus single-connection serialization and persistence.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { DEFAULT_SQL_DIR, openDb, openPglite, readMigrations } from '../../services/db/index.ts';
import { PerformerSessionRepo, StageRepo } from '../../services/db/repositories.ts';
import { dbContract, silentLog, projectVersions } from './contract.ts';

describe('db: PGlite (embedded)', function () {
  this.timeout(60_000);

  dbContract(() => openPglite(null));

  it('openDb() opens in memory and migrates', async () => {
    const db = await openDb({ kind: 'pglite', dataDir: null }, silentLog);
    try {
      expect(db.kind).to.equal('pglite');
      const { rows } = await db.query<{ version: number }>('select version from schema_migrations');
      expect(rows.map((r) => r.version)).to.deep.equal(await projectVersions());
    } finally {
      await db.close();
    }
  });

  it('makes a query issued outside an open transaction wait for it', async () => {
    const db = await openDb({ kind: 'pglite', dataDir: null }, silentLog);
    try {
      const events: string[] = [];
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      let entered!: () => void;
      const inside = new Promise<void>((r) => (entered = r));
      const txDone = db.transaction(async (tx) => {
        await new StageRepo(tx).create({ id: 'serial', title: 't', performerKeyHash: 'h' });
        entered();
        await gate;
        events.push('tx end');
      });
      await inside;
      const outside = db.query<{ n: number }>("select count(*)::int as n from stages where id = 'serial'").then((r) => {
        events.push('outside query');
        return r.rows[0]!.n;
      });
      await new Promise((r) => setTimeout(r, 50));
      expect(events).to.deep.equal([]);
      release();
      await txDone;
      // It ran after the commit, so it sees the row.
      expect(await outside).to.equal(1);
      expect(events).to.deep.equal(['tx end', 'outside query']);
    } finally {
      await db.close();
    }
  });

  it('fails fast (instead of deadlocking) on db.query() from inside a transaction', async () => {
    const db = await openPglite(null);
    try {
      let err: unknown = null;
      await db
        .transaction(async () => {
          await db.query('select 1');
        })
        .catch((e: unknown) => (err = e));
      expect(String(err)).to.match(/use the tx object/);
      // Work queued after it still runs.
      expect((await db.query('select 1 as one')).rows).to.deep.equal([{ one: 1 }]);
    } finally {
      await db.close();
    }
  });

  it('keeps data across close and reopen of a data directory', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pglite-test-'));
    const dataDir = path.join(dir, 'pgdata');
    try {
      const first = await openDb({ kind: 'pglite', dataDir }, silentLog);
      await new StageRepo(first).create({ id: 'kept', title: 'Persisted', performerKeyHash: 'h' });
      await new PerformerSessionRepo(first).open({ id: 'p', stageId: 'kept', displayName: 'Ann' });
      await first.close();
      await first.close();

      const second = await openDb({ kind: 'pglite', dataDir }, silentLog);
      try {
        const stage = await new StageRepo(second).get('kept');
        expect(stage).to.include({ id: 'kept', title: 'Persisted' });
        expect(stage!.createdAt).to.be.instanceOf(Date);
        expect((await new PerformerSessionRepo(second).listOpen('kept')).map((s) => s.displayName)).to.deep.equal(['Ann']);
        const { rows } = await second.query<{ n: number }>('select count(*)::int as n from schema_migrations');
        expect(rows[0]!.n).to.equal((await readMigrations(DEFAULT_SQL_DIR)).length);
      } finally {
        await second.close();
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
