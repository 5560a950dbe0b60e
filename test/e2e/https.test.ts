// HTTPS for a performer on another computer: browsers give the microphone only to secure contexts. The service makes a
// self-signed certificate with openssl at its first start and answers HTTPS on the same port as HTTP. Chromium reaches
// it under a name that is not localhost (`radio.test`, mapped to 127.0.0.1 by --host-resolver-rules), with certificate
// errors ignored in its context (a user accepting the self-signed certificate once); the certificate itself is verified
// by Node against the file the service made.
import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { expect } from 'chai';
import type { Browser } from 'playwright-core';
import type { App } from '../../services/app.ts';
import { createStage, startTestApp, TEST_ADMIN_TOKEN, transition } from '../support/app.ts';
import { decodeToPcm, toneDb } from '../support/audio.ts';
import { launchPerformerBrowser } from '../support/browser.ts';
import { PlaylistWatcher } from '../support/hls.ts';
import { TempDir, toneWav } from '../support/media.ts';

const HOST = 'radio.test';

describe('HTTPS for performers on another computer (self-signed certificate, same port)', function () {
  this.timeout(120_000);
  const tmp = new TempDir();
  let app: App;
  let browser: Browser | null = null;

  before(async () => {
    app = await startTestApp({ TLS_DIR: tmp.file('tls'), TLS_HOSTNAMES: HOST });
  });
  after(async () => {
    await browser?.close();
    await app?.close();
    tmp.remove();
  });

  it('makes a certificate at first start that covers the configured name and this machine, and keeps it for the next start', async () => {
    expect(app.tls, 'TLS identity').to.not.equal(null);
    const pem = fs.readFileSync(path.join(tmp.file('tls'), 'cert.pem'));
    const x = new crypto.X509Certificate(pem);
    expect(x.checkHost(HOST)).to.equal(HOST);
    expect(x.checkHost('localhost')).to.equal('localhost');
    expect(x.checkIP('127.0.0.1')).to.equal('127.0.0.1');
    expect(x.checkHost('elsewhere.test')).to.equal(undefined);
    expect(fs.statSync(path.join(tmp.file('tls'), 'key.pem')).mode & 0o077, 'key readable by its owner only').to.equal(0);
    expect(app.tls!.fingerprint256).to.equal(x.fingerprint256);
    // Verified against that certificate (not "insecure"), the API answers over HTTPS on the HTTP port, and the links it
    // hands out follow the scheme and the address used.
    const created = await new Promise<{ status: number; body: { performerUrl: string; listenUrl: string; hlsUrl: string } }>((resolve, reject) => {
      const req = https.request(
        {
          host: '127.0.0.1',
          port: app.port,
          servername: 'localhost',
          ca: pem,
          method: 'POST',
          path: '/api/stages',
          headers: { host: `localhost:${app.port}`, authorization: `Bearer ${TEST_ADMIN_TOKEN}`, 'content-type': 'application/json' },
        },
        (res) => {
          let text = '';
          res.on('data', (c: Buffer) => (text += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
        },
      );
      req.on('error', reject);
      req.end(JSON.stringify({ title: 'Made over HTTPS' }));
    });
    expect(created.status).to.equal(201);
    expect(created.body.performerUrl).to.match(new RegExp(`^https://localhost:${app.port}/stage/`));
    expect(created.body.listenUrl).to.match(new RegExp(`^https://localhost:${app.port}/listen/`));
    expect(created.body.hlsUrl).to.match(new RegExp(`^https://localhost:${app.port}/live/`));
    // Over plain HTTP, the same port and plain links.
    const plainRes = await fetch(`${app.url}/api/stages`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ title: 'Made over HTTP' }),
    });
    expect(((await plainRes.json()) as { performerUrl: string }).performerUrl).to.match(new RegExp(`^http://127\\.0\\.0\\.1:${app.port}/stage/`));
    // A second app on the same folder serves the same certificate (kept, not made again).
    const second = await startTestApp({ TLS_DIR: tmp.file('tls'), TLS_HOSTNAMES: HOST });
    try {
      expect(second.tls!.fingerprint256).to.equal(x.fingerprint256);
    } finally {
      await second.close();
    }
    // A name it does not cover makes it again, keeping every name.
    const third = await startTestApp({ TLS_DIR: tmp.file('tls'), TLS_HOSTNAMES: `${HOST},studio.test` });
    try {
      expect(third.tls!.fingerprint256).to.not.equal(x.fingerprint256);
      const y = new crypto.X509Certificate(fs.readFileSync(path.join(tmp.file('tls'), 'cert.pem')));
      expect(y.checkHost('studio.test')).to.equal('studio.test');
      expect(y.checkHost(HOST)).to.equal(HOST);
    } finally {
      await third.close();
    }
  });

  it(`a performer opening ${HOST} over HTTPS publishes and is heard in the mix; over plain HTTP the page says to use HTTPS`, async () => {
    browser = await launchPerformerBrowser(toneWav(tmp, 660), { args: [`--host-resolver-rules=MAP ${HOST} 127.0.0.1`] });
    const stage = await createStage(app, 'Over HTTPS');
    const pathAndQuery = `/stage/${stage.id}?key=${encodeURIComponent(stage.performerKey)}&name=Remote&raw=1`;

    // Plain HTTP from a name that is not localhost: not a secure context. The page explains, and cannot join.
    const plain = await browser.newPage();
    await plain.goto(`http://${HOST}:${app.port}${pathAndQuery}`);
    const warning = plain.locator('#insecure');
    await warning.waitFor({ state: 'visible', timeout: 10_000 });
    expect(await plain.evaluate(() => window.isSecureContext)).to.equal(false);
    expect(await warning.textContent()).to.match(/secure connection \(HTTPS\)/);
    expect(await plain.locator('#insecure-link').getAttribute('href')).to.equal(`https://${HOST}:${app.port}${pathAndQuery}`);
    expect(await plain.getByRole('button', { name: 'Join stage' }).isDisabled()).to.equal(true);
    // The first paint still tells the truth about the stage.
    await plain.waitForFunction(() => document.getElementById('stage-title')?.textContent === 'Over HTTPS', null, { timeout: 10_000 });
    await plain.close();

    // The HTTPS address the page gave: a secure context, no warning, and it publishes.
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    const page = await context.newPage();
    page.on('pageerror', (err) => process.stderr.write(`[page Remote] ${err.message}\n`));
    await page.goto(`https://${HOST}:${app.port}${pathAndQuery}`);
    expect(await page.evaluate(() => window.isSecureContext)).to.equal(true);
    expect(await page.locator('#insecure').isHidden()).to.equal(true);
    await page.getByRole('button', { name: 'Join stage' }).click();
    await page.waitForFunction(() => document.body.dataset['state'] === 'publishing', null, { timeout: 15_000 });
    // The page's own links and WHIP URL follow the address and the scheme it was opened with.
    await page.waitForFunction((h) => document.getElementById('whip-url')?.textContent?.startsWith(`https://${h}:`), HOST, { timeout: 10_000 });

    await transition(app, stage.id, 'start');
    const watcher = new PlaylistWatcher(path.join(app.config.cdn.dir, 'live', stage.id, 'index.m3u8'));
    try {
      expect(await watcher.waitFor((w) => w.segments.length >= 5, 20_000), 'five segments').to.equal(true);
      const pcm = decodeToPcm(watcher.concatInput(2));
      const level = toneDb(pcm, 660);
      expect(level, '660 Hz in the mix (dBFS)').to.be.greaterThan(-30);
      expect(toneDb(pcm, 440), 'no other tone').to.be.lessThan(level - 30);
    } finally {
      watcher.stop();
      await transition(app, stage.id, 'stop');
    }
    await context.close();
  });
});
