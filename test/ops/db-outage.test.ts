// PostgreSQL goes away for 20 s in the middle of a broadcast. The broadcast must not notice: HLS keeps coming, and
// everything that happened meanwhile (timeline events, comments, who spoke when, usage ticks, a performer leaving,
// every segment's upload row) reaches the database once it is back. /healthz says degraded, not down.
import path from 'node:path';
import { expect } from 'chai';
import type { App } from '../../services/app.ts';
import { createStage, startTestApp, transition } from '../support/app.ts';
import { waitArchived } from '../support/archive.ts';
import { BrowserSet, eventually } from '../support/browser.ts';
import { connectClient, postWhileDbDown, type TestClient } from '../support/client.ts';
import { PlaylistWatcher, segmentNumber } from '../support/hls.ts';
import { pulseWav, TempDir } from '../support/media.ts';
import { startPostgres, type PostgresServer } from '../support/postgres.ts';

const OUTAGE_MS = Number(process.env['DB_OUTAGE_SECONDS'] ?? 20) * 1000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Health {
  status: string;
  db: string;
  dbBacklog: number;
}
const health = async (app: App) => {
  const res = await fetch(`${app.url}/healthz`);
  return { code: res.status, body: (await res.json()) as Health };
};

describe('PostgreSQL outage mid-broadcast', function () {
  this.timeout(240_000);
  let tmp: TempDir;
  let browsers: BrowserSet;
  let pg: PostgresServer;
  let app: App;
  const clients: TestClient[] = [];

  before(async () => {
    tmp = new TempDir();
    browsers = new BrowserSet(tmp);
    pg = await startPostgres();
    app = await startTestApp({ DATABASE_URL: pg.url, CDN_DIR: tmp.file('cdn') });
  });
  after(async () => {
    for (const c of clients) c.close();
    await browsers?.close();
    await app?.close();
    await pg?.stop();
    tmp?.remove();
  });

  it(`${OUTAGE_MS / 1000} s down: HLS never stalls; events, comments, speaking, usage ticks, a leave and every segment written afterwards`, async () => {
    const stage = await createStage(app, 'Outage');
    // Ann speaks in 1 s bursts every 2 s, so speaking intervals open and close all through the outage.
    const ann = await browsers.performer(stage.performerUrl, 440, 'Ann', pulseWav(tmp, 440, { periodSec: 2, onSec: 1 }));
    await transition(app, stage.id, 'start');
    const broadcastId = app.registry.get(stage.id)!.broadcast!.id;
    const watcher = new PlaylistWatcher(path.join(app.stages.links.hlsDir(stage.id), 'index.m3u8'));
    // A host on plain signaling (no media) posts chapters; a listener comments.
    const host = await connectClient(app.url);
    clients.push(host);
    const joined = await host.request('join', { stageId: stage.id, key: stage.performerKey, displayName: 'Host' });
    expect(joined.ok, JSON.stringify(joined)).to.equal(true);
    const hostId = joined.ok ? joined.data.performerId : '';
    const listener = await connectClient(app.url, '/listen');
    clients.push(listener);
    const sub = (await listener.raw('subscribe', [{ stageId: stage.id }])) as { ok: boolean };
    expect(sub.ok).to.equal(true);
    expect(await watcher.waitFor((w) => w.segments.length >= 4, 20_000)).to.equal(true);

    // Usage rows are written once a minute; clear this broadcast's so that what is there afterwards came through the outage.
    await app.db.query('delete from usage_ticks where broadcast_id = $1', [broadcastId]);
    const segmentsBefore = watcher.segments.length;
    await pg.pause();
    const pausedAt = Date.now();

    const during = await health(app);
    expect(during.code, '/healthz answers 200 while the database is down').to.equal(200);
    expect(during.body.status).to.equal('degraded');
    expect(during.body.db).to.equal('error');
    const rest = await fetch(`${app.url}/api/stages/${stage.id}`);
    expect(rest.status, 'a REST read that needs the database says 503, not 500').to.equal(503);
    expect(rest.headers.get('retry-after')).to.equal('5');

    const posted = await postWhileDbDown(host, listener, { chapters: 3, everyMs: 3000, title: (i) => `Part ${i + 1}`, comment: 'still on air?' });
    // The minute this tick is for (the outage may cross a minute boundary).
    const tickMinute = Math.floor(Date.now() / 60_000) * 60_000;
    const heldBefore = app.writes.pending;
    const tick = app.usage.tick(new Date(tickMinute));
    expect(tick.queued, 'the usage tick has the stage and its performers').to.be.greaterThan(0);
    const tickWritten = await Promise.race([tick.written, sleep(1000).then(() => 'not yet' as const)]);
    expect(tickWritten, 'the usage tick could not be written now').to.equal('not yet');
    expect(app.writes.pending, 'usage ticks held (journaled) for the database').to.be.greaterThan(heldBefore);
    // The host leaves while the database is away.
    host.close();
    const leftAt = Date.now();
    await sleep(1000);
    const held = await health(app);
    expect(held.body.dbBacklog, 'writes held for the database').to.be.greaterThan(0);

    await sleep(Math.max(0, pausedAt + OUTAGE_MS - Date.now()));
    await pg.resume();
    const resumedAt = Date.now();
    const back = await eventually(() => health(app), (h) => h.body.status === 'ok', 30_000, 200);
    const catchUpMs = Date.now() - resumedAt;
    expect(back.body, 'healthy again with nothing held').to.deep.include({ status: 'ok', db: 'ok', dbBacklog: 0 });
    const segmentsDuring = watcher.segments.filter((s) => s.arrivedAt >= pausedAt && s.arrivedAt <= resumedAt).length;

    // Everything from the window is in the database.
    const { rows: events } = await app.db.query<{ id: string; type: string; at: Date; end_media_time: number | null }>(
      'select id, type, at, end_media_time from timeline_events where broadcast_id = $1',
      [broadcastId],
    );
    const ids = new Set(events.map((e) => e.id));
    for (const id of posted) expect(ids.has(id), `event ${id} is stored`).to.equal(true);
    const speakingDuring = events.filter((e) => e.type === 'speaking' && +new Date(e.at) >= pausedAt && +new Date(e.at) < resumedAt);
    expect(speakingDuring.length, 'speaking intervals that began during the outage').to.be.at.least(Math.floor(OUTAGE_MS / 2000) - 2);
    expect(speakingDuring.filter((e) => e.end_media_time !== null).length, 'and their ends').to.be.at.least(speakingDuring.length - 1);

    const { rows: ticks } = await app.db.query<{ performer_id: string; minute: Date }>(
      'select performer_id, minute from usage_ticks where broadcast_id = $1',
      [broadcastId],
    );
    const annId = await ann.evaluate(() => window.stageDebug.performerId());
    const inMinute = ticks.filter((t) => +new Date(t.minute) === tickMinute).map((t) => t.performer_id);
    expect(inMinute, 'the stage tick and Ann\'s tick of the minute ticked during the outage').to.include.members(['', annId!]);

    const { rows: sessions } = await app.db.query<{ left_at: Date | null; leave_reason: string | null }>(
      'select left_at, leave_reason from performer_sessions where performer_id = $1',
      [hostId],
    );
    expect(sessions[0]?.leave_reason).to.equal('disconnected');
    const leftErrorMs = +new Date(sessions[0]!.left_at!) - leftAt;
    expect(Math.abs(leftErrorMs), 'the leave is recorded at the time it happened, not when the database came back').to.be.below(2000);

    // The live stream never noticed.
    const gaps = watcher.gapsMs();
    const maxGap = Math.max(...gaps);
    await ann.evaluate(() => undefined);
    await transition(app, stage.id, 'stop');
    watcher.stop();
    expect(maxGap, 'largest pause between live segments (ms)').to.be.at.most(1500);
    expect(segmentsDuring, 'segments published during the outage').to.be.at.least(Math.floor(OUTAGE_MS / 1000) - 2);
    expect(app.registry.get(stage.id)?.broadcast?.mixer.ffmpeg.restarts ?? 0).to.equal(0);

    // Every segment, those of the outage included, is in the archive with its programme position.
    const { rec } = await waitArchived(app.url, stage.id, 60_000);
    const objects = await app.archiver.repo.objects(rec.id, 'segment');
    const seqs = objects.map((o) => o.seq!).sort((a, b) => a - b);
    const lastLive = Math.max(...watcher.segments.map((s) => segmentNumber(s.uri)));
    expect(seqs[0]).to.equal(0);
    expect(seqs.length, 'no segment missing').to.equal(seqs[seqs.length - 1]! + 1);
    expect(seqs[seqs.length - 1]).to.be.at.least(lastLive);
    expect(objects.every((o) => o.programDateTime !== null && o.mediaStart !== null), 'every segment kept its clock').to.equal(true);
    console.log(
      `      outage ${((resumedAt - pausedAt) / 1000).toFixed(1)} s: ${segmentsDuring} live segments meanwhile (before: ${segmentsBefore}), largest gap ${maxGap} ms; ` +
        `${posted.length} events + ${speakingDuring.length} speaking intervals held; caught up ${catchUpMs} ms after the database returned; ` +
        `leave recorded ${leftErrorMs} ms from when it happened; archive ${seqs.length} segments`,
    );
  });
});
