// Real Debian Chromium through playwright-core, with a fake microphone playing a WAV file.
import { chromium, type Browser, type Page } from 'playwright-core';
import { toneWav, type TempDir } from './media.ts';

const CHROMIUM = process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium';

const COMMON_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/**
 * A browser without a fake microphone (listeners). Autoplay is allowed as for performers unless `autoplay: false`,
 * which keeps Chromium's default policy: media may only start after a user gesture (a Playwright click counts).
 */
export async function launchBrowser(opts: { autoplay?: boolean } = {}): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [...COMMON_ARGS, ...(opts.autoplay === false ? [] : ['--autoplay-policy=no-user-gesture-required'])],
  });
}

/** `args`: more Chromium switches (a host-resolver rule, a certificate pin). */
export async function launchPerformerBrowser(micWav: string, opts: { grantMic?: boolean; args?: string[] } = {}): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      ...COMMON_ARGS,
      '--autoplay-policy=no-user-gesture-required',
      // Without the fake UI, headless Chromium answers the permission prompt with a denial.
      ...(opts.grantMic === false ? [] : ['--use-fake-ui-for-media-stream']),
      '--use-fake-device-for-media-stream',
      `--use-file-for-fake-audio-capture=${micWav}`,
      '--allow-loopback-in-peer-connection',
      ...(opts.args ?? []),
    ],
  });
}

/**
 * Opens the performer page and joins; resolves once the page says it is publishing. With `raw` (the default) the page's
 * raw=1 turns the browser's voice processing off, so the fake microphone's file arrives as it is; `raw: false` keeps the
 * defaults a performer gets (echo cancellation, noise suppression, auto gain).
 */
export async function joinAsPerformer(browser: Browser, performerUrl: string, name: string, opts: { raw?: boolean } = {}): Promise<Page> {
  const page = await browser.newPage();
  page.on('pageerror', (err) => process.stderr.write(`[page ${name}] ${err.message}\n`));
  await page.goto(`${performerUrl}&name=${encodeURIComponent(name)}${opts.raw === false ? '' : '&raw=1'}`);
  await page.getByRole('button', { name: 'Join stage' }).click();
  await page.waitForFunction(() => document.body.dataset['state'] === 'publishing', null, { timeout: 15_000 });
  return page;
}

/** Level in dB of the strongest bin within ±tol Hz of freq, in what the performer page hears. */
export async function hearsAt(page: Page, freqs: number[], tolHz = 15): Promise<number[]> {
  return levelsAt(await page.evaluate(() => window.stageDebug.hearingSpectrum()), freqs, tolHz);
}

/** Level in dB of the strongest bin within ±tol Hz of each frequency of a page's analyser spectrum. */
export function levelsAt({ binHz, db }: { binHz: number; db: number[] }, freqs: number[], tolHz = 15): number[] {
  return freqs.map((f) => {
    let best = -Infinity;
    const lo = Math.max(0, Math.floor((f - tolHz) / binHz));
    const hi = Math.min(db.length - 1, Math.ceil((f + tolHz) / binHz));
    for (let i = lo; i <= hi; i++) best = Math.max(best, db[i] ?? -Infinity);
    return best;
  });
}

/** Polls until check() passes or the timeout ends; returns the last value either way. */
export async function eventually<T>(fn: () => Promise<T>, check: (v: T) => boolean, timeoutMs: number, everyMs = 250): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let v = await fn();
  while (!check(v) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, everyMs));
    v = await fn();
  }
  return v;
}

/** The browsers one test file launches: performers with a tone for a mic, listeners; closed together. */
export class BrowserSet {
  readonly #browsers: Browser[] = [];
  readonly #tmp: TempDir;

  constructor(tmp: TempDir) {
    this.#tmp = tmp;
  }

  /** A performer whose mic plays freq Hz (or the given WAV), joined and publishing on the stage. */
  async performer(performerUrl: string, freq: number, name: string, micWav?: string): Promise<Page> {
    const browser = await launchPerformerBrowser(micWav ?? toneWav(this.#tmp, freq));
    this.#browsers.push(browser);
    return joinAsPerformer(browser, performerUrl, name);
  }

  async listener(): Promise<Page> {
    const browser = await launchBrowser();
    this.#browsers.push(browser);
    return browser.newPage();
  }

  async close(): Promise<void> {
    await Promise.all(this.#browsers.splice(0).map((b) => b.close()));
  }
}
