// Mic → listener ear with Low-Latency HLS, in real Chromium, as a listener hears it: a performer's fake microphone
// plays tone bursts at irregular intervals; a listener page (hls.js with its defaults: lowLatencyMode on) tunes in
// during the show, once the live window is full; burst onsets are measured in both pages' own audio graphs on one
// clock (test/support/earProbe.ts, the same probe as the browser benchmark). A second listener plays the same
// playlist with a classic hls.js configuration (lowLatencyMode off): it must play, and shows what LL saves.
import path from 'node:path';
import { expect } from 'chai';
import type { Browser, Page } from 'playwright-core';
import type { App } from '../../services/app.ts';
import { createStage, startTestApp, transition } from '../support/app.ts';
import { launchBrowser, launchPerformerBrowser } from '../support/browser.ts';
import { matchDelays, probedPage, tapOnsets, writeWav, type Tap } from '../support/earProbe.ts';
import { PlaylistWatcher } from '../support/hls.ts';
import { TempDir } from '../support/media.ts';

const LISTEN_SECONDS = Number(process.env['LL_LATENCY_SECONDS'] ?? 40);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

describe('LL-HLS: mic → listener ear', function () {
  this.timeout(LISTEN_SECONDS * 1000 + 120_000);
  let tmp: TempDir;
  let app: App;
  const browsers: Browser[] = [];

  before(async () => {
    tmp = new TempDir();
    app = await startTestApp({ CDN_DIR: tmp.file('cdn') });
  });
  after(async () => {
    await Promise.all(browsers.map((b) => b.close().catch(() => undefined)));
    await app?.close();
    tmp?.remove();
  });

  it(`a listener tuned in mid-show on hls.js's defaults hears the performer within 2.5 s (median over ${LISTEN_SECONDS} s); a classic hls.js config plays the same playlist`, async () => {
    const pulses = path.join(tmp.path, 'pulses.wav');
    writeWav(pulses, LISTEN_SECONDS + 60, true);
    const stage = await createStage(app, 'LL latency');
    const performerBrowser = await launchPerformerBrowser(pulses);
    browsers.push(performerBrowser);
    const ann = await probedPage(performerBrowser);
    await ann.goto(`${stage.performerUrl}&name=Ann&raw=1`);
    await ann.getByRole('button', { name: 'Join stage' }).click();
    await ann.waitForFunction(() => document.body.dataset['state'] === 'publishing', null, { timeout: 20_000 });
    await transition(app, stage.id, 'start');
    // Mid-show: the live window is full before the listeners come.
    const watcher = new PlaylistWatcher(path.join(app.stages.links.hlsDir(stage.id), 'index.m3u8'));
    await watcher.waitFor((w) => w.segments.length >= app.config.hls.listSize, 30_000);
    watcher.stop();
    const lb = await launchBrowser();
    browsers.push(lb);
    const listen = async (query: string): Promise<Page> => {
      const page = await probedPage(lb);
      await page.goto(`${app.url}/listen/${stage.id}${query}`);
      await page.waitForFunction(() => document.body.dataset['state'] === 'playing', null, { timeout: 30_000 });
      return page;
    };
    const ll = await listen('');
    const classic = await listen('?lowLatency=0');
    expect(await ll.evaluate(() => document.body.dataset['lowLatency'])).to.equal('true');
    expect(await classic.evaluate(() => document.body.dataset['lowLatency'])).to.equal('false');
    const from = Date.now();
    await new Promise((r) => setTimeout(r, LISTEN_SECONDS * 1000));
    const mic = tapOnsets((await ann.evaluate(() => window.__benchTaps.mic)) as Tap).filter((t) => t >= from);
    const heardLl = tapOnsets((await ll.evaluate(() => window.__benchTaps.element)) as Tap);
    const heardClassic = tapOnsets((await classic.evaluate(() => window.__benchTaps.element)) as Tap);
    const behind = Number(await ll.evaluate(() => document.body.dataset['behind']));
    await transition(app, stage.id, 'stop');
    const llDelays = matchDelays(mic, heardLl, 0, 20_000);
    const classicDelays = matchDelays(mic, heardClassic, 0, 20_000);
    console.log(
      `      mic → ear, LL (hls.js defaults): median ${median(llDelays).toFixed(0)} ms (${llDelays.length}/${mic.length} bursts; ${llDelays.map((d) => Math.round(d)).join(',')}); ` +
        `classic: median ${median(classicDelays).toFixed(0)} ms (${classicDelays.length}/${mic.length}); the LL page said ${behind.toFixed(2)} s behind live`,
    );
    expect(llDelays.length, 'bursts heard by the LL listener').to.be.at.least(mic.length * 0.8);
    expect(median(llDelays), 'mic → LL listener, median (ms)').to.be.at.most(2500);
    expect(classicDelays.length, 'the classic hls.js listener plays the same playlist').to.be.at.least(mic.length * 0.8);
    expect(median(classicDelays), 'and LL is the nearer of the two').to.be.greaterThan(median(llDelays));
    expect(behind, "the page's own 'behind live' reads about what is measured").to.be.within(0, median(llDelays) / 1000 + 0.5);
  });
});
