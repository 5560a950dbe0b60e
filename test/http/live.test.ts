// The app as CDN origin for live HLS: /live/<stageId>/<file> from CDN_DIR/live, with the right types, caching, CORS
// and ranges, and nothing else reachable.
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { expect } from 'chai';
import type { App } from '../../services/app.ts';
import { startTestApp } from '../support/app.ts';
import { TempDir } from '../support/media.ts';

interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** A request whose path goes out byte for byte (fetch would normalise dot segments and encodings). */
function raw(app: App, method: string, rawPath: string, headers: Record<string, string> = {}): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: app.port, method, path: rawPath, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

const STAGE = 'Stage_abc-123';
const PLAYLIST = '#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:1\n#EXT-X-MAP:URI="init_0.mp4"\n#EXTINF:1.0,\nseg_00001.m4s\n';
const SECRET = 'TOP-SECRET-do-not-serve';

describe('HTTP: /live (HLS origin)', function () {
  this.timeout(30_000);
  let app: App;
  let tmp: TempDir;
  let stageDir: string;
  /** 1000 bytes: a fake fMP4 segment (a moof box header, then filler). */
  const segment = Buffer.alloc(1000, 0xff);
  segment.writeUInt32BE(188, 0);
  segment.write('moof', 4, 'latin1');
  segment.write('SEGMENT', 8);

  before(async () => {
    tmp = new TempDir();
    stageDir = path.join(tmp.path, 'live', STAGE);
    fs.mkdirSync(stageDir, { recursive: true });
    fs.writeFileSync(path.join(stageDir, 'index.m3u8'), PLAYLIST);
    fs.writeFileSync(path.join(stageDir, 'seg_00001.m4s'), segment);
    for (const ext of ['m4s', 'mp4', 'aac', 'vtt', 'json']) fs.writeFileSync(path.join(stageDir, `file.${ext}`), `content of ${ext}`);
    // MPEG-TS segments are no longer written: not served either.
    fs.writeFileSync(path.join(stageDir, 'seg_00001.ts'), `${SECRET} old MPEG-TS segment`);
    // Things that must never be served.
    fs.writeFileSync(path.join(tmp.path, 'secret.m3u8'), `${SECRET} outside live/`);
    fs.writeFileSync(path.join(tmp.path, 'live', 'secret.m3u8'), `${SECRET} in live/ itself`);
    fs.writeFileSync(path.join(stageDir, '.env'), `PASSWORD=${SECRET}`);
    fs.writeFileSync(path.join(stageDir, '.hidden.m3u8'), `${SECRET} dotfile`);
    fs.writeFileSync(path.join(stageDir, 'notes.txt'), `${SECRET} wrong extension`);
    fs.writeFileSync(path.join(stageDir, 'index.m3u8.bak'), `${SECRET} backup`);
    fs.mkdirSync(path.join(stageDir, 'folder.m4s'));
    fs.writeFileSync(path.join(stageDir, 'folder.m4s', 'x.m4s'), SECRET);
    fs.mkdirSync(path.join(tmp.path, 'live', 'abc'), { recursive: true });
    fs.writeFileSync(path.join(tmp.path, 'live', 'abc', 'index.m3u8'), `${SECRET} short stage id`);
    app = await startTestApp({ CDN_DIR: tmp.path });
  });
  after(async () => {
    await app?.close();
    tmp?.remove();
  });

  const url = (file: string) => `${app.url}/live/${STAGE}/${file}`;

  it('serves a playlist: type, short cache, CORS, ETag revalidation; a rewritten playlist is served fresh', async () => {
    const res = await fetch(url('index.m3u8'));
    expect(res.status).to.equal(200);
    expect(res.headers.get('content-type')).to.equal('application/vnd.apple.mpegurl');
    expect(res.headers.get('cache-control')).to.equal('no-cache, max-age=1');
    expect(res.headers.get('access-control-allow-origin')).to.equal('*');
    expect(res.headers.get('access-control-expose-headers')).to.equal('Content-Length, Content-Range');
    expect(await res.text()).to.equal(PLAYLIST);
    const etag = res.headers.get('etag');
    expect(etag).to.be.a('string');

    // (Not fetch: with a conditional header it adds Cache-Control: no-cache, which rightly disables revalidation.)
    const again = await raw(app, 'GET', `/live/${STAGE}/index.m3u8`, { 'if-none-match': etag! });
    expect(again.status).to.equal(304);
    expect(again.body.length).to.equal(0);

    const next = PLAYLIST.replace('MEDIA-SEQUENCE:1', 'MEDIA-SEQUENCE:2');
    const tmpFile = path.join(stageDir, 'index.m3u8.tmp');
    fs.writeFileSync(tmpFile, next);
    fs.renameSync(tmpFile, path.join(stageDir, 'index.m3u8')); // as ffmpeg's temp_file flag does
    // The origin checks a playlist at most every 50 ms (services/http/liveCache.ts).
    await new Promise((r) => setTimeout(r, 60));
    const changed = await raw(app, 'GET', `/live/${STAGE}/index.m3u8`, { 'if-none-match': etag! });
    expect(changed.status).to.equal(200);
    expect(changed.body.toString('utf8')).to.equal(next);
    // Put the first version back as FFmpeg would (a rewrite in place of the same size within one tick of the file
    // system's clock would leave inode, size and mtime unchanged: no stat can see it), and let the 50 ms check lapse.
    fs.writeFileSync(tmpFile, PLAYLIST);
    fs.renameSync(tmpFile, path.join(stageDir, 'index.m3u8'));
    await new Promise((r) => setTimeout(r, 60));
  });

  it('serves a segment: type, immutable cache, validators, byte ranges', async () => {
    const res = await fetch(url('seg_00001.m4s'));
    expect(res.status).to.equal(200);
    expect(res.headers.get('content-type')).to.equal('audio/mp4');
    expect(res.headers.get('cache-control')).to.equal('public, max-age=31536000, immutable');
    expect(res.headers.get('access-control-allow-origin')).to.equal('*');
    expect(res.headers.get('accept-ranges')).to.equal('bytes');
    expect(res.headers.get('etag')).to.be.a('string');
    expect(res.headers.get('last-modified')).to.be.a('string');
    expect(res.headers.get('content-length')).to.equal('1000');
    expect(Buffer.from(await res.arrayBuffer()).equals(segment)).to.equal(true);

    const part = await fetch(url('seg_00001.m4s'), { headers: { range: 'bytes=188-375' } });
    expect(part.status).to.equal(206);
    expect(part.headers.get('content-range')).to.equal('bytes 188-375/1000');
    expect(part.headers.get('content-length')).to.equal('188');
    expect(part.headers.get('content-type')).to.equal('audio/mp4');
    expect(Buffer.from(await part.arrayBuffer()).equals(segment.subarray(188, 376))).to.equal(true);

    const tail = await fetch(url('seg_00001.m4s'), { headers: { range: 'bytes=-100' } });
    expect(tail.status).to.equal(206);
    expect(tail.headers.get('content-range')).to.equal('bytes 900-999/1000');

    const beyond = await fetch(url('seg_00001.m4s'), { headers: { range: 'bytes=5000-' } });
    expect(beyond.status).to.equal(416);
    expect(beyond.headers.get('content-range')).to.equal('bytes */1000');
    await beyond.arrayBuffer();
  });

  it('answers HEAD with the headers and no body', async () => {
    for (const [file, type, length] of [
      ['index.m3u8', 'application/vnd.apple.mpegurl', PLAYLIST.length],
      ['seg_00001.m4s', 'audio/mp4', 1000],
    ] as const) {
      const res = await raw(app, 'HEAD', `/live/${STAGE}/${file}`);
      expect(res.status, file).to.equal(200);
      expect(res.headers['content-type'], file).to.equal(type);
      expect(res.headers['content-length'], file).to.equal(String(length));
      expect(res.body.length, file).to.equal(0);
    }
  });

  it('answers GET and HEAD of a file in memory on its fast path, with exactly the headers, 304s and bodies of the Express path', async () => {
    // Express matches mount paths without regard to case, the fast path only /live/: /LIVE/ takes the Express path
    // to the same file, which gives the two answers to compare.
    const strip = (h: http.IncomingHttpHeaders) => {
      const { date: _d, connection: _c, 'keep-alive': _k, ...rest } = h;
      return rest;
    };
    for (const file of ['index.m3u8', 'seg_00001.m4s', 'file.mp4', 'file.vtt']) {
      const first = await raw(app, 'GET', `/live/${STAGE}/${file}`);
      const etag = String(first.headers['etag']);
      const lastModified = first.headers['last-modified'];
      const cases: [string, Record<string, string>][] = [
        ['GET', {}],
        ['HEAD', {}],
        ['GET', { 'if-none-match': etag }],
        ['GET', { 'if-none-match': `"other", W/${etag}` }],
        ['GET', { 'if-none-match': '"other"' }],
        ['GET', { 'if-none-match': etag, 'cache-control': 'no-cache' }],
        ['GET', { 'x-forwarded-for': '203.0.113.7', 'user-agent': 'fast-path-test' }],
        ...(lastModified ? [['GET', { 'if-modified-since': lastModified }], ['GET', { 'if-modified-since': new Date(Date.parse(lastModified) - 5000).toUTCString() }]] as [string, Record<string, string>][] : []),
      ];
      for (const [method, headers] of cases) {
        const servedBefore = app.liveOrigin.served;
        const fast = await raw(app, method, `/live/${STAGE}/${file}`, headers);
        expect(app.liveOrigin.served - servedBefore, `${method} ${file} ${JSON.stringify(headers)} on the fast path`).to.equal(1);
        const slow = await raw(app, method, `/LIVE/${STAGE}/${file}`, headers);
        expect(app.liveOrigin.served - servedBefore, 'the /LIVE/ request went through Express').to.equal(1);
        const what = `${method} ${file} ${JSON.stringify(headers)}`;
        expect(fast.status, what).to.equal(slow.status);
        expect(strip(fast.headers), what).to.deep.equal(strip(slow.headers));
        expect(fast.body.equals(slow.body), what).to.equal(true);
      }
    }
    // What the fast path does not serve goes on to Express: a byte range, a missing file, another method.
    const before = app.liveOrigin.served;
    expect((await raw(app, 'GET', `/live/${STAGE}/seg_00001.m4s`, { range: 'bytes=0-9' })).status).to.equal(206);
    expect((await raw(app, 'GET', `/live/${STAGE}/seg_09999.m4s`)).status).to.equal(404);
    expect((await raw(app, 'GET', `/live/${STAGE}/part_09999_0.m4s`)).status).to.equal(404);
    expect((await raw(app, 'POST', `/live/${STAGE}/index.m3u8`)).status).to.equal(404);
    expect((await raw(app, 'OPTIONS', `/live/${STAGE}/index.m3u8`)).status).to.equal(204);
    expect(app.liveOrigin.served, 'none of those on the fast path').to.equal(before);
  });

  it('gzips playlists for clients that take it (the same on both paths, its own ETag, 304s), never segments', async () => {
    // A playlist as long as an LL-HLS one (parts listed): a few KiB.
    const long = `${PLAYLIST}${Array.from({ length: 40 }, (_, i) => `#EXT-X-PART:DURATION=0.192,URI="part_${String(i).padStart(5, '0')}_0.m4s",INDEPENDENT=YES\n`).join('')}`;
    const dir = path.join(tmp.path, 'live', 'Stage_gzip-1');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'index.m3u8'), long);
    fs.writeFileSync(path.join(dir, 'seg_00001.m4s'), segment);
    const strip = (h: http.IncomingHttpHeaders) => {
      const { date: _d, connection: _c, 'keep-alive': _k, ...rest } = h;
      return rest;
    };
    const plain = await raw(app, 'GET', '/live/Stage_gzip-1/index.m3u8');
    expect(plain.headers['content-encoding']).to.equal(undefined);
    expect(plain.headers['vary']).to.equal('Accept-Encoding');
    expect(plain.body.toString()).to.equal(long);
    for (const prefix of ['/live', '/LIVE']) {
      const z = await raw(app, 'GET', `${prefix}/Stage_gzip-1/index.m3u8`, { 'accept-encoding': 'gzip, deflate, br' });
      expect(z.headers['content-encoding'], prefix).to.equal('gzip');
      expect(z.headers['vary']).to.equal('Accept-Encoding');
      expect(z.headers['etag']).to.equal(`${String(plain.headers['etag']).slice(0, -1)}-gz"`);
      expect(zlib.gunzipSync(z.body).toString()).to.equal(long);
      expect(z.body.length, 'compressed size').to.be.lessThan(long.length / 3);
      expect(Number(z.headers['content-length'])).to.equal(z.body.length);
      const again = await raw(app, 'GET', `${prefix}/Stage_gzip-1/index.m3u8`, { 'accept-encoding': 'gzip', 'if-none-match': String(z.headers['etag']) });
      expect(again.status, `${prefix} 304 on the gzip ETag`).to.equal(304);
      expect(again.headers['content-encoding']).to.equal(undefined);
      expect((await raw(app, 'GET', `${prefix}/Stage_gzip-1/index.m3u8`, { 'accept-encoding': 'gzip;q=0, identity' })).headers['content-encoding']).to.equal(undefined);
      const seg = await raw(app, 'GET', `${prefix}/Stage_gzip-1/seg_00001.m4s`, { 'accept-encoding': 'gzip' });
      expect(seg.headers['content-encoding'], 'segments as they are').to.equal(undefined);
      expect(seg.body.equals(segment)).to.equal(true);
    }
    const fast = await raw(app, 'GET', '/live/Stage_gzip-1/index.m3u8', { 'accept-encoding': 'gzip' });
    const slow = await raw(app, 'GET', '/LIVE/Stage_gzip-1/index.m3u8', { 'accept-encoding': 'gzip' });
    expect(strip(fast.headers)).to.deep.equal(strip(slow.headers));
    expect(fast.body.equals(slow.body)).to.equal(true);
  });

  it('LL-HLS directives on a stage not on air: the playlist on disk at once; bad ones a 400 on both paths', async () => {
    for (const q of ['_HLS_msn=5&_HLS_part=2', '_HLS_msn=999999', '_HLS_msn=1&_HLS_skip=YES', 'cb=7']) {
      for (const prefix of ['/live', '/LIVE']) {
        const t0 = Date.now();
        const res = await raw(app, 'GET', `${prefix}/${STAGE}/index.m3u8?${q}`);
        expect(res.status, `${prefix} ${q}`).to.equal(200);
        expect(res.body.toString('utf8'), q).to.equal(PLAYLIST);
        expect(res.headers['cache-control'], q).to.equal('no-cache, max-age=1');
        expect(Date.now() - t0, `${q}: not held`).to.be.below(200);
      }
    }
    const missing = await raw(app, 'GET', `/live/Stage_never-on-air/index.m3u8?_HLS_msn=5&_HLS_part=2`);
    expect(missing.status).to.equal(404);
    for (const q of ['_HLS_msn=x', '_HLS_part=3', '_HLS_msn=1&_HLS_part=-2', 'a=1&_HLS_msn=1&_HLS_msn=1', '_HLS_msn=2&_HLS_skip=maybe']) {
      const fast = await raw(app, 'GET', `/live/${STAGE}/index.m3u8?${q}`);
      const slow = await raw(app, 'GET', `/LIVE/${STAGE}/index.m3u8?${q}`);
      for (const res of [fast, slow]) {
        expect(res.status, q).to.equal(400);
        expect(res.headers['cache-control'], q).to.equal('no-store');
        expect(res.headers['access-control-allow-origin'], q).to.equal('*');
        expect(res.headers['x-content-type-options'], q).to.equal('nosniff');
        expect(JSON.parse(res.body.toString('utf8')).error.code, q).to.equal('BAD_REQUEST');
      }
      expect(slow.body.equals(fast.body), q).to.equal(true);
    }
    // Directives on anything but a playlist mean nothing.
    expect((await raw(app, 'GET', `/live/${STAGE}/seg_00001.m4s?_HLS_msn=x`)).status).to.equal(200);
    expect(app.liveOrigin.held).to.equal(0);
  });

  it('answers a CORS preflight', async () => {
    const res = await fetch(url('seg_00001.m4s'), {
      method: 'OPTIONS',
      headers: { origin: 'https://player.example', 'access-control-request-method': 'GET', 'access-control-request-headers': 'range' },
    });
    expect(res.status).to.equal(204);
    expect(res.headers.get('access-control-allow-origin')).to.equal('*');
    expect(res.headers.get('access-control-allow-methods')).to.equal('GET, HEAD, OPTIONS');
    expect(res.headers.get('access-control-allow-headers')).to.equal('Range');
    expect(await res.text()).to.equal('');
  });

  it('gives each extension its content type', async () => {
    const types: Record<string, string> = {
      m4s: 'audio/mp4',
      mp4: 'audio/mp4',
      aac: 'audio/aac',
      vtt: 'text/vtt; charset=utf-8',
      json: 'application/json',
    };
    for (const [ext, type] of Object.entries(types)) {
      const res = await fetch(url(`file.${ext}`));
      expect(res.status, ext).to.equal(200);
      expect(res.headers.get('content-type'), ext).to.equal(type);
      expect(await res.text(), ext).to.equal(`content of ${ext}`);
    }
  });

  it('a missing file is a 404 that is not cached', async () => {
    const res = await fetch(url('seg_99999.m4s'));
    expect(res.status).to.equal(404);
    expect(res.headers.get('cache-control')).to.equal('no-store');
    expect(res.headers.get('access-control-allow-origin')).to.equal('*');
    expect(await res.json()).to.deep.include({ ok: false });
  });

  it('refuses every path outside the whitelist with a 404 and never any file content', async () => {
    const abs = path.join(tmp.path, 'secret.m3u8');
    const bad: [string, string][] = [
      ['dot-dot segments', `/live/${STAGE}/../../secret.m3u8`],
      ['dot-dot to live/', `/live/${STAGE}/../secret.m3u8`],
      ['dot-dot as stage', `/live/../secret.m3u8`],
      ['encoded dot-dot-slash', `/live/${STAGE}/%2e%2e%2f%2e%2e%2fsecret.m3u8`],
      ['encoded dot-dot as stage', `/live/%2e%2e/secret.m3u8`],
      ['encoded slash', `/live/${STAGE}%2f..%2f..%2fsecret.m3u8`],
      ['half-encoded', `/live/${STAGE}/..%2f..%2fsecret.m3u8`],
      ['backslashes', `/live/${STAGE}/..\\..\\secret.m3u8`],
      ['absolute path', `/live/${abs}`],
      ['absolute, encoded', `/live/${encodeURIComponent(abs)}`],
      ['file in live/ itself', `/live/secret.m3u8`],
      ['dotfile', `/live/${STAGE}/.hidden.m3u8`],
      ['.env', `/live/${STAGE}/.env`],
      ['wrong extension', `/live/${STAGE}/notes.txt`],
      ['backup file', `/live/${STAGE}/index.m3u8.bak`],
      ['upper-case extension', `/live/${STAGE}/INDEX.M3U8`],
      ['overlong name', `/live/${STAGE}/${'a'.repeat(125)}.m4s`],
      ['overlong stage id', `/live/${'s'.repeat(65)}/index.m3u8`],
      ['directory with a segment name', `/live/${STAGE}/folder.m4s`],
      ['file under a directory', `/live/${STAGE}/folder.m4s/x.m4s`],
      ['MPEG-TS segment (no longer served)', `/live/${STAGE}/seg_00001.ts`],
      ['stage directory', `/live/${STAGE}/`],
      ['stage directory, no slash', `/live/${STAGE}`],
      ['live/ itself', `/live/`],
      ['short stage id', `/live/abc/index.m3u8`],
      ['stage id with a dot', `/live/${STAGE}.x/index.m3u8`],
      ['null byte', `/live/${STAGE}/index.m3u8%00.m4s`],
      ['null byte in name', `/live/${STAGE}/.env%00.m3u8`],
      ['trailing slash', `/live/${STAGE}/index.m3u8/`],
      ['double slash', `/live/${STAGE}//index.m3u8`],
      ['encoded name', `/live/${STAGE}/index%2em3u8`],
    ];
    for (const [name, p] of bad) {
      for (const method of ['GET', 'HEAD']) {
        const res = await raw(app, method, p);
        expect(res.status, `${method} ${name}: ${p}`).to.equal(404);
        const text = res.body.toString('utf8');
        expect(text, `${method} ${name}`).to.not.include(SECRET);
        expect(text, `${method} ${name}`).to.not.include('#EXTM3U');
        if (method === 'GET') {
          expect(JSON.parse(text), name).to.deep.equal({ ok: false, error: { code: 'NOT_FOUND', message: JSON.parse(text).error.message } });
          expect(res.headers['cache-control'], name).to.equal('no-store');
        }
      }
    }
    expect(bad.length).to.be.at.least(12);
    // Only GET, HEAD and OPTIONS.
    expect((await raw(app, 'POST', `/live/${STAGE}/index.m3u8`)).status).to.equal(404);
    expect((await raw(app, 'DELETE', `/live/${STAGE}/index.m3u8`)).status).to.equal(404);
    expect(fs.existsSync(path.join(stageDir, 'index.m3u8')), 'nothing deleted').to.equal(true);
  });

  it('serves the listener page with a CSP that lets hls.js work', async () => {
    const res = await fetch(`${app.url}/listen/${STAGE}`);
    expect(res.status).to.equal(200);
    const csp = res.headers.get('content-security-policy') ?? '';
    expect(csp).to.include("media-src 'self' blob:");
    expect(csp).to.include('worker-src');
    expect(csp).to.match(/worker-src[^;]*blob:/);
    const html = await res.text();
    const name = /\/assets\/(listener\.[0-9a-f]{10}\.js)/.exec(html)?.[1];
    expect(name, 'the page loads its script by a content-hashed name').to.be.a('string');
    const js = await fetch(`${app.url}/assets/${name!}`);
    expect(js.headers.get('content-type')).to.match(/javascript/);
  });
});

describe('HTTP: page CSP with an external HLS origin', function () {
  this.timeout(30_000);
  let app: App;
  before(async () => {
    app = await startTestApp({ PUBLIC_HLS_BASE_URL: 'https://cdn.example.test:8443/radio/live' });
  });
  after(async () => {
    await app?.close();
  });

  it('allows media and connections to the HLS origin', async () => {
    for (const p of ['/listen/Stage_abc-123', '/stage/Stage_abc-123']) {
      const csp = (await fetch(`${app.url}${p}`)).headers.get('content-security-policy') ?? '';
      expect(csp, p).to.match(/media-src 'self' blob: https:\/\/cdn\.example\.test:8443(;|$)/);
      expect(csp, p).to.match(/connect-src 'self' ws: wss: https:\/\/cdn\.example\.test:8443(;|$)/);
      expect(csp, p).to.not.include('/radio');
    }
  });
});
