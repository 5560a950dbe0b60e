// Abuse limits: security headers on every kind of response, body caps, REST write limits and Socket.IO join limits
// per client address and per stage (docs/operations.md, "Limits").
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { expect } from 'chai';
import { io, type Socket } from 'socket.io-client';
import type { App } from '../../services/app.ts';
import type { Ack } from '../../services/shared/errors.ts';
import { MAX_MESSAGE_BYTES } from '../../services/shared/stage.ts';
import { KeyedLimits, RateLimiter } from '../../services/limits.ts';
import { clientAddress } from '../../services/http/util.ts';
import { TEST_ADMIN_TOKEN, createStage, startTestApp } from '../support/app.ts';
import { TempDir } from '../support/media.ts';

const PER_MINUTE = 5;
const admin = { authorization: `Bearer ${TEST_ADMIN_TOKEN}`, 'content-type': 'application/json' };

function expectSecurityHeaders(res: Response, what: string, corp: 'same-site' | 'cross-origin'): void {
  const h = res.headers;
  expect(h.get('x-content-type-options'), what).to.equal('nosniff');
  expect(h.get('referrer-policy'), what).to.equal('no-referrer');
  expect(h.get('x-frame-options'), what).to.equal('DENY');
  expect(h.get('content-security-policy'), what).to.include("frame-ancestors 'none'");
  expect(h.get('cross-origin-opener-policy'), what).to.equal('same-origin');
  expect(h.get('cross-origin-resource-policy'), what).to.equal(corp);
  expect(h.get('permissions-policy'), what).to.match(/(^|, )microphone=\(\)/);
  expect(h.get('strict-transport-security'), `${what}: no HSTS over plain http`).to.equal(null);
  expect(h.get('x-powered-by'), what).to.equal(null);
}

/** A raw HTTP request (fetch cannot send a body of unknown length the way a client streaming garbage does). */
function rawRequest(port: number, opts: http.RequestOptions, body: Buffer | Buffer[]): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, ...opts }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
    });
    // The server may answer and close before the whole body is sent.
    req.on('error', (err: NodeJS.ErrnoException) => (err.code === 'EPIPE' || err.code === 'ECONNRESET' ? undefined : reject(err)));
    for (const b of Array.isArray(body) ? body : [body]) req.write(b);
    req.end();
  });
}

