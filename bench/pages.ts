// The listener page's weight and its time to first audio, compressed (as served now) against uncompressed (as it was
// served before: Chromium asked for `Accept-Encoding: identity`), side by side in the same run, alternately, on a
// throttled link (10 Mbit/s down, 40 ms round trip: a good mobile connection) with the cache off, so the page's own
// transfer is what is measured. Time to first audio: from navigation to the audio element playing with its time
// advancing (autoplay allowed), on a stage on air.
import type { Browser, CDPSession } from 'playwright-core';
import type { App } from '../services/app.ts';
import { launchBrowser } from '../test/support/browser.ts';

export interface PageLoad {
  /** Bytes over the wire for the page's markup, script and stylesheet (encoded, as received). */
  pageBytes: number;
  /** Bytes over the wire for everything the page fetched until its first audio (playlists and segments too). */
  totalBytes: number;
  firstAudioMs: number;
}

export interface PagesBench {
  link: { downMbps: number; rttMs: number };
  rounds: number;
  compressed: PageLoad[];
  identity: PageLoad[];
  median: { compressed: PageLoad; identity: PageLoad };
}

const LINK = { downMbps: 10, upMbps: 5, rttMs: 40 };
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function loadOnce(browser: Browser, url: string, identity: boolean): Promise<PageLoad> {
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    const cdp: CDPSession = await context.newCDPSession(page);
    await cdp.send('Network.enable');
    await cdp.send('Network.setCacheDisabled', { cacheDisabled: true });
    await cdp.send('Network.emulateNetworkConditions', {
      offline: false,
      latency: LINK.rttMs,
      downloadThroughput: (LINK.downMbps * 1e6) / 8,
      uploadThroughput: (LINK.upMbps * 1e6) / 8,
    });
    if (identity) await cdp.send('Network.setExtraHTTPHeaders', { headers: { 'Accept-Encoding': 'identity' } });
    const urls = new Map<string, string>();
    let pageBytes = 0;
    let totalBytes = 0;
    cdp.on('Network.requestWillBeSent', (e: { requestId: string; request: { url: string } }) => urls.set(e.requestId, e.request.url));
    cdp.on('Network.loadingFinished', (e: { requestId: string; encodedDataLength: number }) => {
      totalBytes += e.encodedDataLength;
      const u = urls.get(e.requestId) ?? '';
      if (/\/listen\/|\/assets\//.test(u) && !u.endsWith('.map')) pageBytes += e.encodedDataLength;
    });
    const t0 = performance.now();
    await page.goto(url);
    await page.waitForFunction(() => document.body.dataset['state'] === 'playing' && window.listenerDebug.currentTime() > 0, null, { timeout: 60_000, polling: 10 });
    const firstAudioMs = performance.now() - t0;
    return { pageBytes, totalBytes, firstAudioMs };
  } finally {
    await context.close();
  }
}

/** `stageId`: a stage on air on `app`. */
export async function benchPages(opts: { app: App; stageId: string; rounds: number; log: (m: string) => void }): Promise<PagesBench> {
  const browser = await launchBrowser();
  const url = `${opts.app.url}/listen/${opts.stageId}`;
  const compressed: PageLoad[] = [];
  const identity: PageLoad[] = [];
  try {
    // One load of each first, not counted: Chromium's own start-up.
    await loadOnce(browser, url, false);
    for (let i = 0; i < opts.rounds; i++) {
      // Alternately, starting with each in turn: neither gets the quieter moments of the machine.
      for (const id of i % 2 === 0 ? [false, true] : [true, false]) (id ? identity : compressed).push(await loadOnce(browser, url, id));
    }
  } finally {
    await browser.close();
  }
  const med = (xs: PageLoad[]): PageLoad => ({ pageBytes: median(xs.map((x) => x.pageBytes)), totalBytes: median(xs.map((x) => x.totalBytes)), firstAudioMs: median(xs.map((x) => x.firstAudioMs)) });
  const result = { link: { downMbps: LINK.downMbps, rttMs: LINK.rttMs }, rounds: opts.rounds, compressed, identity, median: { compressed: med(compressed), identity: med(identity) } };
  opts.log(
    `listener page: ${(result.median.identity.pageBytes / 1024).toFixed(0)} KiB → ${(result.median.compressed.pageBytes / 1024).toFixed(0)} KiB; ` +
      `first audio ${result.median.identity.firstAudioMs.toFixed(0)} ms → ${result.median.compressed.firstAudioMs.toFixed(0)} ms`,
  );
  return result;
}
