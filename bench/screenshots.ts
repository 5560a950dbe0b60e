// The documentation's screenshots, made from the real pages: `npm run docs:screenshots` writes docs/call-queue.png
// (a performer page with a caller on air and two waiting) and docs/encoder-panel.png (its encoder panel while an
// OBS-shaped WHIP publisher publishes), and the performer, listener and admin pages in English and Japanese
// (docs/pages/<page>.<en|ja>.png). Real app, real Chromium, fake microphones, node-datachannel for the encoder.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createStage, startTestApp, TEST_ADMIN_TOKEN, transition } from '../test/support/app.ts';
import { BrowserSet, launchPerformerBrowser } from '../test/support/browser.ts';
import { connectClient } from '../test/support/client.ts';
import { pulseWav, TempDir } from '../test/support/media.ts';
import type { ListenContract } from '../services/shared/listen.ts';
import { WhipPublisher } from '../test/support/whip.ts';

const DOCS = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'docs');

const tmp = new TempDir();
const browsers = new BrowserSet(tmp);
const app = await startTestApp({ CDN_DIR: tmp.file('cdn') });
const callerBrowser = await launchPerformerBrowser(pulseWav(tmp, 1000, { periodSec: 0.5, onSec: 0.3 }));
const clients: { close(): void }[] = [];
try {
  const stage = await createStage(app, 'Morning phone-in');
  const host = await browsers.performer(stage.performerUrl, 440, 'Maya');
  await transition(app, stage.id, 'start');
  await host.waitForFunction(() => document.body.dataset['stageStatus'] === 'live', null, { timeout: 10_000 });

  const caller = await callerBrowser.newPage();
  await caller.goto(`${app.url}/listen/${stage.id}`);
  await caller.getByLabel('Name on air').fill('Carla');
  await caller.getByLabel('Topic (optional)').fill('The new tram line');
  await caller.getByRole('button', { name: 'Request to speak' }).click();
  await host.locator('#call-queue li[data-status="waiting"]').waitFor();
  await host.locator('#call-queue li[data-status="waiting"]').getByRole('button', { name: 'Accept' }).click();
  await host.locator('#call-queue li[data-status="on_air"]').waitFor({ timeout: 15_000 });

  for (const [i, [name, topic]] of [['Tom', 'Weekend weather'], ['Ines', 'A song request for my mother']].entries()) {
    const c = await connectClient<ListenContract>(app.url, '/listen', { forwardedFor: `192.0.2.${i + 1}` });
    clients.push(c);
    await c.request('subscribe', { stageId: stage.id });
    await c.request('requestCall', { name: name!, topic: topic! });
  }
  await host.waitForFunction(() => document.querySelectorAll('#call-queue li').length === 3);
  await new Promise((r) => setTimeout(r, 7000)); // the times read like a queue
  await host.setViewportSize({ width: 900, height: 1200 });
  const section = host.locator('section.calls');
  await section.screenshot({ path: path.join(DOCS, 'call-queue.png') });
  console.log(`wrote ${path.join(DOCS, 'call-queue.png')}`);

  const obs = new WhipPublisher();
  try {
    const res = await obs.publish(`${app.url}/whip/${stage.id}?name=Studio%20OBS`, stage.performerKey);
    if (res.status !== 201 || !(await obs.opened())) throw new Error(`WHIP publish failed: ${res.status} ${res.answer}`);
    await obs.startAudio({ freq: 330, levelDb: -14 });
    await host.waitForFunction(() => document.getElementById('encoder-state')?.dataset['state'] === 'publishing', null, { timeout: 15_000 });
    await host.locator('section.encoder details').evaluate((d) => ((d as HTMLDetailsElement).open = true));
    await new Promise((r) => setTimeout(r, 2500));
    await host.locator('section.encoder').screenshot({ path: path.join(DOCS, 'encoder-panel.png') });
    console.log(`wrote ${path.join(DOCS, 'encoder-panel.png')}`);
  } finally {
    await obs.close();
  }

  // The three pages, in English and in Japanese (the browser's language picks it), on the show above while it is on air.
  await transition(app, stage.id, 'start').catch(() => undefined);
  for (const [locale, code, name] of [['en-US', 'en', 'Ken'], ['ja-JP', 'ja', '健']] as const) {
    const context = await callerBrowser.newContext({ locale, viewport: { width: 900, height: 1000 } });
    try {
      const performer = await context.newPage();
      await performer.goto(`${stage.performerUrl}&name=${encodeURIComponent(name)}`);
      await performer.locator('#join').click();
      await performer.waitForFunction(() => document.body.dataset['state'] === 'publishing', null, { timeout: 15_000 });
      await new Promise((r) => setTimeout(r, 1500));
      await performer.screenshot({ path: path.join(DOCS, 'pages', `performer.${code}.png`), fullPage: true });
      await performer.locator('#leave').click();

      const listener = await context.newPage();
      await listener.goto(`${app.url}/listen/${stage.id}`);
      await listener.locator('#play').click();
      await listener.waitForFunction(() => document.body.dataset['state'] === 'playing', null, { timeout: 20_000 });
      await new Promise((r) => setTimeout(r, 2000));
      await listener.screenshot({ path: path.join(DOCS, 'pages', `listener.${code}.png`), fullPage: true });

      const admin = await context.newPage();
      await admin.goto(`${app.url}/admin#token=${TEST_ADMIN_TOKEN}`);
      await admin.locator(`#stage-list tr[data-stage="${stage.id}"]`).waitFor({ timeout: 15_000 });
      await admin.locator('section.stage').first().waitFor({ timeout: 15_000 });
      await new Promise((r) => setTimeout(r, 1500));
      await admin.screenshot({ path: path.join(DOCS, 'pages', `admin.${code}.png`), fullPage: true });
      console.log(`wrote docs/pages/{performer,listener,admin}.${code}.png`);
    } finally {
      await context.close();
    }
  }
} finally {
  const step = async (what: string, fn: () => Promise<unknown> | unknown) => {
    const t = performance.now();
    await fn();
    console.log(`closed ${what} in ${Math.round(performance.now() - t)} ms`);
  };
  await step('clients', () => clients.forEach((c) => c.close()));
  await step('caller browser', () => callerBrowser.close());
  await step('browsers', () => browsers.close());
  await step('app', () => app.close());
  tmp.remove();
}
// Everything above is closed, yet something keeps the process alive afterwards (seen since the page screenshots were
// added; not found yet): say what is left, and exit rather than hang `npm run docs:screenshots`.
const left = (process as unknown as { _getActiveHandles(): object[] })._getActiveHandles().map((h) => h.constructor?.name ?? typeof h);
if (left.length > 0) console.log(`handles left at exit: ${left.join(', ')}`);
process.exit(0);
