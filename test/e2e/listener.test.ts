// The listener page plays a stage's live HLS with hls.js in real Chromium: ffmpeg writes a live-style HLS of a
// 523 Hz tone into CDN_DIR/live/<stageId>/, the app serves it at /live, and the page is checked by listening.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import type { Browser, Page } from 'playwright-core';
import type { App } from '../../services/app.ts';
import { createStage, startTestApp } from '../support/app.ts';
import { eventually, launchBrowser } from '../support/browser.ts';
import { TempDir } from '../support/media.ts';

const TONE_HZ = 523;
const OFF_HZ = 1500;
const HEARD_DB = -60;
const ABOVE_DB = 30;

/** Strongest level (dB) within ±tolHz of each frequency, in what the listener page plays. */
async function levels(page: Page, freqs: number[], tolHz = 15): Promise<number[]> {
  const { binHz, db } = await page.evaluate(() => window.listenerDebug.spectrum());
  if (db.length === 0) return freqs.map(() => -Infinity);
  return freqs.map((f) => {
    let best = -Infinity;
    for (let i = Math.max(0, Math.floor((f - tolHz) / binHz)); i <= Math.min(db.length - 1, Math.ceil((f + tolHz) / binHz)); i++) {
      best = Math.max(best, db[i] ?? -Infinity);
    }
    return best;
  });
}

const pageState = (page: Page) => page.evaluate(() => document.body.dataset['state']);

