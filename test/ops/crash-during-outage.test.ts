// A crash while the database is away loses nothing: the writes the service holds for it (timeline events, comments,
// speaking intervals, a performer's leave, segments' upload rows) are journaled on local disk, so when the service is
// SIGKILLed during the outage and started again once PostgreSQL is back, every one of them is in the database,
// exactly once. The real service in a child process, a real PostgreSQL server stopped and started, a Chromium
// performer speaking in bursts, a host and a listener on Socket.IO.
import fs from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import pg from 'pg';
import { TEST_ADMIN_TOKEN } from '../support/app.ts';
import { BrowserSet, eventually } from '../support/browser.ts';
import { connectClient, postWhileDbDown, type TestClient } from '../support/client.ts';
import { descendants } from '../support/handles.ts';
import { pulseWav, TempDir } from '../support/media.ts';
import { createDatabase, findFreePort, startPostgres, type PostgresServer } from '../support/postgres.ts';
import { ServiceProcess } from '../support/service.ts';

const admin = { authorization: `Bearer ${TEST_ADMIN_TOKEN}`, 'content-type': 'application/json' };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('a crash during a database outage', function () {
  this.timeout(240_000);
  let tmp: TempDir;
  let browsers: BrowserSet;
  let pgServer: PostgresServer;
  const services: ServiceProcess[] = [];
  const clients: TestClient[] = [];

  before(async () => {
    tmp = new TempDir();
    browsers = new BrowserSet(tmp);
    pgServer = await startPostgres();
  });
  after(async () => {
    for (const c of clients) c.close();
    await browsers?.close();
    await Promise.all(services.map((s) => s.stop()));
    await pgServer?.stop();
    tmp?.remove();
  });

  it('SIGKILL with writes held: after PostgreSQL and the service are back, every held write is in the database exactly once', async () => {
    const dbUrl = await createDatabase(pgServer.url, 'crash_outage');
    const env = { DATABASE_URL: dbUrl, JOURNAL_DIR: tmp.file('journal'), CDN_DIR: tmp.file('cdn'), ARCHIVE_DIR: tmp.file('archive'), ARCHIVE_SPOOL_DIR: tmp.file('spool') };
    const first = await ServiceProcess.start(await findFreePort(), env);
    services.push(first);
    const stage = (await (await fetch(`${first.url}/api/stages`, { method: 'POST', headers: admin, body: JSON.stringify({ title: 'Crash' }) })).json()) as { id: string; performerKey: string; performerUrl: string };
    // Ann speaks in 0.6 s bursts every 1.5 s: speaking intervals open and close all through the outage.
    await browsers.performer(stage.performerUrl, 440, 'Ann', pulseWav(tmp, 440, { periodSec: 1.5, onSec: 0.6 }));
    expect((await fetch(`${first.url}/api/stages/${stage.id}/start`, { method: 'POST', headers: admin, body: '{}' })).status).to.equal(200);
    const host = await connectClient(first.url);
    clients.push(host);
    const joined = await host.request('join', { stageId: stage.id, key: stage.performerKey, displayName: 'Host' });
    expect(joined.ok, JSON.stringify(joined)).to.equal(true);
    const listener = await connectClient(first.url, '/listen');
    clients.push(listener);
    expect(((await listener.raw('subscribe', [{ stageId: stage.id }])) as { ok: boolean }).ok).to.equal(true);
    await sleep(3_000);

    const db = new pg.Client({ connectionString: dbUrl });
    await db.connect();
    const count = async (sql: string, params: unknown[]) => (await db.query<{ n: number }>(sql, params)).rows[0]!.n;
    const broadcastId = (await db.query<{ id: string }>('select id from broadcasts where stage_id = $1', [stage.id])).rows[0]!.id;
    const eventsBefore = await count('select count(*)::int as n from timeline_events where broadcast_id = $1', [broadcastId]);
    const segmentsBefore = await count(`select count(*)::int as n from archive_objects where broadcast_id = $1 and kind = 'segment'`, [broadcastId]);
    await db.end();

    // The database goes away. What happens now is held, and journaled.
    await pgServer.pause();
    const posted = await postWhileDbDown(host, listener, { chapters: 3, everyMs: 1_500, title: (i) => `Held ${i + 1}`, comment: 'are you there?' });
    // The host leaves: the end of its session is held too.
    host.close();
    const hostId = joined.ok ? joined.data.performerId : '';
    await sleep(2_000);
    const health = (await (await fetch(`${first.url}/healthz`)).json()) as { status: string; dbBacklog: number };
    expect(health.status).to.equal('degraded');
    expect(health.dbBacklog, 'writes are held for the database').to.be.greaterThan(posted.length);
    const held = health.dbBacklog;

    // The crash: SIGKILL to the service's process group (its FFmpeg dies with it too).
    process.kill(-first.pid, 'SIGKILL');
    await first.exited;
    await eventually(async () => descendants(first.pid).length, (n) => n === 0, 5_000);

    // PostgreSQL comes back, then the service.
    await pgServer.resume();
    const second = await ServiceProcess.start(await findFreePort(), env);
    services.push(second);
    const replay = second.logged('replaying writes an earlier run left unfinished');
    expect(replay, 'the journal was replayed at start').to.have.length(1);
    console.log(`      held at the crash: ${held} writes; replayed at start: ${replay[0]!['count']}`);
    expect(Number(replay[0]!['count'])).to.be.at.least(held);

    const check = new pg.Client({ connectionString: dbUrl });
    await check.connect();
    try {
      // Every event posted during the outage, once.
      const rows = (await check.query<{ id: string; n: number }>('select id, count(*)::int as n from timeline_events where id = any($1) group by id', [posted])).rows;
      expect(rows.map((r) => r.id).sort(), 'every held chapter and the comment').to.deep.equal([...posted].sort());
      expect(rows.every((r) => r.n === 1), 'once each').to.equal(true);
      // Speaking intervals that ended during the outage, with their ends.
      const speaking = await check.query<{ media_time: number; end_media_time: number | null }>(
        `select media_time, end_media_time from timeline_events where broadcast_id = $1 and type = 'speaking' order by media_time`,
        [broadcastId],
      );
      const eventsAfter = (await check.query<{ n: number }>('select count(*)::int as n from timeline_events where broadcast_id = $1', [broadcastId])).rows[0]!.n;
      console.log(`      timeline events: ${eventsBefore} before the outage, ${eventsAfter} after the restart; speaking intervals ${speaking.rows.length}`);
      expect(eventsAfter - eventsBefore, 'the held chapters, the comment and the speaking intervals of the outage').to.be.at.least(posted.length + 3);
      // The host's leave, as it happened (not the restart's clean-up).
      const session = await check.query<{ leave_reason: string; left_at: Date }>('select leave_reason, left_at from performer_sessions where performer_id = $1', [hostId]);
      expect(session.rows).to.have.length(1);
      expect(session.rows[0]!.leave_reason, "the host's own leave, held and replayed").to.equal('disconnected');
      // Every segment the mix finished during the outage has its upload row: none is missing, none is there twice.
      const segs = await check.query<{ seq: number }>(`select seq from archive_objects where broadcast_id = $1 and kind = 'segment' order by seq`, [broadcastId]);
      const seqs = segs.rows.map((r) => r.seq);
      console.log(`      segment rows: ${segmentsBefore} before the outage, ${seqs.length} after the restart`);
      expect(seqs.length, 'segments of the outage').to.be.greaterThan(segmentsBefore + 5);
      expect(seqs, 'contiguous from 0: none missing').to.deep.equal(seqs.map((_, i) => i));
      // Once written, nothing is left to replay: the journal is empty (a third start would replay nothing).
      const journal = path.join(env.JOURNAL_DIR, 'writes.jsonl');
      expect(await eventually(async () => fs.statSync(journal).size, (n) => n === 0, 5_000), 'the journal is empty').to.equal(0);
    } finally {
      await check.end();
    }
  });
});
