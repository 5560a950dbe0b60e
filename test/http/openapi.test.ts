// The OpenAPI document (GET /api/openapi.json): valid OpenAPI 3.1, in step with the routes the app mounts, and matched
// by every response of a tour through every operation with real data. The contract checker itself must catch
// mismatches. (Run with .mocharc.json, test/support/openapi.ts also checks every REST response of the whole run.)
import { Validator } from '@seriousme/openapi-schema-validator';
import { expect } from 'chai';
import type { App } from '../../services/app.ts';
import { createHttpApp } from '../../services/http/app.ts';
import { encode } from '../../services/pages/bundle.ts';
import { openApiDocument } from '../../services/http/openapi.ts';
import { createLogger } from '../../services/logger.ts';
import { TEST_ADMIN_TOKEN, startTestApp } from '../support/app.ts';
import { waitArchived } from '../support/archive.ts';
import { connectClient } from '../support/client.ts';
import { listenContract } from '../../services/shared/listen.ts';
import { ContractChecker, contract, expectConforms, isRestPath, mochaHooks, recorded, type CheckResult } from '../support/openapi.ts';

/** What Express keeps of a mounted router or route (its internals; read-only introspection). */
interface StackLayer {
  route?: { path: string | string[]; methods: Record<string, boolean> };
  handle: { stack?: StackLayer[] };
  rawPath?: unknown;
}

/** Every `METHOD /path` the Express app routes, nested routers included, with `:id` written `{id}`. */
function mountedRoutes(stack: StackLayer[], prefix = ''): string[] {
  const out: string[] = [];
  for (const layer of stack) {
    if (layer.route) {
      const paths = Array.isArray(layer.route.path) ? layer.route.path : [layer.route.path];
      for (const p of paths) {
        for (const [m, on] of Object.entries(layer.route.methods)) {
          if (on && m !== '_all') out.push(`${m.toUpperCase()} ${(prefix + p).replace(/:(\w+)/g, '{$1}')}`);
        }
      }
    } else if (layer.handle.stack) {
      const mount = typeof layer.rawPath === 'string' && layer.rawPath !== '/' ? layer.rawPath : '';
      out.push(...mountedRoutes(layer.handle.stack, prefix + mount));
    }
  }
  return out;
}

