// The /stage Socket.IO protocol against a real server (real mediasoup workers) with Node clients.
import { expect } from 'chai';
import type { App } from '../../services/app.ts';
import { MAX_MESSAGE_BYTES, stageContract } from '../../services/shared/stage.ts';
import { createStage, startTestApp } from '../support/app.ts';
import { connectClient, type TestClient } from '../support/client.ts';

describe('signaling: /stage protocol', function () {
  this.timeout(60_000);
  let app: App;
  const clients: TestClient[] = [];
  const client = async () => {
    const c = await connectClient(app.url);
    clients.push(c);
    return c;
  };

  before(async () => {
    app = await startTestApp({ MAX_PERFORMERS_PER_STAGE: '2' });
  });
  afterEach(() => {
    for (const c of clients.splice(0)) c.close();
  });
  after(async () => {
    await app?.close();
  });

  it('join returns the router capabilities and the others on stage; others are told of joins and leaves', async () => {
    const stage = await createStage(app);
    const a = await client();
    const ja = await a.request('join', { stageId: stage.id, key: stage.performerKey, displayName: 'A' });
    expect(ja.ok).to.equal(true);
    if (!ja.ok) return;
    expect(ja.data.performers).to.deep.equal([]);
    expect((ja.data.routerRtpCapabilities as { codecs: { mimeType: string }[] }).codecs.map((c) => c.mimeType)).to.include('audio/opus');

    const joinedSeen = new Promise<{ performer: { displayName: string } }>((r) => a.socket.once('performerJoined', r));
    const b = await client();
    const jb = await b.request('join', { stageId: stage.id, key: stage.performerKey, displayName: 'B' });
    expect(jb.ok).to.equal(true);
    if (!jb.ok) return;
    expect(jb.data.performers.map((p) => p.displayName)).to.deep.equal(['A']);
    expect((await joinedSeen).performer.displayName).to.equal('B');

    const leftSeen = new Promise<{ performerId: string; reason: string }>((r) => a.socket.once('performerLeft', r));
    expect((await b.request('leave', {})).ok).to.equal(true);
    expect(await leftSeen).to.deep.equal({ performerId: jb.data.performerId, reason: 'left' });

    const mutedSeen = new Promise<{ performer: { muted: boolean } }>((r) => b.socket.once('performerUpdated', r));
    expect((await b.request('join', { stageId: stage.id, key: stage.performerKey, displayName: 'B2' })).ok).to.equal(true);
    expect((await a.request('setMuted', { muted: true })).ok).to.equal(true);
    expect((await mutedSeen).performer.muted).to.equal(true);

    const disconnectSeen = new Promise<{ reason: string }>((r) => b.socket.once('performerLeft', r));
    a.close();
    expect((await disconnectSeen).reason).to.equal('disconnected');
  });

  it('refuses a wrong performer key, an unknown stage, and the performer past the limit, with clear errors', async () => {
    const stage = await createStage(app);
    const other = await createStage(app);
    const c = await client();
    const wrong = await c.request('join', { stageId: stage.id, key: other.performerKey, displayName: 'X' });
    expect(wrong).to.deep.equal({ ok: false, error: { code: 'UNAUTHORIZED', message: 'wrong performer key for this stage' } });
    const unknown = await c.request('join', { stageId: 'nosuchstage', key: stage.performerKey, displayName: 'X' });
    expect(unknown.ok === false && unknown.error.code).to.equal('NOT_FOUND');

    const [p1, p2, p3] = [await client(), await client(), await client()];
    for (const [p, name] of [[p1, 'one'], [p2, 'two']] as const) {
      expect((await p.request('join', { stageId: stage.id, key: stage.performerKey, displayName: name })).ok).to.equal(true);
    }
    const full = await p3.request('join', { stageId: stage.id, key: stage.performerKey, displayName: 'three' });
    expect(full).to.deep.equal({ ok: false, error: { code: 'STAGE_FULL', message: 'this stage is full (2 performers)' } });
    p1.close();
    await new Promise((r) => setTimeout(r, 200));
    expect((await p3.request('join', { stageId: stage.id, key: stage.performerKey, displayName: 'three' })).ok, 'a seat frees when one leaves').to.equal(true);
  });

  it('answers at least 50 malformed, oversized or wrongly-typed payloads with error acks and keeps serving a healthy performer', async () => {
    const stage = await createStage(app);
    const healthy = await client();
    expect((await healthy.request('join', { stageId: stage.id, key: stage.performerKey, displayName: 'Healthy' })).ok).to.equal(true);
    const send = await healthy.request('createTransport', { direction: 'send' });
    expect(send.ok).to.equal(true);

    const fuzzer = await client();
    const big = 'x'.repeat(4096);
    const cases: [string, unknown[]][] = [];
    const badValues: unknown[] = [undefined, null, 0, 42, 'join', true, [], [1, 2], { evil: 1 }, { __proto__: { polluted: true } }];
    for (const name of Object.keys(stageContract.requests)) {
      for (const v of badValues) if (!(name === 'leave' && typeof v === 'object' && v !== null && !Array.isArray(v) && Object.keys(v).length === 0)) cases.push([name, [v]]);
    }
    cases.push(
      ['join', [{ stageId: stage.id, key: stage.performerKey }]],
      ['join', [{ stageId: stage.id, key: stage.performerKey, displayName: '' }]],
      ['join', [{ stageId: stage.id, key: stage.performerKey, displayName: big }]],
      ['join', [{ stageId: stage.id, key: stage.performerKey, displayName: '<script>alert(1)</script>' }]],
      ['join', [{ stageId: '../../etc', key: 'k', displayName: 'x' }]],
      ['join', [{ stageId: stage.id, key: big, displayName: 'x' }]],
      ['join', [{ stageId: 12345678, key: stage.performerKey, displayName: 'x' }]],
      ['join', [{ stageId: stage.id, key: stage.performerKey, displayName: 'x', extra: 1 }]],
      ['join', [{ stageId: stage.id, key: stage.performerKey, displayName: 'x' }, 'second arg']],
      ['createTransport', [{ direction: 'sideways' }]],
      ['connectTransport', [{ transportId: 'nope', dtlsParameters: { fingerprints: [] } }]],
      ['produce', [{ transportId: 'nope', kind: 'video', rtpParameters: {} }]],
      ['consume', [{ producerId: 'p', rtpCapabilities: { codecs: 'all' } }]],
      ['setMuted', [{ muted: 'yes' }]],
      ['resumeConsumer', [{ consumerId: { $gt: '' } }]],
      ['no-such-event', [{}]],
      ['__proto__', [{}]],
      ['constructor', [{}]],
    );
    // Not joined: every well-formed request but join is refused as NOT_JOINED.
    cases.push(['createTransport', [{ direction: 'send' }]], ['setMuted', [{ muted: true }]], ['leave', [{}]]);
    expect(cases.length).to.be.at.least(50);

    for (const [event, args] of cases) {
      const res = (await fuzzer.raw(event, args)) as { ok: boolean; error?: { code: string; message: string } } | null;
      expect(res, `${event} ${JSON.stringify(args)?.slice(0, 80)} gets an ack`).to.not.equal(null);
      expect(res!.ok, `${event} ${JSON.stringify(args)?.slice(0, 80)} is refused`).to.equal(false);
      expect(res!.error!.code).to.match(/^[A-Z_]+$/);
      expect(res!.error!.message).to.be.a('string').and.not.equal('');
    }

    // Semantically wrong requests from a joined performer: errors, not crashes.
    const sendId = send.ok ? send.data.id : '';
    const semantic: [string, unknown][] = [
      ['createTransport', { direction: 'send' }],
      ['connectTransport', { transportId: 'unknown', dtlsParameters: { role: 'client', fingerprints: [{ algorithm: 'sha-256', value: 'AB' }] } }],
      ['connectTransport', { transportId: sendId, dtlsParameters: { role: 'client', fingerprints: [{ algorithm: 'md5000', value: 'zz' }] } }],
      ['produce', { transportId: sendId, kind: 'audio', rtpParameters: { codecs: [{ mimeType: 'audio/nonsense' }] } }],
      ['produce', { transportId: sendId, kind: 'audio', rtpParameters: { codecs: [{}], encodings: [{ ssrc: 'x' }] } }],
      ['consume', { producerId: 'unknown', rtpCapabilities: { codecs: [] } }],
      ['resumeConsumer', { consumerId: 'unknown' }],
      ['restartIce', { transportId: 'unknown' }],
      ['join', { stageId: stage.id, key: stage.performerKey, displayName: 'Again' }],
    ];
    for (const [event, payload] of semantic) {
      const res = (await healthy.raw(event, [payload])) as { ok: boolean; error?: { code: string } };
      expect(res.ok, `${event} ${JSON.stringify(payload).slice(0, 80)} is refused`).to.equal(false);
      expect(res.error!.code, `${event} is not an internal error`).to.not.equal('INTERNAL');
    }

    // No ack: nothing to answer, nothing must break.
    fuzzer.socket.emit('join', { stageId: stage.id });
    fuzzer.socket.emit('join');

    // Oversized: the server drops the connection rather than buffer it.
    const oversized = await client();
    const dropped = new Promise<string>((r) => oversized.socket.once('disconnect', r));
    oversized.socket.emit('join', { stageId: 'x'.repeat(MAX_MESSAGE_BYTES * 2) }, () => undefined);
    expect(await dropped).to.be.a('string');

    const recv = await healthy.request('createTransport', { direction: 'recv' });
    expect(recv.ok, 'the healthy performer is still served').to.equal(true);
    const health = (await (await fetch(`${app.url}/healthz`)).json()) as { status: string };
    expect(health.status).to.equal('ok');
    const view = (await (await fetch(`${app.url}/api/stages/${stage.id}`)).json()) as { performers: { displayName: string }[] };
    expect(view.performers.map((p) => p.displayName)).to.deep.equal(['Healthy']);
  });

  it('frees everything when performers go: transports, the router, and (on close) the worker processes', async () => {
    const stage = await createStage(app);
    const a = await client();
    const b = await client();
    for (const [c, name] of [[a, 'A'], [b, 'B']] as const) {
      expect((await c.request('join', { stageId: stage.id, key: stage.performerKey, displayName: name })).ok).to.equal(true);
      expect((await c.request('createTransport', { direction: 'send' })).ok).to.equal(true);
      expect((await c.request('createTransport', { direction: 'recv' })).ok).to.equal(true);
    }
    const media = app.registry.get(stage.id)!;
    const routerId = media.router.id;
    const dumpBefore = (await media.worker.dump()) as { routerIds: string[] };
    expect(dumpBefore.routerIds).to.include(routerId);
    expect(((await media.router.dump()) as { transportIds: string[] }).transportIds).to.have.length(4);

    expect((await a.request('leave', {})).ok).to.equal(true);
    expect(((await media.router.dump()) as { transportIds: string[] }).transportIds, "a leave closes that performer's transports").to.have.length(2);
    b.close();
    for (let i = 0; i < 40 && app.registry.get(stage.id); i++) await new Promise((r) => setTimeout(r, 25));
    expect(app.registry.get(stage.id), 'stage media closed when empty').to.equal(undefined);
    expect(media.router.closed).to.equal(true);
    const dumpAfter = (await media.worker.dump()) as { routerIds: string[] };
    expect(dumpAfter.routerIds, 'the worker holds no router of that stage').to.not.include(routerId);
    expect(media.listenerCount('performerLeft'), 'no listeners left on the closed stage').to.equal(0);
  });

  it('app.close() stops every worker process it started', async () => {
    const other = await startTestApp();
    const pids = other.pool.workers.map((w) => w.worker.pid);
    expect(pids.length).to.be.greaterThan(0);
    await other.close();
    for (const pid of pids) {
      let alive = true;
      try {
        process.kill(pid, 0);
      } catch {
        alive = false;
      }
      expect(alive, `worker ${pid} exited`).to.equal(false);
    }
  });
});