describe('e2e: the listener page plays live HLS', function () {
  this.timeout(120_000);
  let app: App;
  let tmp: TempDir;
  const ffmpegs: ChildProcess[] = [];
  let ffmpegLog = '';
  let stageId: string;
  const browsers: Browser[] = [];
  const pageErrors: string[] = [];

  before(async () => {
    tmp = new TempDir();
    app = await startTestApp({ CDN_DIR: tmp.path });
    stageId = (await createStage(app, 'Tone radio')).id;
    // The stage stays idle (nothing sets it live through the API yet): the page plays an idle stage whose playlist exists.
    startHls(stageId);
    // Wait for a playlist with three segments, so the player starts on a usable live window.
    const playlist = path.join(tmp.path, 'live', stageId, 'index.m3u8');
    const segments = await eventually(
      async () => (fs.existsSync(playlist) ? (fs.readFileSync(playlist, 'utf8').match(/^seg_\d+\.m4s$/gm) ?? []).length : 0),
      (n) => n >= 3,
      20_000,
    );
    expect(segments, `ffmpeg wrote a playlist: ${ffmpegLog}`).to.be.at.least(3);
  });

  after(async () => {
    await Promise.all(browsers.map((b) => b.close()));
    for (const ff of ffmpegs) {
      if (ff.exitCode !== null || ff.signalCode !== null) continue;
      const exited = once(ff, 'exit');
      ff.kill('SIGTERM'); // by its PID
      await exited;
    }
    await app?.close();
    tmp?.remove();
  });

  /** A live-style HLS of the tone, as the mixer will write it, into CDN_DIR/live/<stageId>/. */
  function startHls(id: string): void {
    const dir = path.join(tmp.path, 'live', id);
    fs.mkdirSync(dir, { recursive: true });
    const ff = spawn(
      'ffmpeg',
      ['-nostdin', '-v', 'error', '-re', '-f', 'lavfi', '-i', `sine=frequency=${TONE_HZ}:sample_rate=48000`,
        '-c:a', 'aac', '-b:a', '128k', '-f', 'hls', '-hls_time', '1', '-hls_list_size', '6',
        '-hls_flags', 'program_date_time+temp_file+omit_endlist',
        // fMP4, named as the live writer names its files (the origin serves no other names).
        '-hls_segment_type', 'fmp4', '-hls_fmp4_init_filename', 'init_0.mp4',
        '-hls_segment_filename', path.join(dir, 'seg_%05d.m4s'), path.join(dir, 'index.m3u8')],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    ff.stderr!.on('data', (d: Buffer) => (ffmpegLog += d.toString()));
    ffmpegs.push(ff);
  }

  async function open(browser: Browser, onState: (s: string) => void = () => undefined, pathAndQuery = `/listen/${stageId}`): Promise<Page> {
    const page = await browser.newPage();
    page.on('console', (msg) => {
      const m = /^listener-state:(.*)$/.exec(msg.text());
      if (m) onState(m[1]!);
    });
    page.on('pageerror', (err) => pageErrors.push(err.message));
    page.on('console', (msg) => {
      // Expected 404s: no favicon, the unknown stage, a playlist looked for before the show starts.
      const expected404 = /\/(favicon\.ico|doesnotexist|index\.m3u8)$/.test(msg.location().url);
      if (msg.type() === 'error' && !expected404) process.stderr.write(`[listener console] ${msg.text()}\n`);
    });
    // Every page.evaluate (waitForFunction, locators) runs as a user gesture, which would lift the autoplay block.
    // The states are therefore reported to the console by this init script, and waited for without evaluating.
    await page.addInitScript(() => {
      let last: string | undefined;
      new MutationObserver(() => {
        const s = document.body?.dataset['state'];
        if (s !== last) console.log(`listener-state:${(last = s)}`);
      }).observe(document, { subtree: true, attributes: true, attributeFilter: ['data-state'] });
    });
    await page.goto(`${app.url}${pathAndQuery}`);
    return page;
  }

  it('autoplay refused: Play starts hls.js, and the page plays the tone with advancing time', async () => {
    const browser = await launchBrowser({ autoplay: false });
    browsers.push(browser);
    const states: string[] = [];
    const page = await open(browser, (s) => states.push(s));
    await eventually(async () => states, (s) => s.includes('offair') || s.includes('playing'), 15_000);
    expect(states, 'the page tried to play, was refused, and waits for Play').to.deep.equal(['loading', 'offair']);
    expect(await page.locator('#stage-title').textContent()).to.equal('Tone radio');
    expect(await page.locator('#badge').textContent()).to.equal('Off air');
    expect(await page.locator('#status').textContent()).to.match(/press play/i);
    expect(await page.getByLabel('Volume').inputValue()).to.equal('1');

    await page.getByRole('button', { name: 'Play' }).click();
    await page.waitForFunction(() => document.body.dataset['state'] === 'playing', null, { timeout: 20_000 });
    expect(await page.evaluate(() => document.body.dataset['engine'])).to.equal('hls.js');
    expect(await page.evaluate(() => window.listenerDebug.engine)).to.equal('hls.js');
    expect(page.workers().length, "hls.js's transmuxer runs in its blob: worker (allowed by the CSP)").to.be.at.least(1);

    const heard = await eventually(() => levels(page, [TONE_HZ, OFF_HZ]), ([on, off]) => on! > HEARD_DB && on! - off! >= ABOVE_DB, 10_000);
    expect(heard[0], `${TONE_HZ} Hz heard: ${heard}`).to.be.greaterThan(HEARD_DB);
    expect(heard[0]! - heard[1]!, `${TONE_HZ} Hz well above ${OFF_HZ} Hz: ${heard}`).to.be.at.least(ABOVE_DB);

    const t0 = await page.evaluate(() => window.listenerDebug.currentTime());
    await new Promise((r) => setTimeout(r, 2_500));
    const t1 = await page.evaluate(() => window.listenerDebug.currentTime());
    expect(t1 - t0, `currentTime advances (${t0} → ${t1})`).to.be.greaterThan(1.5);
    expect(await pageState(page)).to.equal('playing');

    await page.getByRole('button', { name: 'Stop' }).click();
    expect(await pageState(page)).to.equal('offair');
    const stopped = await page.evaluate(() => window.listenerDebug.currentTime());
    await new Promise((r) => setTimeout(r, 1_000));
    expect(await page.evaluate(() => window.listenerDebug.currentTime()), 'stopped').to.equal(stopped);
    expect(pageErrors, 'no page errors').to.deep.equal([]);
  });

  it('autoplay allowed: the page starts playing by itself', async () => {
    const browser = await launchBrowser();
    browsers.push(browser);
    const page = await open(browser);
    await page.waitForFunction(() => document.body.dataset['state'] === 'playing', null, { timeout: 20_000 });
    expect(await page.evaluate(() => document.body.dataset['engine'])).to.equal('hls.js');
    const heard = await eventually(() => levels(page, [TONE_HZ, OFF_HZ]), ([on, off]) => on! > HEARD_DB && on! - off! >= ABOVE_DB, 10_000);
    expect(heard[0], `${TONE_HZ} Hz heard: ${heard}`).to.be.greaterThan(HEARD_DB);
    expect(pageErrors, 'no page errors').to.deep.equal([]);
  });

  it('a page opened before the show finds the stream once it starts', async () => {
    const id = (await createStage(app, 'Later')).id;
    const browser = await launchBrowser();
    browsers.push(browser);
    const states: string[] = [];
    const page = await open(browser, (s) => states.push(s), `/listen/${id}`);
    await eventually(async () => states, (s) => s.includes('offair'), 10_000);
    expect(await page.locator('#status').textContent()).to.match(/nothing is on air/i);
    startHls(id);
    // Looked for again at the next status poll (every 5 s).
    await page.waitForFunction(() => document.body.dataset['state'] === 'playing', null, { timeout: 20_000 });
    const heard = await eventually(() => levels(page, [TONE_HZ, OFF_HZ]), ([on, off]) => on! > HEARD_DB && on! - off! >= ABOVE_DB, 10_000);
    expect(heard[0], `${TONE_HZ} Hz heard: ${heard}`).to.be.greaterThan(HEARD_DB);
    expect(pageErrors, 'no page errors').to.deep.equal([]);
  });

  it('an unknown stage is an error, not a player', async () => {
    const browser = await launchBrowser();
    browsers.push(browser);
    const page = await open(browser, undefined, '/listen/doesnotexist');
    await page.waitForFunction(() => document.body.dataset['state'] === 'error', null, { timeout: 10_000 });
    expect(await page.locator('#error').textContent()).to.match(/does not exist/);
    expect(await page.getByRole('button', { name: 'Play' }).isDisabled()).to.equal(true);
  });
});
