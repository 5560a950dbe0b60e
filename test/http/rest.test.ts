// REST API per DESIGN.md, against a real app: stage creation, lookup, health, and bad input.
import { expect } from 'chai';
import type { App } from '../../services/app.ts';
import { PerformerSessionRepo, StageRepo } from '../../services/db/repositories.ts';
import { keyMatches } from '../../services/auth.ts';
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

  it('serves the performer page and its bundled script', async () => {
    const stage = await createStage(app);
    const page = await fetch(stage.performerUrl);
    expect(page.status).to.equal(200);
    const html = await page.text();
    expect(html).to.include('Join stage');
    expect(html).to.include('/assets/performer.js');
    const js = await fetch(`${app.url}/assets/performer.js`);
    expect(js.headers.get('content-type')).to.match(/javascript/);
    expect((await js.text()).length).to.be.greaterThan(100_000);
  });
});
