// Latency as people hear it, in real Chromium: a performer's microphone (a fake capture device playing a WAV of tone
// bursts at irregular intervals) → another performer's ear through the SFU, and → a listener's ear through the live
// HLS and the listener page's hls.js (its own settings, i.e. hls.js defaults but for the back buffer and a gentle
// catch-up), for a listener who tunes in as the show starts and two who tune in during it (once the live playlist is
// full): one with LL-HLS (hls.js's default lowLatencyMode), one with the page told to play classic HLS.
//
// Each page gets a probe (a Playwright init script) on every source node the page itself feeds into its AudioContext:
// the microphone's stream and remote performers' streams (createMediaStreamSource) on the performer page, the <audio>
// element (createMediaElementSource) on the listener page. The probe measures the burst tone's level in every 256-sample
// block as the audio graph renders it, stamped with the wall clock. Mic, performer and listener are measured the same
// way, so the probe's own delay (a block or two) cancels out; what the output device adds after the graph is not
// counted. Burst onsets are matched across pages: for a performer, the first onset within a second of the mic's; for
// a listener (seconds behind, more than the bursts' spacing), at the one delay most bursts agree on (the irregular
// spacing makes it unique).
import fs from 'node:fs';
import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import type { App } from '../services/app.ts';
import { PLAYLIST_NAME } from '../pipelines/mixer/ffmpegArgs.ts';
import { parseMediaPlaylist } from '../pipelines/hls/playlist.ts';
import { createStage, transition } from '../test/support/app.ts';
import { launchBrowser, launchPerformerBrowser } from '../test/support/browser.ts';
import { TempDir } from '../test/support/media.ts';
import { PULSE_HZ, matchDelays, probedPage, tapOnsets, writeWav, type Tap } from '../test/support/earProbe.ts';
import { percentile } from './latency.ts';

function listedSegments(playlist: string): number {
  try {
    return parseMediaPlaylist(fs.readFileSync(playlist, 'utf8')).segments.length;
  } catch {
    return 0;
  }
}

export interface BrowserLatency {
  listenSeconds: number;
  pulses: number;
  performer: { matched: number; latenciesMs: number[]; medianMs: number; p95Ms: number };
  /** A listener who tuned in during the show (the live playlist full): the listener page, LL-HLS (hls.js defaults). */
  listener: ListenerLatency;
  /** Tuned in at the same moment, the page told to play classic HLS (`?lowLatency=0`: hls.js lowLatencyMode off). */
  classicListener: ListenerLatency;
  /** A listener who tuned in as the show started. */
  earlyListener: ListenerLatency;
  /** The onsets found, seconds from the start of listening (for a look at what was matched). */
  onsets: { mic: number[]; performer: number[]; listener: number[]; classicListener: number[]; earlyListener: number[] };
}

export interface ListenerLatency {
  matched: number;
  latenciesMs: number[];
  medianMs: number;
  p95Ms: number;
  startedAfterMs: number;
  /** Median of the last five bursts − median of the first five: how far playback drew nearer (−) over the window. */
  driftMs: number;
}

const median = (xs: number[]) => percentile(xs, 50);
function listenerLatency(latenciesMs: number[], startedAfterMs: number): ListenerLatency {
  return {
    matched: latenciesMs.length,
    latenciesMs,
    medianMs: median(latenciesMs),
    p95Ms: percentile(latenciesMs, 95),
    startedAfterMs,
    driftMs: latenciesMs.length >= 10 ? median(latenciesMs.slice(-5)) - median(latenciesMs.slice(0, 5)) : NaN,
  };
}

async function joinPerformer(browser: Browser, performerUrl: string, name: string): Promise<Page> {
  const page = await probedPage(browser);
  page.on('pageerror', (err) => process.stderr.write(`[page ${name}] ${err.message}\n`));
  await page.goto(`${performerUrl}&name=${encodeURIComponent(name)}&raw=1`);
  await page.getByRole('button', { name: 'Join stage' }).click();
  await page.waitForFunction(() => document.body.dataset['state'] === 'publishing', null, { timeout: 20_000 });
  return page;
}

