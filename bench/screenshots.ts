// The documentation's screenshots, made from the real pages: `npm run docs:screenshots` writes docs/call-queue.png
// (a performer page with a caller on air and two waiting) and docs/encoder-panel.png (its encoder panel while an
// OBS-shaped WHIP publisher publishes). Real app, real Chromium, fake microphones, node-datachannel for the encoder.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createStage, startTestApp, transition } from '../test/support/app.ts';
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
} finally {
  for (const c of clients) c.close();
  await callerBrowser.close();
  await browsers.close();
  await app.close();
  tmp.remove();
}
