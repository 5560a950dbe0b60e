// A SIGKILLed mediasoup worker is replaced, its stage is rebuilt, and the performers' pages rejoin by themselves.
import { expect } from 'chai';
import type { App } from '../../services/app.ts';
import { TEST_ADMIN_TOKEN, createStage, startTestApp } from '../support/app.ts';
import { BrowserSet, eventually, hearsAt } from '../support/browser.ts';
import { connectClient } from '../support/client.ts';
import { TempDir } from '../support/media.ts';
import { decodeToPcm, toneDb } from '../support/audio.ts';
import { PlaylistWatcher } from '../support/hls.ts';

const HEARD_DB = -60;

describe('e2e: mediasoup worker death', function () {
  this.timeout(120_000);
  let app: App;
  let tmp: TempDir;
  let browsers: BrowserSet;

  before(async () => {
    tmp = new TempDir();
    browsers = new BrowserSet(tmp);
    app = await startTestApp({ MEDIASOUP_WORKERS: '2', CDN_DIR: tmp.file('cdn') });
  });
  after(async () => {
    await browsers?.close();
    await app?.close();
    tmp?.remove();
  });

  it('is replaced within 2 s; new stages work; the affected pages rejoin and hear each other again; the mix never stalls', async () => {
    const stage = await createStage(app, 'Survivors');
    const a = await browsers.performer(stage.performerUrl, 440, 'Ann');
    const b = await browsers.performer(stage.performerUrl, 660, 'Bob');
    await eventually(() => hearsAt(a, [660]), ([f]) => f! > HEARD_DB, 10_000);
    await eventually(() => hearsAt(b, [440]), ([f]) => f! > HEARD_DB, 10_000);
    const started = await fetch(`${app.url}/api/stages/${stage.id}/start`, { method: 'POST', headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}` } });
    expect(started.status).to.equal(200);
    const watcher = new PlaylistWatcher(app.registry.get(stage.id)!.broadcast!.mixer.playlistPath);
    await watcher.waitFor((w) => w.segments.length >= 3, 15_000);

    const media = app.registry.get(stage.id)!;
    const deadPid = media.worker.pid;
    const oldIds = await Promise.all([a, b].map((p) => p.evaluate(() => window.stageDebug.performerId())));
    const joinsBefore = await Promise.all([a, b].map((p) => p.evaluate(() => window.stageDebug.joins())));
    const replaced = new Promise<number>((resolve) => app.pool.once('workerReplaced', () => resolve(Date.now())));
    const killedAt = Date.now();
    process.kill(deadPid, 'SIGKILL');
    const replacedAt = await replaced;
    expect(replacedAt - killedAt, 'worker replaced within 2 s').to.be.lessThan(2000);
    expect(app.pool.workers.map((w) => w.worker.pid)).to.not.include(deadPid);
    expect(app.pool.workers).to.have.length(2);

    // Both pages notice, rejoin on their own as the same performers (their resume tokens) and publish again.
    for (const [page, old, joins] of [[a, oldIds[0], joinsBefore[0]], [b, oldIds[1], joinsBefore[1]]] as const) {
      await page.waitForFunction((n) => document.body.dataset['state'] === 'publishing' && window.stageDebug.joins() > (n ?? 0), joins, { timeout: 15_000 });
      expect(await page.evaluate(() => window.stageDebug.performerId()), 'the same performer').to.equal(old);
    }
    expect(app.registry.get(stage.id)!.worker.pid, 'the stage moved to the new worker').to.not.equal(deadPid);
    const aHears = await eventually(() => hearsAt(a, [660]), ([f]) => f! > HEARD_DB, 10_000);
    const bHears = await eventually(() => hearsAt(b, [440]), ([f]) => f! > HEARD_DB, 10_000);
    expect(aHears[0], 'Ann hears Bob again').to.be.greaterThan(HEARD_DB);
    expect(bHears[0], 'Bob hears Ann again').to.be.greaterThan(HEARD_DB);

    // The mix ran through it all: no pause between segments, FFmpeg never restarted, and both performers are back in it.
    const mixer = app.registry.get(stage.id)!.broadcast!.mixer;
    await eventually(async () => mixer.attached.size, (n) => n === 2, 10_000);
    const count = watcher.segments.length;
    await watcher.waitFor((w) => w.segments.length >= count + 3, 10_000);
    watcher.stop();
    let maxGap = 0;
    for (let i = 1; i < watcher.segments.length; i++) maxGap = Math.max(maxGap, watcher.segments[i]!.arrivedAt - watcher.segments[i - 1]!.arrivedAt);
    expect(maxGap, 'largest pause between segments across the worker death (ms)').to.be.at.most(1500);
    expect(mixer.ffmpeg.restarts).to.equal(0);
    const last = decodeToPcm(watcher.concatInput(watcher.segments.length - 2));
    expect(toneDb(last, 440), 'Ann is back on air').to.be.above(-40);
    expect(toneDb(last, 660), 'Bob is back on air').to.be.above(-40);

    // A new stage after the crash works end to end on the signaling side.
    const fresh = await createStage(app, 'After the crash');
    const c = await connectClient(app.url);
    try {
      expect((await c.request('join', { stageId: fresh.id, key: fresh.performerKey, displayName: 'New' })).ok).to.equal(true);
      expect((await c.request('createTransport', { direction: 'send' })).ok).to.equal(true);
    } finally {
      c.close();
    }
  });
});