describe('OpenAPI document', function () {
  this.timeout(120_000);
  let app: App;
  let routes: string[];
  const admin = `Bearer ${TEST_ADMIN_TOKEN}`;

  before(async () => {
    app = await startTestApp({ HLS_SEGMENT_SECONDS: '1' });
    const express = createHttpApp({
      adminToken: TEST_ADMIN_TOKEN,
      stages: app.stages,
      onAir: app.onAir,
      timeline: app.timeline,
      calls: app.calls,
      whip: { ingest: app.whip, iceServers: [] },
      admission: app.admission,
      pool: app.pool,
      db: app.db,
      pages: { performerHtml: encode(''), listenerHtml: encode(''), adminHtml: encode(''), assets: new Map() },
      log: createLogger('error'),
      cdnDir: app.config.cdn.dir,
      hlsOrigin: null,
      archiver: app.archiver,
      downloadTtlSeconds: 300,
      nodes: app.nodes,
    });
    routes = mountedRoutes((express as unknown as { router: { stack: StackLayer[] } }).router.stack);
  });
  after(async () => {
    await app?.close();
  });

  it('GET /api/openapi.json serves a valid OpenAPI 3.1 document whose every schema compiles', async () => {
    const res = await fetch(`${app.url}/api/openapi.json`);
    expect(res.status).to.equal(200);
    expect(res.headers.get('content-type')).to.match(/^application\/json/);
    expect(res.headers.get('cache-control')).to.equal('no-store');
    await expectConforms(res);
    const doc = (await res.json()) as Record<string, unknown>;
    expect(doc).to.deep.equal(openApiDocument());
    expect(doc['openapi']).to.equal('3.1.0');

    const result = await new Validator().validate(doc);
    expect(result.errors ?? [], 'OpenAPI 3.1 schema validation').to.deep.equal([]);
    expect(result.valid).to.equal(true);

    const ids = contract()
      .operations()
      .map((op) => {
        const [method, path] = op.split(' ') as [string, string];
        return ((doc['paths'] as Record<string, Record<string, { operationId?: string }>>)[path]?.[method.toLowerCase()]?.operationId) ?? '';
      });
    expect(ids.filter((id) => id === '')).to.deep.equal([]);
    expect(new Set(ids).size, 'operationIds are unique').to.equal(ids.length);
    // Every response schema compiles (every $ref resolves); 2 cores, so this must stay cheap.
    const t0 = performance.now();
    const compiled = new ContractChecker(openApiDocument()).compileAll();
    const ms = performance.now() - t0;
    expect(compiled).to.be.greaterThan(30);
    console.log(`      ${contract().operations().length} operations, ${compiled} response schemas compiled in ${ms.toFixed(0)} ms`);
  });

  it('documents exactly the routes the app mounts under /api, and its /healthz and /metrics', () => {
    const documented = contract().operations().sort();
    const api = routes.filter((r) => r.split(' ')[1]!.startsWith('/api/')).sort();
    expect(api.length).to.be.greaterThan(8);
    expect(documented.filter((r) => r.split(' ')[1]!.startsWith('/api/')), 'the spec’s /api operations are the mounted ones').to.deep.equal(api);
    const others = routes.filter((r) => isRestPath(r.split(' ')[1]!) && !r.split(' ')[1]!.startsWith('/api/'));
    expect(others).to.include('GET /healthz');
    for (const r of others) expect(documented, `${r} is documented`).to.include(r);
  });

  it('every operation, called with real data and with bad input, answers as documented', async () => {
    const covered = new Map<string, Set<number>>();
    const call = async (method: string, path: string, opts: { auth?: string; body?: unknown; raw?: string; headers?: Record<string, string> } = {}) => {
      const headers: Record<string, string> = { ...opts.headers };
      if (opts.auth) headers['authorization'] = opts.auth;
      let body: string | undefined;
      if (opts.raw !== undefined || opts.body !== undefined) {
        headers['content-type'] = 'application/json';
        body = opts.raw ?? JSON.stringify(opts.body);
      }
      const res = await fetch(`${app.url}${path}`, { method, headers, ...(body !== undefined ? { body } : {}) });
      const result: CheckResult = await expectConforms(res, method);
      if (result.operation) covered.set(result.operation, (covered.get(result.operation) ?? new Set()).add(res.status));
      return res;
    };
    const expectError = async (res: Response, status: number, code: string) => {
      expect(res.status, `${res.url} status`).to.equal(status);
      expect(((await res.json()) as { error: { code: string } }).error.code).to.equal(code);
    };

    expect((await call('GET', '/api/openapi.json')).status).to.equal(200);
    expect((await call('GET', '/healthz')).status).to.equal(200);

    // Creating a stage: only the admin, only a valid body.
    await expectError(await call('POST', '/api/stages', { body: { title: 'x' } }), 401, 'UNAUTHORIZED');
    await expectError(await call('POST', '/api/stages', { auth: 'Bearer wrong', body: { title: 'x' } }), 401, 'UNAUTHORIZED');
    await expectError(await call('POST', '/api/stages', { auth: admin, body: { title: '' } }), 400, 'BAD_REQUEST');
    await expectError(await call('POST', '/api/stages', { auth: admin, raw: '{"title":' }), 400, 'BAD_REQUEST');
    expect((await call('POST', '/api/stages', { auth: admin, body: { title: 'x'.repeat(20_000) } })).status).to.equal(413);
    const createdRes = await call('POST', '/api/stages', { auth: admin, body: { title: 'Contract tour' } });
    expect(createdRes.status).to.equal(201);
    const stage = (await createdRes.json()) as { id: string; performerKey: string };
    const key = `Bearer ${stage.performerKey}`;

    expect((await call('GET', `/api/stages/${stage.id}`)).status).to.equal(200);
    expect((await call('GET', '/api/stages', { auth: admin })).status).to.equal(200);
    expect((await call('GET', '/api/nodes', { auth: admin })).status).to.equal(200);
    await expectError(await call('GET', '/api/nodes'), 401, 'UNAUTHORIZED');
    await expectError(await call('GET', '/api/stages'), 401, 'UNAUTHORIZED');
    await expectError(await call('GET', '/api/stages', { auth: key }), 401, 'UNAUTHORIZED');
    await expectError(await call('GET', '/api/stages/nosuchstage'), 404, 'NOT_FOUND');
    await expectError(await call('GET', `/api/stages/${encodeURIComponent('bad id!')}`), 400, 'BAD_REQUEST');
    const before = await call('GET', `/api/stages/${stage.id}/events`);
    expect(await before.json()).to.deep.equal({ broadcastId: null, originDate: null, events: [] });
    await expectError(await call('POST', `/api/stages/${stage.id}/events`, { auth: admin, body: { type: 'marker' } }), 409, 'INVALID_STATE');
    await expectError(await call('POST', `/api/stages/${stage.id}/stop`, { auth: admin }), 409, 'INVALID_STATE');

    // On air with the performer key; events; the timeline's rate limit.
    await expectError(await call('POST', `/api/stages/${stage.id}/start`, { auth: 'Bearer not-the-key' }), 401, 'UNAUTHORIZED');
    await expectError(await call('POST', '/api/stages/nosuchstage/start', { auth: key }), 404, 'NOT_FOUND');
    const started = await call('POST', `/api/stages/${stage.id}/start`, { auth: key, body: {} });
    expect(started.status).to.equal(200);
    expect(await started.json()).to.include({ status: 'live', changed: true });
    expect(await (await call('POST', `/api/stages/${stage.id}/start`, { auth: admin })).json()).to.include({ changed: false });
    expect((await call('POST', `/api/stages/${stage.id}/events`, { auth: key, body: { type: 'chapter', title: 'Opening' } })).status).to.equal(201);
    expect((await call('POST', `/api/stages/${stage.id}/events`, { auth: admin, body: { type: 'track', title: 'Song', artist: 'Band' } })).status).to.equal(201);
    await expectError(await call('POST', `/api/stages/${stage.id}/events`, { auth: key, body: { type: 'nope' } }), 400, 'BAD_REQUEST');
    await expectError(await call('POST', `/api/stages/${stage.id}/events`, { auth: key, body: { type: 'chapter', title: '<b>' } }), 400, 'BAD_REQUEST');
    const burst: number[] = [];
    for (let i = 0; i < 12; i++) burst.push((await call('POST', `/api/stages/${stage.id}/events`, { auth: key, body: { type: 'marker', label: `m${i}` } })).status);
    expect(burst, 'a burst of 12 events: the first pass, then 429').to.include(201).and.to.include(429);
    const events = (await (await call('GET', `/api/stages/${stage.id}/events`)).json()) as { events: { type: string }[] };
    expect(events.events.map((e) => e.type)).to.include.members(['chapter', 'track', 'marker']);
    const live = (await (await call('GET', `/api/stages/${stage.id}/recordings`)).json()) as { recordings: { status: string }[] };
    expect(live.recordings.map((r) => r.status)).to.deep.equal(['recording']);

    // Call-in: a listener asks to speak; the stage's calls and that call (admin or performer key); the rate (admin).
    const listener = await connectClient<typeof listenContract>(app.url, '/listen');
    expect((await listener.request('subscribe', { stageId: stage.id })).ok).to.equal(true);
    const asked = await listener.request('requestCall', { name: 'Caller', topic: 'A question' });
    expect(asked.ok, JSON.stringify(asked)).to.equal(true);
    const callId = asked.ok ? asked.data.call.id : '';
    await expectError(await call('GET', `/api/stages/${stage.id}/calls`), 401, 'UNAUTHORIZED');
    await expectError(await call('GET', `/api/stages/${stage.id}/calls`, { auth: 'Bearer wrong' }), 401, 'UNAUTHORIZED');
    await expectError(await call('GET', '/api/stages/nosuchstage/calls', { auth: admin }), 404, 'NOT_FOUND');
    const listedCalls = (await (await call('GET', `/api/stages/${stage.id}/calls`, { auth: key })).json()) as { calls: { id: string; status: string }[] };
    expect(listedCalls.calls.map((c) => [c.id, c.status])).to.deep.equal([[callId, 'waiting']]);
    const oneCall = await call('GET', `/api/calls/${callId}`, { auth: admin });
    expect(((await oneCall.json()) as { events: { type: string }[] }).events.map((e) => e.type)).to.deep.equal(['call_request']);
    await expectError(await call('GET', `/api/calls/${callId}`), 401, 'UNAUTHORIZED');
    await expectError(await call('GET', '/api/calls/not-a-uuid', { auth: admin }), 400, 'BAD_REQUEST');
    await expectError(await call('GET', '/api/calls/00000000-0000-4000-8000-000000000000', { auth: admin }), 404, 'NOT_FOUND');
    await expectError(await call('PUT', `/api/stages/${stage.id}/call-rate`, { auth: key, body: { rate: null } }), 401, 'UNAUTHORIZED');
    await expectError(await call('PUT', `/api/stages/${stage.id}/call-rate`, { auth: admin, body: { rate: { currency: 'euro', amountMinor: 1 } } }), 400, 'BAD_REQUEST');
    await expectError(await call('PUT', `/api/stages/${stage.id}/call-rate`, { auth: admin, body: { rate: { currency: 'EUR', amountMinor: 1.5 } } }), 400, 'BAD_REQUEST');
    await expectError(await call('PUT', '/api/stages/nosuchstage/call-rate', { auth: admin, body: { rate: null } }), 404, 'NOT_FOUND');
    const rateSet = await call('PUT', `/api/stages/${stage.id}/call-rate`, { auth: admin, body: { rate: { currency: 'EUR', amountMinor: 90 } } });
    expect(await rateSet.json()).to.deep.equal({ stageId: stage.id, rate: { currency: 'EUR', amountMinor: 90 } });
    listener.close();

    // The encoder panel's view: the stage's WHIP publishers (none here).
    const encoders = await call('GET', `/api/stages/${stage.id}/encoders`, { auth: key });
    expect(await encoders.json()).to.deep.equal({ stageId: stage.id, whipUrl: `${app.url}/whip/${stage.id}`, encoders: [] });
    await expectError(await call('GET', `/api/stages/${stage.id}/encoders`), 401, 'UNAUTHORIZED');
    await expectError(await call('GET', '/api/stages/nosuchstage/encoders', { auth: admin }), 404, 'NOT_FOUND');
    await new Promise((r) => setTimeout(r, 3_000));

    const stopped = await call('POST', `/api/stages/${stage.id}/stop`, { auth: admin, body: {} });
    expect(await stopped.json()).to.include({ status: 'ended', changed: true });
    expect(await (await call('POST', `/api/stages/${stage.id}/stop`, { auth: key })).json()).to.include({ changed: false });
    await expectError(await call('POST', `/api/stages/${stage.id}/start`, { auth: admin }), 409, 'INVALID_STATE');

    // The archive: listing, one recording, downloads (whole, range, unsatisfiable range, JSON), bad parameters.
    const { rec } = await waitArchived(app.url, stage.id, 30_000);
    const listed = await call('GET', `/api/stages/${stage.id}/recordings`);
    expect(((await listed.json()) as { recordings: { id: string }[] }).recordings[0]!.id).to.equal(rec.id);
    await expectError(await call('GET', '/api/stages/nosuchstage/recordings'), 404, 'NOT_FOUND');
    expect((await call('GET', `/api/recordings/${rec.id}`)).status).to.equal(200);
    await expectError(await call('GET', '/api/recordings/not-a-uuid'), 400, 'BAD_REQUEST');
    await expectError(await call('GET', '/api/recordings/00000000-0000-4000-8000-000000000000'), 404, 'NOT_FOUND');
    const audio = rec.files.find((f) => f.file === 'audio')!;
    const whole = await call('GET', audio.url);
    expect(whole.status).to.equal(200);
    expect((await whole.arrayBuffer()).byteLength).to.equal(audio.size);
    const part = await call('GET', audio.url, { headers: { range: 'bytes=0-99' } });
    expect(part.status).to.equal(206);
    expect((await part.arrayBuffer()).byteLength).to.equal(100);
    await expectError(await call('GET', audio.url, { headers: { range: `bytes=${audio.size + 10}-` } }), 416, 'BAD_REQUEST');
    const manifest = await call('GET', `/api/recordings/${rec.id}/download?file=manifest`);
    expect(((await manifest.json()) as { broadcastId: string }).broadcastId).to.equal(rec.id);
    await expectError(await call('GET', `/api/recordings/${rec.id}/download?file=everything`), 400, 'BAD_REQUEST');
    await expectError(await call('GET', `/api/recordings/${rec.id}/download?file=track:nobody`), 404, 'NOT_FOUND');

    // Metrics, where the app mounts them (admin only).
    if (routes.includes('GET /metrics')) {
      await expectError(await call('GET', '/metrics'), 401, 'UNAUTHORIZED');
      const metrics = await call('GET', '/metrics', { auth: admin });
      expect(metrics.status).to.equal(200);
      expect(await metrics.text()).to.match(/^# (HELP|TYPE) /m);
    }

    // An undocumented route gets the router's 404, which the checker accepts as the documented fallback.
    const fallback = await fetch(`${app.url}/api/nothing`);
    expect((await expectConforms(fallback)).fallback).to.equal(true);

    const mounted = contract()
      .operations()
      .filter((op) => op !== 'GET /metrics' || routes.includes('GET /metrics'));
    expect([...covered.keys()].sort(), 'every documented operation was called').to.deep.equal(mounted.sort());
    const statuses = [...covered].map(([op, s]) => `${op}: ${[...s].sort().join(',')}`);
    console.log(`      covered ${covered.size} operations: ${statuses.join('; ')}`);
  });

  it('the checker reports a response that does not match the document', () => {
    const c = contract();
    const view = { id: 'abcdef', title: 'T', status: 'idle', performers: [], hlsUrl: 'http://x/live/abcdef/index.m3u8', listenUrl: 'http://x/listen/abcdef', startedAt: null, endedAt: null };
    const json = { 'content-type': 'application/json; charset=utf-8' };
    const get = (status: number, body: unknown, headers: Record<string, string> = json, path = '/api/stages/abcdef', method = 'GET') =>
      c.check({ method, url: `http://127.0.0.1:1${path}`, status, headers, body });

    expect(get(200, view)).to.deep.equal({ operation: 'GET /api/stages/{id}', fallback: false, violations: [] });
    const { title: _t, ...noTitle } = view;
    expect(get(200, noTitle).violations.join('\n')).to.match(/must have required property 'title'/);
    expect(get(200, { ...view, secret: 1 }).violations.join('\n')).to.match(/must NOT have additional properties \(secret\)/);
    expect(get(200, { ...view, status: 'paused' }).violations.join('\n')).to.match(/\/status must be equal to one of the allowed values/);
    expect(get(200, { ...view, startedAt: 'yesterday' }).violations.join('\n')).to.match(/\/startedAt must match format "date-time"/);
    expect(get(200, view, { 'content-type': 'text/html' }).violations.join('\n')).to.match(/content type text\/html is not documented/);
    expect(get(418, view).violations.join('\n')).to.match(/status 418 is not documented for GET \/api\/stages\/\{id\}/);
    expect(get(404, { ok: false, error: { code: 'UNAUTHORIZED', message: 'x' } }).violations.join('\n')).to.match(/\/error\/code must be equal to one of the allowed values/);
    expect(get(404, { ok: false, error: { code: 'NOT_FOUND', message: '' } }).violations.join('\n')).to.match(/\/error\/message must NOT have fewer than 1 characters/);
    expect(c.check({ method: 'GET', url: 'http://127.0.0.1:1/api/stages/abcdef', status: 200, headers: json }).violations.join('\n')).to.match(/not valid JSON/);
    // A 201 without its Location header; an undocumented method or path that is not the router's 404.
    const created = { ...view, performerKey: 'k', performerUrl: 'http://x/stage/abcdef?key=k', whipUrl: 'http://x/whip/abcdef' };
    const { performers: _p, startedAt: _s, endedAt: _e, ...createdBody } = created;
    expect(get(201, createdBody, { ...json, location: '/api/stages/abcdef' }, '/api/stages', 'POST').violations).to.deep.equal([]);
    expect(get(201, createdBody, json, '/api/stages', 'POST').violations.join('\n')).to.match(/missing required header Location/);
    expect(get(200, {}, json, '/api/stages/abcdef', 'DELETE').violations.join('\n')).to.match(/method DELETE is not documented/);
    expect(get(200, {}, json, '/api/everything').violations.join('\n')).to.match(/path is not documented/);
    expect(get(404, { ok: false, error: { code: 'NOT_FOUND', message: 'no such API route' } }, json, '/api/everything').fallback).to.equal(true);
    expect(get(404, { ok: false, error: { code: 'NOT_FOUND', message: 'x' } }, json, '/healthz', 'POST').violations.join('\n')).to.match(/not documented/);
    // healthz: every field as the contract says.
    const health = { workers: 1, db: 'ok', dbBacklog: 0, problems: [] };
    expect(get(200, { ...health, status: 'degraded', db: 'error', dbBacklog: 3 }, json, '/healthz').violations).to.deep.equal([]);
    expect(get(200, { ...health, status: 'fine' }, json, '/healthz').violations).to.have.length(1);
    expect(get(200, { status: 'ok', workers: 1, db: 'ok' }, json, '/healthz').violations.join('\n'), 'a health without its backlog and problems').to.match(/required property 'dbBacklog'/);
    expect(get(503, { status: 'draining' }, json, '/healthz').violations).to.deep.equal([]);
    expect(get(503, { ...health, status: 'down', workers: 0 }, json, '/healthz').violations).to.deep.equal([]);
    expect(get(503, { ...health, status: 'ok', workers: 2 }, json, '/healthz').violations, 'a 503 that says ok').to.not.deep.equal([]);
  });

  it('as a root hook, records and validates the REST responses of the run', async function () {
    if (!(globalThis.fetch as { name?: string }).name?.startsWith('checkedFetch')) this.skip(); // run without the plugin
    const before = recorded.validated;
    await fetch(`${app.url}/api/stages/nosuchstage`);
    await fetch(`${app.url}/live/nosuchstage/index.m3u8`); // not REST: not recorded
    await Promise.allSettled([...recorded.pending]);
    expect(recorded.validated - before).to.equal(1);
    expect(recorded.operations.get('GET /api/stages/{id}')).to.be.greaterThan(0);
    expect(mochaHooks.afterAll).to.be.a('function');
  });
});