describe('limits: security headers and body caps', function () {
  this.timeout(60_000);
  let app: App;
  let tmp: TempDir;
  const LIVE_STAGE = 'LiveHeaders1';

  before(async () => {
    tmp = new TempDir();
    app = await startTestApp({ MEDIASOUP_WORKERS: '1', CDN_DIR: tmp.file('cdn') });
    const dir = path.join(tmp.file('cdn'), 'live', LIVE_STAGE);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'index.m3u8'), '#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\nseg_00000.m4s\n');
    fs.writeFileSync(path.join(dir, 'seg_00000.m4s'), Buffer.alloc(188 * 10, 0x47));
  });
  after(async () => {
    await app?.close();
    tmp?.remove();
  });

  it('sends the security headers on API, page, health, /live and Socket.IO responses', async () => {
    const stage = await createStage(app, 'Headers');

    const api = await fetch(`${app.url}/api/stages/${stage.id}`);
    expect(api.status).to.equal(200);
    expectSecurityHeaders(api, 'API', 'same-site');
    expect(api.headers.get('content-security-policy')).to.include("default-src 'none'");
    const notFound = await fetch(`${app.url}/api/nothing-here`);
    expect(notFound.status).to.equal(404);
    expectSecurityHeaders(notFound, 'API 404', 'same-site');
    expectSecurityHeaders(await fetch(`${app.url}/healthz`), 'healthz', 'same-site');

    const performerPage = await fetch(`${app.url}/stage/${stage.id}?key=${stage.performerKey}`);
    expect(performerPage.status).to.equal(200);
    const pp = performerPage.headers.get('permissions-policy') ?? '';
    expect(pp, 'the performer page may use the microphone').to.include('microphone=(self)');
    expect(pp).to.include('camera=()');
    expect(performerPage.headers.get('content-security-policy')).to.include("default-src 'self'").and.include("frame-ancestors 'none'");
    expect(performerPage.headers.get('x-frame-options')).to.equal('DENY');
    expect(performerPage.headers.get('cross-origin-opener-policy')).to.equal('same-origin');
    const listenerPage = await fetch(`${app.url}/listen/${stage.id}`);
    expect(listenerPage.status).to.equal(200);
    const lp = listenerPage.headers.get('permissions-policy') ?? '';
    expect(lp, 'the listener page may use the microphone (call-in), nothing else').to.include('microphone=(self)').and.include('camera=()');
    expect(listenerPage.headers.get('x-frame-options')).to.equal('DENY');
    expectSecurityHeaders(await fetch(`${app.url}/assets/listener.js`), 'asset', 'same-site');

    // /live stays usable by players on any origin: CORS and a cross-origin resource policy.
    const playlist = await fetch(`${app.url}/live/${LIVE_STAGE}/index.m3u8`, { headers: { origin: 'https://player.example' } });
    expect(playlist.status).to.equal(200);
    expectSecurityHeaders(playlist, '/live playlist', 'cross-origin');
    expect(playlist.headers.get('access-control-allow-origin')).to.equal('*');
    const segment = await fetch(`${app.url}/live/${LIVE_STAGE}/seg_00000.m4s`, { headers: { range: 'bytes=0-187' } });
    expect(segment.status).to.equal(206);
    expectSecurityHeaders(segment, '/live segment', 'cross-origin');
    const preflight = await fetch(`${app.url}/live/${LIVE_STAGE}/index.m3u8`, {
      method: 'OPTIONS',
      headers: { origin: 'https://player.example', 'access-control-request-method': 'GET', 'access-control-request-headers': 'range' },
    });
    expect(preflight.status).to.equal(204);
    expect(preflight.headers.get('access-control-allow-origin')).to.equal('*');
    expect(preflight.headers.get('access-control-allow-headers')).to.match(/range/i);
    expectSecurityHeaders(await fetch(`${app.url}/live/${LIVE_STAGE}/nothing.m3u8`), '/live 404', 'cross-origin');

    // Socket.IO's HTTP long-polling responses are written by engine.io, outside Express.
    const handshake = await fetch(`${app.url}/socket.io/?EIO=4&transport=polling`);
    expect(handshake.status).to.equal(200);
    expectSecurityHeaders(handshake, 'engine.io handshake', 'same-site');
  });

  it('answers 413 to a REST body over 16 kB, with or without a Content-Length, and keeps serving', async () => {
    const big = JSON.stringify({ title: 'x'.repeat(20_000) });
    const res = await fetch(`${app.url}/api/stages`, { method: 'POST', headers: admin, body: big });
    expect(res.status).to.equal(413);
    const body = (await res.json()) as { ok: boolean; error: { code: string; message: string } };
    expect(body.ok).to.equal(false);
    expect(body.error.message).to.match(/larger than 16kb/);

    // Chunked, no Content-Length: the parser stops reading at the cap.
    const chunks = Array.from({ length: 64 }, () => Buffer.from('x'.repeat(1024)));
    const chunked = await rawRequest(app.port, { method: 'POST', path: '/api/stages', headers: { ...admin, 'transfer-encoding': 'chunked' } }, [Buffer.from('{"title":"'), ...chunks]);
    expect(chunked.status).to.equal(413);
    expect(chunked.text).to.match(/larger than 16kb/);

    // Socket.IO long-polling: a POST over maxHttpBufferSize (64 KiB) is refused with 413 and harms nothing.
    const hs = await (await fetch(`${app.url}/socket.io/?EIO=4&transport=polling`)).text();
    const sid = (JSON.parse(hs.slice(hs.indexOf('{'))) as { sid: string }).sid;
    const poll = await rawRequest(
      app.port,
      { method: 'POST', path: `/socket.io/?EIO=4&transport=polling&sid=${sid}`, headers: { 'content-type': 'text/plain;charset=UTF-8' } },
      Buffer.from(`4${'y'.repeat(MAX_MESSAGE_BYTES + 1024)}`),
    );
    expect(poll.status).to.equal(413);

    const health = await fetch(`${app.url}/healthz`);
    expect(health.status, 'the service still answers').to.equal(200);
    const ok = await fetch(`${app.url}/api/stages`, { method: 'POST', headers: admin, body: JSON.stringify({ title: 'After the big bodies' }) });
    expect(ok.status).to.equal(201);
  });
});