export async function benchBrowserLatency(opts: { app: App; listenSeconds: number; log: (s: string) => void }): Promise<BrowserLatency> {
  const { app } = opts;
  const tmp = new TempDir();
  const browsers: Browser[] = [];
  try {
    const pulses = path.join(tmp.path, 'pulses.wav');
    const silence = path.join(tmp.path, 'silence.wav');
    writeWav(pulses, 120, true);
    writeWav(silence, 10, false);
    const stage = await createStage(app, 'Bench browser latency');
    const launch = async (wav: string) => {
      const b = await launchPerformerBrowser(wav);
      browsers.push(b);
      return b;
    };
    const ann = await joinPerformer(await launch(pulses), stage.performerUrl, 'Ann');
    const bob = await joinPerformer(await launch(silence), stage.performerUrl, 'Bob');
    await transition(app, stage.id, 'start');
    // Three listeners (pages of one browser): one tunes in as the show starts, two during the show, once the live
    // playlist is full. With LL-HLS hls.js starts PART-HOLD-BACK behind the live edge; as classic HLS, three target
    // durations behind it. What the page takes to start playing adds to that, and with few segments listed it starts
    // nearer the edge. So when a listener tunes in matters.
    const lb = await launchBrowser();
    browsers.push(lb);
    const listen = async (label: string, query = '') => {
      const page = await probedPage(lb);
      const t0 = Date.now();
      await page.goto(`${app.url}/listen/${stage.id}${query}`);
      await page.waitForFunction(() => document.body.dataset['state'] === 'playing', null, { timeout: 30_000 });
      opts.log(`browser: the ${label} listener plays (${Date.now() - t0} ms after opening the page)`);
      return { page, startedAfterMs: Date.now() - t0 };
    };
    const early = await listen('early');
    const playlist = path.join(app.stages.links.hlsDir(stage.id), PLAYLIST_NAME);
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline && listedSegments(playlist) < app.config.hls.listSize) await new Promise((r) => setTimeout(r, 200));
    const [late, classic] = await Promise.all([listen('mid-show'), listen('mid-show classic', '?lowLatency=0')]);
    const listenFrom = Date.now();
    opts.log(`browser: listening ${opts.listenSeconds} s`);
    await new Promise((r) => setTimeout(r, opts.listenSeconds * 1000));
    // Bursts from the listening window on: the performers' connections have settled by then (WebRTC's jitter buffer
    // starts large and shrinks in the first seconds).
    const mic = tapOnsets((await ann.evaluate(() => window.__benchTaps.mic)) as Tap).filter((t) => t >= listenFrom);
    const heardByBob = tapOnsets((await bob.evaluate(() => window.__benchTaps.remote)) as Tap);
    const heardLate = tapOnsets((await late.page.evaluate(() => window.__benchTaps.element)) as Tap);
    const heardClassic = tapOnsets((await classic.page.evaluate(() => window.__benchTaps.element)) as Tap);
    const heardEarly = tapOnsets((await early.page.evaluate(() => window.__benchTaps.element)) as Tap);
    await transition(app, stage.id, 'stop');
    const rel = (xs: number[]) => xs.map((t) => Number(((t - listenFrom) / 1000).toFixed(3)));
    const perf = matchDelays(mic, heardByBob, 0, 1000);
    const lis = matchDelays(mic, heardLate, 0, 20_000);
    const lisClassic = matchDelays(mic, heardClassic, 0, 20_000);
    const lisEarly = matchDelays(mic, heardEarly, 0, 20_000);
    const r: BrowserLatency = {
      listenSeconds: opts.listenSeconds,
      pulses: mic.length,
      performer: { matched: perf.length, latenciesMs: perf, medianMs: percentile(perf, 50), p95Ms: percentile(perf, 95) },
      listener: listenerLatency(lis, late.startedAfterMs),
      classicListener: listenerLatency(lisClassic, classic.startedAfterMs),
      earlyListener: listenerLatency(lisEarly, early.startedAfterMs),
      onsets: { mic: rel(mic), performer: rel(heardByBob), listener: rel(heardLate), classicListener: rel(heardClassic), earlyListener: rel(heardEarly) },
    };
    opts.log(
      `browser: mic → performer median ${r.performer.medianMs.toFixed(0)} ms (${r.performer.matched}/${mic.length} bursts); ` +
        `mic → listener median ${r.listener.medianMs.toFixed(0)} ms (${r.listener.matched}/${mic.length}), classic HLS ${r.classicListener.medianMs.toFixed(0)} ms (${r.classicListener.matched}/${mic.length}), ` +
        `${r.earlyListener.medianMs.toFixed(0)} ms for the one who tuned in at the start (${r.earlyListener.matched}/${mic.length})`,
    );
    return r;
  } finally {
    await Promise.all(browsers.map((b) => b.close().catch(() => undefined)));
    tmp.remove();
  }
}
