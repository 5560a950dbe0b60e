// The /admin namespace and page against a real app: Socket.IO clients with a missing, malformed or wrong token are
// refused; the right token gets a snapshot about once a second; real Chromium opens /admin#token=... and sees the
// stage, its two Chromium performers (one muted) with the live level of the one whose tone plays, and the workers'
// CPU; a wrong token on the page shows the error and no data.
import { expect } from 'chai';
import type { Browser, Page } from 'playwright-core';
import { io, type Socket } from 'socket.io-client';
import type { App } from '../../services/app.ts';
import type { AdminConnectErrorData, AdminLevel, AdminSnapshot } from '../../services/shared/admin.ts';
import { createStage, startTestApp, TEST_ADMIN_TOKEN, transition } from '../support/app.ts';
import { eventually, joinAsPerformer, launchBrowser, launchPerformerBrowser } from '../support/browser.ts';
import { TempDir, toneWav } from '../support/media.ts';
import { startPostgres, type PostgresServer } from '../support/postgres.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Connects to /admin; resolves with the socket once connected, or with the connect_error's data when refused. */
function connectAdmin(url: string, opts: { auth?: unknown; query?: Record<string, string> }): Promise<{ socket: Socket } | { refused: AdminConnectErrorData; message: string }> {
  const socket = io(`${url}/admin`, {
    transports: ['websocket'],
    reconnection: false,
    forceNew: true,
    ...(opts.auth !== undefined ? { auth: opts.auth as Record<string, unknown> } : {}),
    ...(opts.query ? { query: opts.query } : {}),
  });
  return new Promise((resolve) => {
    socket.once('connect', () => resolve({ socket }));
    socket.once('connect_error', (err: Error & { data?: AdminConnectErrorData }) => {
      socket.close();
      resolve({ refused: err.data!, message: err.message });
    });
  });
}

