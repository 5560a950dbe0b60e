// The origin the README recommends for real deployments, run for real: Debian's nginx with infra/nginx/nginx.conf
// (paths and ports filled in by test/support/nginx.ts) in front of an app with a stage on air (a Chromium performer
// playing a tone). What nginx answers is checked against what the app's own /live answers for the same files.
import http from 'node:http';
import https from 'node:https';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { expect } from 'chai';
import type { Browser } from 'playwright-core';
import { io } from 'socket.io-client';
import type { App } from '../../services/app.ts';
import { parseMediaPlaylist } from '../../pipelines/hls/playlist.ts';
import { createStage, startTestApp, TEST_ADMIN_TOKEN, transition } from '../support/app.ts';
import { eventually, joinAsPerformer, launchBrowser, launchPerformerBrowser, levelsAt } from '../support/browser.ts';
import { TempDir, toneWav } from '../support/media.ts';
import { segmentNumber } from '../support/hls.ts';
import { startNginx, type Nginx } from '../support/nginx.ts';

const TONE_HZ = 550;
/** The headers the app's /live sends on every answer (services/http/guards.ts), which nginx must send alike. */
const SECURITY = ['x-content-type-options', 'referrer-policy', 'x-frame-options', 'content-security-policy', 'cross-origin-opener-policy', 'cross-origin-resource-policy', 'permissions-policy'];