describe('limits: HSTS when the public URL is https', function () {
  this.timeout(60_000);
  let app: App;
  before(async () => {
    app = await startTestApp({ MEDIASOUP_WORKERS: '1', PUBLIC_URL: 'https://radio.example' });
  });
  after(async () => {
    await app?.close();
  });

  it('sends Strict-Transport-Security', async () => {
    const res = await fetch(`http://127.0.0.1:${app.port}/healthz`);
    expect(res.headers.get('strict-transport-security')).to.match(/^max-age=\d{7,}/);
  });
});

describe('limits: REST writes and Socket.IO joins per client address and per stage', function () {
  this.timeout(60_000);
  let app: App;
  const sockets: Socket[] = [];

  before(async () => {
    app = await startTestApp({ MEDIASOUP_WORKERS: '1', RATE_LIMIT_JOIN_PER_MINUTE: String(PER_MINUTE), RATE_LIMIT_WRITE_PER_MINUTE: String(PER_MINUTE) });
  });
  after(async () => {
    for (const s of sockets.splice(0)) s.close();
    await app?.close();
  });

  /** Creates a stage from an address of its own, so that the limits under test are not used up by set-up. */
  let creator = 0;
  const create = async (title: string) => {
    const res = await fetch(`${app.url}/api/stages`, { method: 'POST', headers: { ...admin, 'x-forwarded-for': `100.64.0.${++creator}` }, body: JSON.stringify({ title }) });
    expect(res.status).to.equal(201);
    return (await res.json()) as { id: string; performerKey: string };
  };

  /** A write (stopping an idle stage: 409, no side effect) from a given client address, through a loopback proxy. */
  const write = (stageId: string, ip: string, token = TEST_ADMIN_TOKEN) =>
    fetch(`${app.url}/api/stages/${stageId}/stop`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'x-forwarded-for': ip },
      body: '{}',
    });

  it('answers 429 RATE_LIMITED with Retry-After past the limit, per address and per stage', async () => {
    const s1 = await create('Writes 1');
    const s2 = await create('Writes 2');
    const statuses: number[] = [];
    for (let i = 0; i < PER_MINUTE; i++) statuses.push((await write(s1.id, '203.0.113.1')).status);
    expect(statuses, 'within the limit the request is handled (409: not on air)').to.deep.equal(Array(PER_MINUTE).fill(409));

    const limited = await write(s1.id, '203.0.113.1');
    expect(limited.status).to.equal(429);
    expect(((await limited.json()) as { error: { code: string } }).error.code).to.equal('RATE_LIMITED');
    const retryAfter = Number(limited.headers.get('retry-after'));
    // One token comes back every 60 / PER_MINUTE s.
    expect(retryAfter).to.be.within(1, 60 / PER_MINUTE);
    expect((await write(s2.id, '203.0.113.1')).status, 'the address is limited on every stage').to.equal(429);
    expect((await fetch(`${app.url}/api/stages/${s1.id}`, { headers: { 'x-forwarded-for': '203.0.113.1' } })).status, 'reads are not limited').to.equal(200);
    expect((await write(s2.id, '203.0.113.2')).status, 'another address, another stage').to.equal(409);
    expect((await write(s1.id, '203.0.113.3')).status, 'another address on the same stage').to.equal(409);

    // The stage takes twice the address limit, from whichever addresses: 5 + 1 used so far.
    const more: number[] = [];
    for (let i = 0; i < PER_MINUTE - 1; i++) more.push((await write(s1.id, `198.18.0.${10 + i}`)).status);
    expect(more).to.deep.equal(Array(PER_MINUTE - 1).fill(409));
    const stageLimited = await write(s1.id, '198.18.0.99');
    expect(stageLimited.status, 'the stage is over its limit, for a fresh address too').to.equal(429);
    expect(Number(stageLimited.headers.get('retry-after'))).to.be.within(1, 60 / (2 * PER_MINUTE));
    expect((await write(s2.id, '198.18.0.99')).status, 'that address can still write to another stage').to.equal(409);

    // Wrong tokens count as much as right ones: guessing is slowed down.
    const guesses: number[] = [];
    for (let i = 0; i < PER_MINUTE + 2; i++) guesses.push((await write(s2.id, '192.0.2.77', `wrong-token-${i}-0123456789abcdef`)).status);
    expect(guesses).to.deep.equal([...Array(PER_MINUTE).fill(401), 429, 429]);

    // Creating stages is a write by address too.
    const creates: number[] = [];
    for (let i = 0; i < PER_MINUTE + 1; i++) {
      const r = await fetch(`${app.url}/api/stages`, { method: 'POST', headers: { ...admin, 'x-forwarded-for': '192.0.2.200' }, body: JSON.stringify({ title: `c${i}` }) });
      creates.push(r.status);
    }
    expect(creates).to.deep.equal([...Array(PER_MINUTE).fill(201), 429]);
    // An address the loopback proxy did not vouch for is not believed: the request counts for its real hop.
    expect(clientAddress('10.1.2.3', '203.0.113.1')).to.equal('10.1.2.3');
    expect(clientAddress('::ffff:127.0.0.1', '198.51.100.1, 203.0.113.9')).to.equal('203.0.113.9');
    expect(clientAddress('127.0.0.1', undefined)).to.equal('127.0.0.1');
  });

  /** A Socket.IO performer connection whose address is `ip` (X-Forwarded-For from the loopback). */
  async function connectAs(ip: string): Promise<{ join(stageId: string, key: string): Promise<Ack<unknown>>; leave(): Promise<Ack<unknown>> }> {
    const socket = io(`${app.url}/stage`, { transports: ['websocket'], reconnection: false, forceNew: true, extraHeaders: { 'x-forwarded-for': ip } });
    sockets.push(socket);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => resolve());
      socket.once('connect_error', reject);
    });
    const request = (event: string, payload: unknown) => new Promise<Ack<unknown>>((resolve) => socket.emit(event, payload, resolve));
    return {
      join: (stageId, key) => request('join', { stageId, key, displayName: `perf ${ip}` }),
      leave: () => request('leave', {}),
    };
  }

  const codeOf = (a: Ack<unknown>) => (a.ok ? 'ok' : a.error.code);

  it('refuses join floods with RATE_LIMITED per address and per stage; wrong keys count too', async () => {
    const s1 = await create('Joins 1');
    const s2 = await create('Joins 2');
    const s3 = await create('Joins 3');

    // One address joining and leaving over and over on one connection.
    const flooder = await connectAs('198.51.100.1');
    const results: string[] = [];
    for (let i = 0; i < PER_MINUTE + 2; i++) {
      const r = await flooder.join(s1.id, s1.performerKey);
      results.push(codeOf(r));
      if (r.ok) await flooder.leave();
    }
    expect(results).to.deep.equal([...Array(PER_MINUTE).fill('ok'), 'RATE_LIMITED', 'RATE_LIMITED']);
    const limited = await flooder.join(s2.id, s2.performerKey);
    expect(codeOf(limited), 'the address is limited on every stage').to.equal('RATE_LIMITED');
    expect(limited.ok ? '' : limited.error.message).to.match(/retry in \d+ s/);
    expect(codeOf(await (await connectAs('198.51.100.2')).join(s2.id, s2.performerKey)), 'another address, another stage').to.equal('ok');

    // The stage: twice the address limit, whoever asks. 5 used by the flooder, 5 more from fresh addresses.
    for (let i = 0; i < PER_MINUTE; i++) {
      expect(codeOf(await (await connectAs(`198.51.100.${10 + i}`)).join(s1.id, s1.performerKey)), `fresh address ${i}`).to.equal('ok');
    }
    const late = await connectAs('198.51.100.50');
    expect(codeOf(await late.join(s1.id, s1.performerKey)), 'the stage is over its limit').to.equal('RATE_LIMITED');
    expect(codeOf(await late.join(s3.id, s3.performerKey)), 'the same address joins another stage').to.equal('ok');

    // Guessing keys: every wrong key counts, then even the right key waits.
    const guesser = await connectAs('198.51.100.66');
    const guesses: string[] = [];
    for (let i = 0; i < PER_MINUTE + 1; i++) guesses.push(codeOf(await guesser.join(s3.id, `guess-${i}`)));
    expect(guesses).to.deep.equal([...Array(PER_MINUTE).fill('UNAUTHORIZED'), 'RATE_LIMITED']);
    expect(codeOf(await guesser.join(s3.id, s3.performerKey))).to.equal('RATE_LIMITED');
    expect(codeOf(await (await connectAs('198.51.100.67')).join(s3.id, s3.performerKey)), 'the stage itself is still open').to.equal('ok');
  });
});