describe('admin: the /admin namespace and page', function () {
  this.timeout(180_000);
  let tmp: TempDir;
  let app: App;
  const browsers: Browser[] = [];
  const sockets: Socket[] = [];

  before(async () => {
    tmp = new TempDir();
    app = await startTestApp({ CDN_DIR: tmp.file('cdn') });
  });
  after(async () => {
    for (const s of sockets) s.close();
    await Promise.all(browsers.map((b) => b.close()));
    await app?.close();
    tmp?.remove();
  });

  it('refuses a Socket.IO client without the right token, with a clear connect_error and no data', async () => {
    const cases: { what: string; opts: Parameters<typeof connectAdmin>[1]; code: string; message: RegExp }[] = [
      { what: 'no auth', opts: {}, code: 'UNAUTHORIZED', message: /admin token is required/ },
      { what: 'empty auth', opts: { auth: {} }, code: 'UNAUTHORIZED', message: /admin token is required/ },
      { what: 'wrong token', opts: { auth: { token: 'not-the-admin-token' } }, code: 'UNAUTHORIZED', message: /wrong admin token/ },
      { what: 'token not a string', opts: { auth: { token: 12345 } }, code: 'BAD_REQUEST', message: /auth must be/ },
      { what: 'extra field', opts: { auth: { token: TEST_ADMIN_TOKEN, role: 'root' } }, code: 'BAD_REQUEST', message: /nothing else/ },
      { what: 'token too long', opts: { auth: { token: 'x'.repeat(10_000) } }, code: 'BAD_REQUEST', message: /auth must be/ },
      // The query string is never read: a token there is no token.
      { what: 'token in the query', opts: { query: { token: TEST_ADMIN_TOKEN } }, code: 'UNAUTHORIZED', message: /admin token is required/ },
    ];
    for (const c of cases) {
      const r = await connectAdmin(app.url, c.opts);
      expect('refused' in r, `${c.what}: refused`).to.equal(true);
      if (!('refused' in r)) continue;
      expect(r.refused.code, c.what).to.equal(c.code);
      expect(r.refused.message, c.what).to.match(c.message);
      expect(r.message, c.what).to.equal(r.refused.message);
    }
    expect(app.admin.connections).to.equal(0);
  });

  it('sends the right token a snapshot about once a second, and refuses anything the admin sends', async () => {
    const r = await connectAdmin(app.url, { auth: { token: TEST_ADMIN_TOKEN } });
    expect('socket' in r).to.equal(true);
    if (!('socket' in r)) return;
    sockets.push(r.socket);
    const arrivals: { at: number; snap: AdminSnapshot }[] = [];
    r.socket.on('snapshot', (snap: AdminSnapshot) => arrivals.push({ at: Date.now(), snap }));
    await eventually(async () => arrivals.length, (n) => n >= 4, 10_000, 100);
    const gaps = arrivals.slice(2).map((a, i) => a.at - arrivals[i + 1]!.at);
    console.log(`      snapshot intervals: ${gaps.join(', ')} ms`);
    for (const g of gaps) expect(g, 'interval between snapshots (ms)').to.be.within(500, 1800);
    const snap = arrivals.at(-1)!.snap;
    expect(snap.workers.map((w) => w.pid).sort()).to.deep.equal(app.pool.workers.map((w) => w.worker.pid).sort());
    expect(snap.workers.every((w) => w.alive && w.cpuPercent !== null && w.cpuPercent >= 0)).to.equal(true);
    expect(snap.totals).to.include({ stagesLive: 0, performers: 0 });
    const ack = await new Promise<unknown>((resolve) => r.socket.emit('snapshot', {}, resolve));
    expect(ack).to.deep.equal({ ok: false, error: { code: 'BAD_REQUEST', message: 'unknown event snapshot' } });
    r.socket.close();
    await eventually(async () => app.admin.connections, (n) => n === 0, 5_000, 50);
  });

  it('the page shows the stage, its performers with live levels (muted or not), and the workers with CPU', async () => {
    const stage = await createStage(app, 'Admin view');
    const perfBrowser = await launchPerformerBrowser(toneWav(tmp, 440));
    browsers.push(perfBrowser);
    const loud = await joinAsPerformer(perfBrowser, stage.performerUrl, 'Loud');
    const quiet = await joinAsPerformer(perfBrowser, stage.performerUrl, 'Quiet');
    await quiet.getByRole('button', { name: 'Mute' }).click();
    await transition(app, stage.id, 'start');
    const ids = await Promise.all([loud, quiet].map((p) => p.evaluate(() => window.stageDebug.performerId())));
    const [loudId, quietId] = ids as [string, string];

    const adminBrowser = await launchBrowser();
    browsers.push(adminBrowser);
    const page = await adminBrowser.newPage();
    const pageErrors: string[] = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    await page.goto(`${app.url}/admin#token=${encodeURIComponent(TEST_ADMIN_TOKEN)}`);
    await page.waitForFunction(() => document.body.dataset['state'] === 'live', null, { timeout: 15_000 });
    expect(await page.evaluate(() => location.href), 'the token is taken out of the address bar').to.equal(`${app.url}/admin`);

    // The stage with both performers, one muted, and the mix on air.
    const snapOf = () => page.evaluate(() => window.adminDebug.snapshot());
    const snap = await eventually(snapOf, (s) => {
      const st = s?.stages.find((x) => x.id === stage.id);
      return !!st && st.performers.length === 2 && st.performers.every((p) => p.onAir) && st.consumers === 4 && st.performers.some((p) => p.muted);
    }, 20_000, 250);
    const st = snap!.stages.find((x) => x.id === stage.id)!;
    expect(st).to.include({ title: 'Admin view', status: 'live', otherMixInputs: 0, consumers: 4 });
    expect(st.performers.find((p) => p.id === quietId)).to.include({ displayName: 'Quiet', muted: true, onAir: true, publishing: true, consumers: 1 });
    expect(st.performers.find((p) => p.id === loudId)).to.include({ displayName: 'Loud', muted: false, onAir: true, consumers: 1 });
    expect(st.ffmpeg!.pid).to.equal(app.registry.get(stage.id)!.broadcast!.mixer.ffmpeg.pid);
    expect(st.onAirSeconds).to.be.above(0);
    expect(st.worker).to.be.a('number');
    expect(st.archive).to.include({ status: 'recording', error: null });

    // Levels: the unmuted tone is loud on its meter; the muted performer is silent.
    const levels = await eventually(
      () => page.evaluate(() => window.adminDebug.levels()),
      (l) => (l[loudId] ?? -127) > -30,
      10_000,
      100,
    );
    const quietSamples: number[] = [];
    const loudSamples: number[] = [];
    for (let i = 0; i < 10; i++) {
      const l = await page.evaluate(() => window.adminDebug.levels());
      loudSamples.push(l[loudId] ?? -127);
      quietSamples.push(l[quietId] ?? -127);
      await sleep(200);
    }
    console.log(`      levels (dBov): loud ${loudSamples.join(', ')}; muted ${quietSamples.join(', ')}`);
    expect(levels[loudId]).to.be.above(-30);
    expect(Math.min(...loudSamples), 'the playing tone stays loud').to.be.above(-30);
    expect(Math.max(...quietSamples), 'the muted performer stays silent').to.be.below(-60);

    // What the page renders.
    const row = (id: string) => page.locator(`section.stage[data-stage-id="${stage.id}"] tr[data-performer-id="${id}"]`);
    await eventually(async () => (await row(loudId).locator('.level').textContent()) ?? '', (t) => /^-\d+(\.\d)? dB$/.test(t) && parseFloat(t) > -30, 5_000, 100);
    expect(await row(loudId).textContent()).to.include('Loud').and.include('on air');
    expect(await row(quietId).textContent()).to.include('Quiet').and.include('muted');
    expect(await row(quietId).locator('.level').textContent()).to.equal('silent');
    expect(await row(loudId).locator('meter').evaluate((m) => (m as HTMLMeterElement).value)).to.be.above(-30);
    const stageText = (await page.locator(`section.stage[data-stage-id="${stage.id}"]`).textContent()) ?? '';
    // The state in the page's words (English here), the badge keeping the status code for scripts.
    expect(stageText).to.include('Admin view').and.include('On air').and.include('recording');
    expect(await page.locator(`section.stage[data-stage-id="${stage.id}"] .badge`).getAttribute('data-status')).to.equal('live');
    const workerRows = await page.locator('#workers tbody tr').allTextContents();
    expect(workerRows).to.have.length(app.pool.workers.length);
    for (const w of app.pool.workers) {
      const text = await page.locator(`#workers tr[data-worker="${w.index}"]`).textContent();
      expect(text).to.include(String(w.worker.pid)).and.match(/\d+\.\d %/);
    }

    // Unmuting brings the second meter up: the levels are live, not a one-off.
    await quiet.getByRole('button', { name: 'Unmute' }).click();
    const after = await eventually(() => page.evaluate(() => window.adminDebug.levels()), (l) => (l[quietId] ?? -127) > -30, 10_000, 100);
    expect(after[quietId]).to.be.above(-30);

    // The levels stream is throttled: at most 5 messages a second per stage.
    const raw = await connectAdmin(app.url, { auth: { token: TEST_ADMIN_TOKEN } });
    if (!('socket' in raw)) throw new Error('admin refused');
    sockets.push(raw.socket);
    const received: { stageId: string; levels: AdminLevel[] }[] = [];
    raw.socket.on('audioLevels', (m: { stageId: string; levels: AdminLevel[] }) => received.push(m));
    await sleep(3000);
    raw.socket.close();
    const perSecond = received.filter((m) => m.stageId === stage.id).length / 3;
    console.log(`      audioLevels messages: ${perSecond.toFixed(1)}/s for the stage`);
    expect(perSecond).to.be.within(2, 5.5);
    expect(pageErrors).to.deep.equal([]);
    await transition(app, stage.id, 'stop');
  });

  it('a wrong token on the page shows the error and no data; the right one typed in then connects', async () => {
    const browser = await launchBrowser();
    browsers.push(browser);
    const page: Page = await browser.newPage();
    await page.goto(`${app.url}/admin#token=definitely-not-the-token`);
    await page.waitForFunction(() => document.body.dataset['state'] === 'error', null, { timeout: 10_000 });
    expect(await page.locator('#error').textContent()).to.match(/wrong admin token/);
    await sleep(1500);
    expect(await page.evaluate(() => window.adminDebug.snapshot())).to.equal(null);
    expect(await page.locator('#dashboard').isHidden()).to.equal(true);
    expect(await page.locator('#workers tbody tr').count()).to.equal(0);

    await page.getByLabel('Admin token').fill(TEST_ADMIN_TOKEN);
    await page.getByRole('button', { name: 'Connect' }).click();
    await page.waitForFunction(() => document.body.dataset['state'] === 'live' && window.adminDebug.snapshot() !== null, null, { timeout: 10_000 });
    expect(await page.locator('#error').textContent()).to.equal('');
    expect(await page.locator('#workers tbody tr').count()).to.equal(app.pool.workers.length);
  });

  it('after too many failed logins an address is refused for a while, even with the right token', async () => {
    let attempts = 0;
    let last: Awaited<ReturnType<typeof connectAdmin>> | null = null;
    while (attempts < 40) {
      attempts++;
      last = await connectAdmin(app.url, { auth: { token: `wrong-${attempts}` } });
      if ('refused' in last && last.refused.code === 'RATE_LIMITED') break;
    }
    expect(last && 'refused' in last && last.refused.code, `refused after ${attempts} attempts`).to.equal('RATE_LIMITED');
    expect(attempts).to.be.within(15, 25);
    const right = await connectAdmin(app.url, { auth: { token: TEST_ADMIN_TOKEN } });
    expect('refused' in right && right.refused.code).to.equal('RATE_LIMITED');
    if ('refused' in right) expect(right.refused.message).to.match(/too many failed admin logins; retry in \d+ s/);
    // The bucket refills (one attempt a second).
    await sleep(1200);
    const later = await connectAdmin(app.url, { auth: { token: TEST_ADMIN_TOKEN } });
    expect('socket' in later).to.equal(true);
    if ('socket' in later) later.socket.close();
  });
});