interface Raw {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** A request with the path sent as it is (no URL normalization: `..` and `%2e` reach the server). */
function raw(base: string, pathAndQuery: string, opts: { headers?: Record<string, string>; method?: string; ca?: Buffer } = {}): Promise<Raw> {
  const u = new URL(base);
  const mod = u.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = mod.request(
      { host: u.hostname, port: u.port, path: pathAndQuery, method: opts.method ?? 'GET', headers: opts.headers ?? {}, ...(opts.ca ? { ca: opts.ca, servername: 'localhost' } : {}) },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

const pick = (h: http.IncomingHttpHeaders, names: string[]) => Object.fromEntries(names.map((n) => [n, h[n]]));

describe('nginx origin: Debian nginx running infra/nginx/nginx.conf in front of a live stage', function () {
  this.timeout(150_000);
  const tmp = new TempDir();
  let app: App;
  let nginx: Nginx;
  let stageId: string;
  let cert: Buffer;
  const browsers: Browser[] = [];
  let playlistPath: string;

  before(async () => {
    app = await startTestApp({ CDN_DIR: tmp.file('cdn'), TLS_DIR: tmp.file('tls') });
    cert = fs.readFileSync(path.join(tmp.file('tls'), 'cert.pem'));
    nginx = await startNginx({ cdnDir: tmp.file('cdn'), appPort: app.port, tlsDir: tmp.file('tls') });
    const stage = await createStage(app, 'Through nginx');
    stageId = stage.id;
    const performer = await launchPerformerBrowser(toneWav(tmp, TONE_HZ));
    browsers.push(performer);
    await joinAsPerformer(performer, stage.performerUrl, 'Tone');
    await transition(app, stageId, 'start');
    playlistPath = path.join(tmp.file('cdn'), 'live', stageId, 'index.m3u8');
    await eventually(
      async () => (fs.existsSync(playlistPath) ? parseMediaPlaylist(fs.readFileSync(playlistPath, 'utf8')).segments.length : 0),
      (n) => n >= 3,
      30_000,
    );
  });
  after(async () => {
    await Promise.all(browsers.map((b) => b.close()));
    await nginx?.stop();
    await app?.close();
    tmp.remove();
  });

  it('serves the playlist as the app does: type, cache, CORS and security headers; gzip when asked', async () => {
    const p = `/live/${stageId}/index.m3u8`;
    const [viaNginx, viaApp] = await Promise.all([raw(nginx.httpUrl, p), raw(app.url, p)]);
    expect(viaNginx.status).to.equal(200);
    expect(viaNginx.headers['content-type']).to.equal('application/vnd.apple.mpegurl');
    expect(viaNginx.headers['cache-control']).to.equal(viaApp.headers['cache-control']).and.equal('no-cache, max-age=1');
    expect(viaNginx.headers['access-control-allow-origin']).to.equal('*');
    expect(pick(viaNginx.headers, SECURITY), 'security headers as the app sends them').to.deep.equal(pick(viaApp.headers, SECURITY));
    expect(parseMediaPlaylist(viaNginx.body.toString()).segments.length).to.be.at.least(3);
    const zipped = await raw(nginx.httpUrl, p, { headers: { 'accept-encoding': 'gzip' } });
    expect(zipped.headers['content-encoding']).to.equal('gzip');
    expect(parseMediaPlaylist(zlib.gunzipSync(zipped.body).toString()).segments.length).to.be.at.least(3);
  });

  it('serves segments immutable, with byte ranges, never compressed, the same bytes and security headers as the app', async () => {
    const seg = parseMediaPlaylist(fs.readFileSync(playlistPath, 'utf8')).segments[0]!;
    const p = `/live/${stageId}/${seg.uri}`;
    const [viaNginx, viaApp] = await Promise.all([raw(nginx.httpUrl, p, { headers: { 'accept-encoding': 'gzip, br' } }), raw(app.url, p)]);
    expect(viaNginx.status).to.equal(200);
    expect(viaNginx.headers['content-type']).to.equal('audio/mp4');
    expect(viaNginx.headers['content-encoding']).to.equal(undefined);
    expect(viaNginx.headers['cache-control']).to.equal('public, max-age=31536000, immutable').and.equal(viaApp.headers['cache-control']);
    expect(viaNginx.headers['access-control-allow-origin']).to.equal('*');
    expect(pick(viaNginx.headers, SECURITY)).to.deep.equal(pick(viaApp.headers, SECURITY));
    expect(viaNginx.body.equals(viaApp.body), 'same bytes').to.equal(true);
    const range = await raw(nginx.httpUrl, p, { headers: { range: 'bytes=10-109' } });
    expect(range.status).to.equal(206);
    expect(range.headers['content-range']).to.equal(`bytes 10-109/${viaApp.body.length}`);
    expect(range.body.equals(viaApp.body.subarray(10, 110))).to.equal(true);
    // A CORS preflight for a Range request (hls.js on another origin).
    const pre = await raw(nginx.httpUrl, p, { method: 'OPTIONS', headers: { origin: 'https://player.example', 'access-control-request-method': 'GET', 'access-control-request-headers': 'range' } });
    expect(pre.status).to.equal(204);
    expect(pre.headers['access-control-allow-headers']).to.match(/Range/);
  });

  it('holds an LL-HLS blocking reload through nginx (the app answers it) until the asked segment is out', async () => {
    const { segments } = parseMediaPlaylist(fs.readFileSync(playlistPath, 'utf8'));
    const next = segmentNumber(segments.at(-1)!.uri) + 1;
    const t0 = Date.now();
    const held = await raw(nginx.httpUrl, `/live/${stageId}/index.m3u8?_HLS_msn=${next}`);
    expect(held.status, held.body.toString()).to.equal(200);
    expect(Date.now() - t0, 'held (ms)').to.be.greaterThan(100);
    expect(parseMediaPlaylist(held.body.toString()).segments.some((s) => segmentNumber(s.uri) === next), `segment ${next} listed in ${held.body.toString()}`).to.equal(true);
  });

  it('refuses everything outside the served names: 404s, traversal never reaches a file', async () => {
    const paths = [
      `/live/${stageId}/notes.txt`,
      `/live/${stageId}/.index.m3u8.tmp`,
      `/live/${stageId}/`,
      '/live/',
      `/live/${stageId}/../../../../etc/passwd`,
      `/live/${stageId}/%2e%2e/%2e%2e/%2e%2e/etc/passwd`,
      `/live/${stageId}/..%2f..%2f..%2fetc%2fpasswd`,
      '/live/..%2f..%2fetc/passwd.m3u8',
      '/nothing-here',
    ];
    for (const p of paths) {
      const r = await raw(nginx.httpUrl, p);
      expect(r.status, p).to.be.oneOf([400, 404]);
      expect(r.body.toString(), p).to.not.match(/root:x?:0:0/);
    }
    // Methods other than GET (and OPTIONS) on live files.
    expect((await raw(nginx.httpUrl, `/live/${stageId}/index.m3u8`, { method: 'POST' })).status).to.equal(403);
    // A 404 under /live carries the same security headers.
    const missing = await raw(nginx.httpUrl, `/live/${stageId}/notes.txt`);
    expect(missing.headers['cache-control']).to.equal('no-store');
    for (const h of SECURITY) expect(missing.headers[h], h).to.be.a('string');
  });

  it('terminates TLS with the app\'s certificate for /live, the API (links in https) and Socket.IO', async () => {
    const playlist = await raw(nginx.httpsUrl, `/live/${stageId}/index.m3u8`, { ca: cert });
    expect(playlist.status).to.equal(200);
    expect(playlist.headers['content-type']).to.equal('application/vnd.apple.mpegurl');
    const view = await raw(nginx.httpsUrl, `/api/stages/${stageId}`, { ca: cert });
    expect(view.status).to.equal(200);
    const port = new URL(nginx.httpsUrl).port;
    expect((JSON.parse(view.body.toString()) as { hlsUrl: string }).hlsUrl, 'links follow the proxy scheme and address').to.equal(`https://127.0.0.1:${port}/live/${stageId}/index.m3u8`);
    // The admin namespace over WebSocket, through nginx's TLS.
    const socket = io(`${nginx.httpsUrl}/admin`, { transports: ['websocket'], auth: { token: TEST_ADMIN_TOKEN }, ca: cert.toString(), reconnection: false, forceNew: true });
    try {
      const snap = await new Promise<{ stages: { id: string; status: string }[] }>((resolve, reject) => {
        socket.once('snapshot', resolve);
        socket.once('connect_error', reject);
        setTimeout(() => reject(new Error('no snapshot in 10 s')), 10_000);
      });
      expect(snap.stages.find((s) => s.id === stageId)?.status).to.equal('live');
    } finally {
      socket.close();
    }
  });

  it('a listener page opened through nginx plays the stage from nginx\'s /live, and the tone is heard', async () => {
    const browser = await launchBrowser();
    browsers.push(browser);
    const page = await browser.newPage();
    const liveRequests: string[] = [];
    page.on('request', (r) => {
      if (r.url().includes('/live/')) liveRequests.push(r.url());
    });
    await page.goto(`${nginx.httpUrl}/listen/${stageId}`);
    await page.waitForFunction(() => document.body.dataset['state'] === 'playing', null, { timeout: 20_000 });
    const heard = await eventually(
      async () => levelsAt(await page.evaluate(() => window.listenerDebug.spectrum()), [TONE_HZ, 1500]),
      ([on, off]) => on! > -60 && on! - off! >= 30,
      15_000,
    );
    expect(heard[0], `${TONE_HZ} Hz heard through nginx: ${heard}`).to.be.greaterThan(-60);
    expect(liveRequests.length).to.be.greaterThan(0);
    expect(liveRequests.every((u) => u.startsWith(`${nginx.httpUrl}/live/`)), 'every HLS request went to nginx').to.equal(true);
  });
});
