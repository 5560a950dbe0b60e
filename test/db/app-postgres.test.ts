// The whole app on a real PostgreSQL server (DATABASE_URL), as deployments run it.
import { expect } from 'chai';
import { projectVersions } from './contract.ts';
import pg from 'pg';
import type { App } from '../../services/app.ts';
import { createStage, startTestApp } from '../support/app.ts';
import { connectClient } from '../support/client.ts';
import { startPostgres, type PostgresServer } from '../support/postgres.ts';

describe('app on PostgreSQL (DATABASE_URL)', function () {
  this.timeout(60_000);
  let server: PostgresServer;
  let app: App;

  before(async () => {
    server = await startPostgres();
    app = await startTestApp({ DATABASE_URL: server.url });
  });
  after(async () => {
    await app?.close();
    await server?.stop();
  });

  it('stores stages (key hashed) and performer sessions with join and leave times', async () => {
    expect(app.db.kind).to.equal('postgres');
    const stage = await createStage(app, 'On Postgres');
    const c = await connectClient(app.url);
    const joined = await c.request('join', { stageId: stage.id, key: stage.performerKey, displayName: 'Pat' });
    expect(joined.ok).to.equal(true);
    c.close();

    const direct = new pg.Client({ connectionString: server.url });
    await direct.connect();
    try {
      const s = await direct.query('select title, performer_key_hash from stages where id = $1', [stage.id]);
      expect(s.rows[0].title).to.equal('On Postgres');
      expect(s.rows[0].performer_key_hash).to.match(/^[0-9a-f]{64}$/).and.not.include(stage.performerKey);
      let row: { display_name: string; joined_at: Date; left_at: Date | null; leave_reason: string | null } | undefined;
      for (let i = 0; i < 50; i++) {
        row = (await direct.query('select display_name, joined_at, left_at, leave_reason from performer_sessions where stage_id = $1', [stage.id])).rows[0];
        if (row?.left_at) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(row!.display_name).to.equal('Pat');
      expect(row!.left_at!.getTime()).to.be.at.least(row!.joined_at.getTime());
      expect(row!.leave_reason).to.equal('disconnected');
      const m = await direct.query('select version from schema_migrations order by version');
      expect(m.rows.map((r) => r.version)).to.deep.equal(await projectVersions());
    } finally {
      await direct.end();
    }
  });
});
