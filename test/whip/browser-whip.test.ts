// A browser WHIP client from the npm registry (@eyevinn/whip-web-client) publishes into a stage from Chromium, with
// trickle ICE off, from a page on another origin (so CORS and the preflight are exercised): its tone is in the mix
// and it is on the stage as an encoder; its destroy() (DELETE) takes it off.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { buildSync } from 'esbuild';
import type { App } from '../../services/app.ts';
import { createStage, startTestApp, transition } from '../support/app.ts';
import { decodeToPcm, toneDb } from '../support/audio.ts';
import { eventually, launchPerformerBrowser } from '../support/browser.ts';
import { PlaylistWatcher, segmentsInput } from '../support/hls.ts';
import { TempDir, toneWav } from '../support/media.ts';

const TONE_HZ = 880;
const HERE = path.dirname(fileURLToPath(import.meta.url));

/** The client, bundled for the browser as a user's page would bundle it. */
function clientBundle(): string {
  const entry = `
    import { WHIPClient } from '@eyevinn/whip-web-client';
    let client = null;
    window.whipPublish = async (endpoint, token) => {
      const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
      client = new WHIPClient({ endpoint, opts: { authkey: token, noTrickleIce: true, iceServers: [], timeout: 500 } });
      await client.ingest(stream);
      return true;
    };
    window.whipStop = async () => { await client.destroy(); return true; };
  `;
  const out = buildSync({ stdin: { contents: entry, resolveDir: HERE, loader: 'js' }, bundle: true, format: 'iife', platform: 'browser', write: false, logLevel: 'silent' });
  return out.outputFiles[0]!.text;
}

describe('WHIP: a browser client', function () {
  this.timeout(90_000);
  let app: App;
  let tmp: TempDir;
  let server: http.Server;
  let origin: string;
  let browser: Awaited<ReturnType<typeof launchPerformerBrowser>> | undefined;

  before(async () => {
    tmp = new TempDir();
    app = await startTestApp({ CDN_DIR: tmp.file('cdn') });
    const js = clientBundle();
    server = http.createServer((req, res) => {
      if (req.url === '/client.js') res.writeHead(200, { 'content-type': 'application/javascript' }).end(js);
      else res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>encoder</title><script src="/client.js"></script>');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    await browser?.close();
    await new Promise<void>((r) => server?.close(() => r()));
    server?.closeAllConnections();
    await app?.close();
    tmp?.remove();
  });

  it('@eyevinn/whip-web-client in Chromium, trickle off, from another origin: on the stage as an encoder, in the mix; destroy() takes it off', async () => {
    const stage = await createStage(app, 'Browser encoder');
    await transition(app, stage.id, 'start');
    browser = await launchPerformerBrowser(toneWav(tmp, TONE_HZ));
    const page = await browser.newPage();
    page.on('pageerror', (err) => process.stderr.write(`[encoder page] ${err.message}\n`));
    await page.goto(`${origin}/`);
    expect(new URL(origin).port, 'the page is on another origin than the app').to.not.equal(String(app.port));
    const ok = await page.evaluate(([url, token]) => window.whipPublish(url!, token!), [`${app.url}/whip/${stage.id}?name=Browser`, stage.performerKey]);
    expect(ok).to.equal(true);
    const resource = await eventually(async () => app.whip.resources(stage.id)[0], (r) => r?.published === true, 15_000);
    expect(resource?.published, 'its audio arrives').to.equal(true);
    expect(app.registry.get(stage.id)!.performer(resource!.id)?.info()).to.deep.include({ displayName: 'Browser', role: 'encoder' });
    // A browser sends the audio-level extension: the encoder panel's view has its level.
    const seen = await eventually(async () => app.whip.view(stage.id)[0], (e) => e?.levelDbov !== null && e?.levelDbov !== undefined, 5_000, 100);
    expect(seen).to.deep.include({ state: 'publishing', levelKnown: true });
    expect(seen!.levelDbov, "the browser encoder's level (dBov)").to.be.above(-40);

    const mixer = app.registry.get(stage.id)!.broadcast!.mixer;
    const watcher = new PlaylistWatcher(mixer.playlistPath);
    watcher.poll();
    const from = watcher.segments.length;
    await watcher.waitFor((w) => w.segments.length >= from + 3, 10_000);
    watcher.stop();
    const pcm = decodeToPcm(segmentsInput(path.dirname(mixer.playlistPath), watcher.segments.slice(from)));
    const db = toneDb(pcm, TONE_HZ);
    console.log(`      the browser encoder's tone in the mix at ${db.toFixed(1)} dBFS`);
    expect(db, "the browser encoder's tone in the mix").to.be.above(-35);

    expect(await page.evaluate(() => window.whipStop())).to.equal(true);
    await eventually(async () => app.registry.get(stage.id)?.performer(resource!.id), (p) => p === undefined, 5_000);
    expect(app.registry.get(stage.id)?.performer(resource!.id), 'destroy() (DELETE) takes it off the stage').to.equal(undefined);
    await transition(app, stage.id, 'stop');
  });
});

declare global {
  interface Window {
    whipPublish: (endpoint: string, token: string) => Promise<boolean>;
    whipStop: () => Promise<boolean>;
  }
}
