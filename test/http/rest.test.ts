// REST API per DESIGN.md, against a real app: stage creation, lookup, health, and bad input.
import http from 'node:http';
import zlib from 'node:zlib';
import { expect } from 'chai';
import type { App } from '../../services/app.ts';
import { PerformerSessionRepo, StageRepo } from '../../services/db/repositories.ts';
import { keyMatches } from '../../services/auth.ts';
import type { StageList } from '../../services/shared/rest.ts';
import { TEST_ADMIN_TOKEN, createStage, startTestApp } from '../support/app.ts';
import { connectClient } from '../support/client.ts';

describe('REST API', function () {
  this.timeout(30_000);
  let app: App;
  const admin = { authorization: `Bearer ${TEST_ADMIN_TOKEN}`, 'content-type': 'application/json' };

  before(async () => {
    app = await startTestApp({ PUBLIC_HLS_BASE_URL: 'https://cdn.example.test/live' });
  });
  after(async () => {
    await app?.close();
  });

  it('POST /api/stages creates a stage and returns its key and URLs; the key is stored only as a hash', async () => {
    const res = await fetch(`${app.url}/api/stages`, { method: 'POST', headers: admin, body: JSON.stringify({ title: '  Morning show ' }) });
    expect(res.status).to.equal(201);
    const body = (await res.json()) as Record<string, string>;
    expect(Object.keys(body).sort()).to.deep.equal(['hlsUrl', 'id', 'listenUrl', 'performerKey', 'performerUrl', 'status', 'title', 'whipUrl']);
    expect(body['title']).to.equal('Morning show');
    expect(body['status']).to.equal('idle');
    expect(res.headers.get('location')).to.equal(`/api/stages/${body['id']}`);
    expect(Buffer.from(body['performerKey']!, 'base64url').length * 8, 'key bits').to.be.at.least(128);
    expect(body['performerUrl']).to.equal(`${app.url}/stage/${body['id']}?key=${body['performerKey']}`);
    expect(body['listenUrl']).to.equal(`${app.url}/listen/${body['id']}`);
    expect(body['whipUrl'], 'where an encoder publishes (WHIP)').to.equal(`${app.url}/whip/${body['id']}`);
    expect(body['hlsUrl'], 'HLS URL points at the configured CDN').to.equal(`https://cdn.example.test/live/${body['id']}/index.m3u8`);

    const rec = await new StageRepo(app.db).get(body['id']!);
    expect(rec!.performerKeyHash).to.not.include(body['performerKey']!);
    expect(keyMatches(body['performerKey']!, rec!.performerKeyHash)).to.equal(true);
    expect(keyMatches(`${body['performerKey']}x`, rec!.performerKeyHash)).to.equal(false);
  });

  it('GET /api/stages/:id shows status, performers and URLs; performer sessions are recorded with join and leave times', async () => {
    const stage = await createStage(app, 'Lookup');
    const c = await connectClient(app.url);
    const joined = await c.request('join', { stageId: stage.id, key: stage.performerKey, displayName: 'Dee' });
    expect(joined.ok).to.equal(true);
    const res = await fetch(`${app.url}/api/stages/${stage.id}`);
    expect(res.status).to.equal(200);
    const view = (await res.json()) as Record<string, unknown>;
    expect(view).to.deep.include({ id: stage.id, title: 'Lookup', status: 'idle', startedAt: null, endedAt: null });
    expect(view['performers']).to.have.length(1);
    expect((view['performers'] as { displayName: string; muted: boolean }[])[0]).to.include({ displayName: 'Dee', muted: false });
    expect(view).to.not.have.property('performerKey');

    const performerId = joined.ok ? joined.data.performerId : '';
    const sessions = new PerformerSessionRepo(app.db);
    const open = await sessions.listOpen(stage.id);
    expect(open.map((s) => s.performerId), 'one open session, of this performer').to.deep.equal([performerId]);
    const sessionId = open[0]!.id;
    c.close();
    let closed = await sessions.get(sessionId);
    for (let i = 0; i < 40 && !closed?.leftAt; i++) {
      await new Promise((r) => setTimeout(r, 50));
      closed = await sessions.get(sessionId);
    }
    expect(closed!.leftAt).to.be.instanceOf(Date);
    expect(closed!.leftAt!.getTime()).to.be.at.least(closed!.joinedAt.getTime());
    expect(closed!.leaveReason).to.equal('disconnected');
  });

  it('GET /api/stages lists every stage newest first for the admin, without performer links; refuses without the admin token', async () => {
    const a = await createStage(app, 'Listed first');
    const b = await createStage(app, 'Listed second');
    expect((await fetch(`${app.url}/api/stages`)).status).to.equal(401);
    expect((await fetch(`${app.url}/api/stages`, { headers: { authorization: 'Bearer not-the-admin-token-at-all' } })).status).to.equal(401);
    const res = await fetch(`${app.url}/api/stages`, { headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}` } });
    expect(res.status).to.equal(200);
    const { stages } = (await res.json()) as StageList;
    const ids = stages.map((s) => s.id);
    expect(ids).to.include.members([a.id, b.id]);
    expect(ids.indexOf(b.id), 'newest first').to.be.lessThan(ids.indexOf(a.id));
    const item = stages.find((s) => s.id === a.id)!;
    expect(item).to.include({ title: 'Listed first', status: 'idle', performers: 0, listenUrl: `${app.url}/listen/${a.id}`, hlsUrl: `https://cdn.example.test/live/${a.id}/index.m3u8` });
    expect(JSON.stringify(stages)).to.not.include(a.performerKey);
  });

  it('GET /healthz reports workers, the database, held writes and recent problems', async () => {
    const res = await fetch(`${app.url}/healthz`);
    expect(res.status).to.equal(200);
    expect(await res.json()).to.deep.equal({ status: 'ok', workers: app.pool.workers.length, db: 'ok', dbBacklog: 0, problems: [] });
    app.problems.note('stage x: broadcast y failed: a test problem');
    const degraded = await fetch(`${app.url}/healthz`);
    expect(degraded.status, 'degraded is still up').to.equal(200);
    expect(await degraded.json()).to.deep.include({ status: 'degraded', problems: ['stage x: broadcast y failed: a test problem'] });
  });

  it('refuses bad requests with a 4xx and a stable error body', async () => {
    const post = (headers: Record<string, string>, body: string) => fetch(`${app.url}/api/stages`, { method: 'POST', headers, body });
    const cases: [string, Promise<Response>, number, string][] = [
      ['no token', post({ 'content-type': 'application/json' }, '{"title":"x"}'), 401, 'UNAUTHORIZED'],
      ['wrong token', post({ ...admin, authorization: 'Bearer nope' }, '{"title":"x"}'), 401, 'UNAUTHORIZED'],
      ['not a bearer', post({ ...admin, authorization: TEST_ADMIN_TOKEN }, '{"title":"x"}'), 401, 'UNAUTHORIZED'],
      ['invalid JSON', post(admin, '{"title":'), 400, 'BAD_REQUEST'],
      ['no title', post(admin, '{}'), 400, 'BAD_REQUEST'],
      ['empty title', post(admin, '{"title":"   "}'), 400, 'BAD_REQUEST'],
      ['number title', post(admin, '{"title":5}'), 400, 'BAD_REQUEST'],
      ['long title', post(admin, JSON.stringify({ title: 'x'.repeat(121) })), 400, 'BAD_REQUEST'],
      ['control chars', post(admin, JSON.stringify({ title: 'a\u0000b' })), 400, 'BAD_REQUEST'],
      ['extra field', post(admin, '{"title":"x","status":"live"}'), 400, 'BAD_REQUEST'],
      ['array body', post(admin, '[{"title":"x"}]'), 400, 'BAD_REQUEST'],
      ['JSON null', post(admin, 'null'), 400, 'BAD_REQUEST'],
      ['not JSON', post({ ...admin, 'content-type': 'text/plain' }, 'title=x'), 400, 'BAD_REQUEST'],
      ['oversized', post(admin, JSON.stringify({ title: 'x'.repeat(40_000) })), 413, 'BAD_REQUEST'],
      ['bad stage id', fetch(`${app.url}/api/stages/${encodeURIComponent('../../etc/passwd')}`), 400, 'BAD_REQUEST'],
      ['unknown stage', fetch(`${app.url}/api/stages/doesnotexist`), 404, 'NOT_FOUND'],
      ['unknown route', fetch(`${app.url}/api/nothing`), 404, 'NOT_FOUND'],
      ['unknown asset', fetch(`${app.url}/assets/..%2f..%2fpackage.json`), 404, 'NOT_FOUND'],
    ];
    for (const [name, req, status, code] of cases) {
      const res = await req;
      expect(res.status, name).to.equal(status);
      const body = (await res.json()) as { ok: boolean; error: { code: string; message: string } };
      expect(body.ok, name).to.equal(false);
      expect(body.error.code, name).to.equal(code);
      expect(body.error.message, name).to.be.a('string').and.not.equal('');
    }
    expect((await fetch(`${app.url}/healthz`)).status, 'still healthy').to.equal(200);
  });

  it('serves the pages and their scripts compressed (brotli or gzip), under content-hashed names cached for a year, with source maps', async () => {
    const stage = await createStage(app);
    const page = await rawGet(stage.performerUrl, 'gzip, deflate, br');
    expect(page.status).to.equal(200);
    expect(page.headers['content-encoding'], 'the page, compressed').to.equal('br');
    expect(page.headers['vary']).to.match(/accept-encoding/i);
    const html = (await (await fetch(stage.performerUrl)).text());
    expect(html).to.include('Join stage');
    const script = /\/assets\/(performer\.[0-9a-f]{10}\.js)/.exec(html)?.[1];
    const style = /\/assets\/(style\.[0-9a-f]{10}\.css)/.exec(html)?.[1];
    expect(script, 'the script by a content-hashed name').to.be.a('string');
    expect(style, 'the stylesheet by a content-hashed name').to.be.a('string');

    const plain = await rawGet(`${app.url}/assets/${script!}`, '');
    const br = await rawGet(`${app.url}/assets/${script!}`, 'br');
    const gzip = await rawGet(`${app.url}/assets/${script!}`, 'gzip;q=1, br;q=0');
    expect(plain.headers['content-type']).to.match(/javascript/);
    expect(plain.headers['content-encoding'], 'no encoding asked, none given').to.equal(undefined);
    expect(plain.body.length).to.be.greaterThan(100_000);
    expect(br.headers['content-encoding']).to.equal('br');
    expect(gzip.headers['content-encoding'], 'br refused with q=0: gzip').to.equal('gzip');
    expect(br.body.length, 'brotli at most a third of the script').to.be.below(plain.body.length / 3);
    expect(zlib.brotliDecompressSync(br.body).equals(plain.body), 'brotli decodes to the script').to.equal(true);
    expect(zlib.gunzipSync(gzip.body).equals(plain.body), 'gzip decodes to the script').to.equal(true);
    expect(plain.headers['cache-control'], 'a hashed name is cached for good').to.equal('public, max-age=31536000, immutable');

    const map = /\/\/# sourceMappingURL=(\S+)\s*$/.exec(plain.body.toString())?.[1];
    expect(map, 'the script names its source map').to.equal(`${script!}.map`);
    const sourceMap = (await (await fetch(`${app.url}/assets/${map!}`)).json()) as { version: number; sources: string[] };
    expect(sourceMap.version).to.equal(3);
    expect(sourceMap.sources.some((s) => s.endsWith('performer/main.ts')), 'the map reaches the page\'s source').to.equal(true);

    const unhashed = await rawGet(`${app.url}/assets/performer.js`, '');
    expect(unhashed.status, 'the plain name still answers').to.equal(200);
    expect(unhashed.headers['cache-control'], 'and revalidates').to.equal('no-cache');
    expect(unhashed.body.equals(plain.body)).to.equal(true);
  });

  it('the listener page weighs less than half over the wire, compressed, than it did uncompressed', async () => {
    const stage = await createStage(app);
    const listenUrl = `${app.url}/listen/${stage.id}`;
    const html = await (await fetch(listenUrl)).text();
    const assets = [...html.matchAll(/\/assets\/([\w.-]+)/g)].map((m) => `${app.url}/assets/${m[1]!}`);
    expect(assets.length, 'the script and the stylesheet').to.equal(2);
    const weigh = async (accept: string) => (await Promise.all([listenUrl, ...assets].map((u) => rawGet(u, accept)))).reduce((n, r) => n + r.body.length, 0);
    const before = await weigh('');
    const after = await weigh('gzip, deflate, br');
    console.log(`      listener page over the wire: ${(before / 1024).toFixed(0)} KiB uncompressed, ${(after / 1024).toFixed(0)} KiB with brotli (${((after / before) * 100).toFixed(0)} %)`);
    expect(after, 'bytes with compression').to.be.below(before / 2);
  });
});

/** A GET whose body is what came over the wire (fetch would decode it). */
function rawGet(url: string, acceptEncoding: string): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers: acceptEncoding ? { 'accept-encoding': acceptEncoding } : {} }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}