describe('limits: the rate limiter stays bounded', () => {
  it('forgets idle buckets and caps the keys it tracks', () => {
    const limiter = new RateLimiter({ capacity: 3, perSecond: 1, maxKeys: 1000 });
    let t = 0;
    for (let i = 0; i < 100_000; i++) limiter.take(`k${i}`, (t += 0.001));
    expect(limiter.size, 'never more than maxKeys').to.be.at.most(1000);
    // A key in use keeps its state (it is the most recently used, not evicted).
    for (let i = 0; i < 3; i++) expect(limiter.take('hot', t)).to.equal(true);
    expect(limiter.take('hot', t)).to.equal(false);
    expect(limiter.retryAfterSeconds('hot', t)).to.equal(1);
    // After the refill time every idle bucket is full again, and the next take sweeps them all away.
    t += 5000;
    expect(limiter.take('fresh', t)).to.equal(true);
    expect(limiter.size).to.equal(1);
  });
});

describe('limits: shared buckets (cluster mode)', () => {
  it("takeShared draws on the shared buckets (the address's, then the stage's), and on this process's own while they fail", async () => {
    const calls: string[] = [];
    let failing = false;
    const buckets = {
      take: async (key: string, capacity: number, perSecond: number) => {
        if (failing) throw new Error('Redis is away');
        calls.push(`${key} ${capacity} ${perSecond.toFixed(2)}`);
        return key.includes(':a:') ? 0 : 7;
      },
    };
    const limits = new KeyedLimits(60, 2, { buckets, name: 'write' });
    expect(await limits.takeShared('198.51.100.1', 'stage1'), "the stage's wait").to.equal(7);
    expect(calls).to.deep.equal(['write:a:198.51.100.1 60 1.00', 'write:s:stage1 120 2.00']);
    expect(limits.byAddress.size, 'nothing taken locally').to.equal(0);
    failing = true;
    expect(await limits.takeShared('198.51.100.1', null), 'local stand-in').to.equal(0);
    expect(limits.byAddress.size).to.equal(1);
    const local = new KeyedLimits(1);
    expect(await local.takeShared('198.51.100.2', null)).to.equal(0);
    expect(await local.takeShared('198.51.100.2', null), 'no shared buckets: the local limit').to.be.greaterThan(0);
  });
});