describe('admin and metrics while PostgreSQL is unreachable', function () {
  this.timeout(120_000);
  let tmp: TempDir;
  let pg: PostgresServer;
  let app: App;
  const sockets: Socket[] = [];

  before(async () => {
    tmp = new TempDir();
    pg = await startPostgres();
    app = await startTestApp({ DATABASE_URL: pg.url, CDN_DIR: tmp.file('cdn') });
  });
  after(async () => {
    for (const s of sockets) s.close();
    await pg?.resume().catch(() => undefined);
    await app?.close();
    await pg?.stop();
    tmp?.remove();
  });

  it('snapshots keep coming from what is in memory and name the problem; /metrics still answers', async () => {
    const stage = await createStage(app, 'No database');
    await transition(app, stage.id, 'start');
    const r = await connectAdmin(app.url, { auth: { token: TEST_ADMIN_TOKEN } });
    if (!('socket' in r)) throw new Error(`refused: ${r.message}`);
    sockets.push(r.socket);
    const snaps: { at: number; snap: AdminSnapshot }[] = [];
    r.socket.on('snapshot', (snap: AdminSnapshot) => snaps.push({ at: Date.now(), snap }));
    await eventually(async () => snaps.at(-1)?.snap, (s) => s?.stages[0]?.archive?.status === 'recording' && s.stages[0].mixerLagSeconds !== null, 15_000, 100);
    expect(snaps.at(-1)!.snap.problems).to.deep.equal([]);

    await pg.pause();
    const pausedAt = Date.now();
    const during = await eventually(async () => snaps.at(-1), (s) => !!s && s.at > pausedAt + 500 && s.snap.problems.length > 0, 10_000, 100);
    console.log(`      database down; problems: ${during!.snap.problems.join(' | ')}`);
    const st = during!.snap.stages.find((x) => x.id === stage.id)!;
    expect(st.status).to.equal('live');
    expect(st.ffmpeg!.pid).to.be.a('number');
    expect(st.mixerLagSeconds).to.be.a('number').and.below(3);
    expect(during!.snap.workers).to.have.length(app.pool.workers.length);
    const t0 = Date.now();
    const res = await fetch(`${app.url}/metrics`, { headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}` } });
    const text = await res.text();
    const scrapeMs = Date.now() - t0;
    console.log(`      /metrics with the database down: ${res.status} in ${scrapeMs} ms`);
    expect(res.status).to.equal(200);
    expect(scrapeMs).to.be.below(3000);
    expect(text).to.match(/^stage_radio_stages_live 1$/m);
    expect(text).to.match(new RegExp(`^stage_radio_mixer_lag_seconds\\{stage="${stage.id}"\\} `, 'm'));

    const windowStart = Date.now();
    await sleep(3000);
    const inWindow = snaps.filter((x) => x.at >= windowStart).length;
    console.log(`      ${inWindow} snapshots in 3 s with the database down`);
    expect(inWindow, 'snapshots keep coming').to.be.at.least(2);

    await pg.resume();
    const back = await eventually(async () => snaps.at(-1)!.snap, (s) => s.problems.length === 0 && s.stages.some((x) => x.id === stage.id && x.title === 'No database'), 20_000, 200);
    expect(back.totals.stagesLive).to.equal(1);
    await transition(app, stage.id, 'stop');
  });
});
