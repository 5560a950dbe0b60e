// Call-in's rules on the server, with Node Socket.IO clients against a real app (real mediasoup, the embedded
// database): only a performer's connection takes, turns down, mutes or ends a call; one request per listener; a
// bounded queue; requests limited per address; expiry; a full stage; malformed payloads fuzzed as on /stage. Every
// outcome is recorded with its reason.
import { expect } from 'chai';
import type { App } from '../../services/app.ts';
import { CallRepo } from '../../services/db/calls.ts';
import type { CallView } from '../../services/shared/calls.ts';
import { listenContract, type ListenContract } from '../../services/shared/listen.ts';
import { stageContract } from '../../services/shared/stage.ts';
import { createStage, startTestApp, TEST_ADMIN_TOKEN, transition } from '../support/app.ts';
import { eventually } from '../support/browser.ts';
import { connectClient, type TestClient } from '../support/client.ts';

const TTL_S = 5;
const QUEUE_MAX = 3;
const PER_MINUTE = 4;

type Ack = { ok: boolean; data?: { call: CallView }; error?: { code: string; message: string } };

describe('signaling: call-in rules', function () {
  this.timeout(90_000);
  let app: App;
  const clients: TestClient<never>[] = [];
  let nextAddress = 1;

  /** A listener subscribed to the stage, from its own address unless one is given. */
  const listener = async (stageId: string, address = `198.51.100.${nextAddress++}`): Promise<TestClient<ListenContract>> => {
    const c = await connectClient<ListenContract>(app.url, '/listen', { forwardedFor: address });
    clients.push(c as TestClient<never>);
    expect((await c.request('subscribe', { stageId })).ok).to.equal(true);
    return c;
  };
  const performer = async (stage: { id: string; performerKey: string }, name: string): Promise<TestClient> => {
    const c = await connectClient(app.url);
    clients.push(c as TestClient<never>);
    const j = await c.request('join', { stageId: stage.id, key: stage.performerKey, displayName: name });
    expect(j.ok, JSON.stringify(j)).to.equal(true);
    return c;
  };
  /** The next `call` event of a listener that satisfies pred. */
  const callEvent = (c: TestClient<ListenContract>, pred: (call: CallView, position: number | null) => boolean) =>
    new Promise<{ call: CallView; position: number | null }>((resolve) => {
      const on = (e: { call: CallView; position: number | null }) => {
        if (!pred(e.call, e.position)) return;
        c.socket.off('call', on);
        resolve(e);
      };
      c.socket.on('call', on);
    });
  const ask = async (c: TestClient<ListenContract>, name: string, topic?: string) => (await c.raw('requestCall', [{ name, ...(topic ? { topic } : {}) }])) as Ack;

  before(async () => {
    app = await startTestApp({
      MAX_PERFORMERS_PER_STAGE: '2',
      CALL_QUEUE_MAX: String(QUEUE_MAX),
      CALL_REQUEST_TTL_SECONDS: String(TTL_S),
      CALL_REQUESTS_PER_MINUTE: String(PER_MINUTE),
    });
  });
  afterEach(() => {
    for (const c of clients.splice(0)) c.close();
  });
  after(async () => {
    await app?.close();
  });

  it('only performers take, decline, mute and end calls; one request per listener; a bounded queue; a full stage; each outcome recorded with its reason', async () => {
    const stage = await createStage(app, 'Rules');
    const l1 = await listener(stage.id);
    const early = await ask(l1, 'Early');
    expect(early.error?.code, 'no calls while off air').to.equal('INVALID_STATE');
    await transition(app, stage.id, 'start');

    const host = await performer(stage, 'Host');
    const queueSeen: CallView[][] = [];
    host.socket.on('callQueue', ({ calls }: { calls: CallView[] }) => queueSeen.push(calls));

    const waiting1 = callEvent(l1, (c) => c.status === 'waiting');
    const r1 = await ask(l1, 'Ann', 'Traffic');
    expect(r1.ok, JSON.stringify(r1)).to.equal(true);
    expect(r1.data!.call).to.deep.include({ status: 'waiting', name: 'Ann', topic: 'Traffic', performerId: null, bill: null });
    expect((await waiting1).position).to.equal(1);
    expect((await ask(l1, 'Ann again')).error, 'a second request from the same listener').to.deep.include({ code: 'INVALID_STATE' });

    const [l2, l3, l4] = [await listener(stage.id), await listener(stage.id), await listener(stage.id)];
    expect((await ask(l2, 'Bob')).ok).to.equal(true);
    expect((await ask(l3, 'Cat')).ok).to.equal(true);
    const full = await ask(l4, 'Dan');
    expect(full.error?.code, 'a full queue').to.equal('QUEUE_FULL');
    expect(full.error?.message).to.match(/queue is full \(3 waiting\)/);
    await eventually(async () => queueSeen.at(-1) ?? [], (q) => q.length === 3, 2_000);
    expect(queueSeen.at(-1)!.map((c) => c.name), 'the performer sees the queue, oldest first').to.deep.equal(['Ann', 'Bob', 'Cat']);
    const [ann, bob, cat] = queueSeen.at(-1)!;
    // /metrics and the admin view count them.
    const scrape = async () => (await (await fetch(`${app.url}/metrics`, { headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}` } })).text());
    const metric = (text: string, labels: string) => Number(new RegExp(`^stage_radio_stage_calls\\{${labels}\\} (\\d+)$`, 'm').exec(text)?.[1] ?? NaN);
    let text = await scrape();
    expect(metric(text, `stage="${stage.id}",state="waiting"`), 'waiting, per stage').to.equal(3);
    expect(metric(text, `stage="${stage.id}",state="on_air"`)).to.equal(0);
    expect(Number(/^stage_radio_calls\{state="waiting"\} (\d+)$/m.exec(text)?.[1]), 'waiting, all stages').to.equal(3);
    let snap = await app.admin.snapshot();
    expect(snap.stages.find((s) => s.id === stage.id)?.calls).to.deep.equal({ waiting: 3, onAir: 0 });
    expect(snap.totals).to.include({ callsWaiting: 3, callsOnAir: 0 });

    // A listener connection cannot act as a host: those events do not exist on /listen, and /stage needs a join.
    for (const event of ['acceptCall', 'declineCall', 'muteCall', 'hangUpCall']) {
      const res = (await l2.raw(event, [{ callId: ann!.id, muted: true }])) as Ack;
      expect(res.ok, `${event} from a listener`).to.equal(false);
      expect(res.error!.code).to.equal('BAD_REQUEST');
    }
    const stranger = await connectClient(app.url);
    clients.push(stranger as TestClient<never>);
    expect(((await stranger.raw('acceptCall', [{ callId: ann!.id }])) as Ack).error?.code, 'an unjoined /stage connection').to.equal('NOT_JOINED');
    // A performer of another stage cannot touch this stage's calls.
    const otherStage = await createStage(app, 'Elsewhere');
    const otherHost = await performer(otherStage, 'Other host');
    expect(((await otherHost.raw('acceptCall', [{ callId: ann!.id }])) as Ack).error?.code).to.equal('NOT_FOUND');
    // A listener ends only their own call: Bob's endCall does not touch Ann's.
    expect((await l4.raw('endCall', [{}])) as Ack, 'endCall without a call').to.deep.include({ ok: false });

    // A full stage: the host and a second performer take both seats; accepting answers STAGE_FULL, the call waits on.
    const second = await performer(stage, 'Second');
    const refused = (await host.raw('acceptCall', [{ callId: ann!.id }])) as Ack;
    expect(refused.error?.code).to.equal('STAGE_FULL');
    expect(refused.error?.message).to.match(/cannot take the call: this stage is full \(2 performers\)/);
    expect(app.calls.queue(stage.id).find((c) => c.id === ann!.id)?.status).to.equal('waiting');
    expect((await second.request('leave', {})).ok).to.equal(true);

    // Muting a waiting call makes no sense.
    expect(((await host.raw('muteCall', [{ callId: ann!.id, muted: true }])) as Ack).error?.code).to.equal('INVALID_STATE');

    // Accept Ann: she is told, with what she needs to join the media; the others move up.
    const accepted = new Promise<{ call: CallView; routerRtpCapabilities: unknown; performers: { displayName: string }[] }>((r) => l1.socket.once('callAccepted', r));
    const bobMovesUp = callEvent(l2, (_c, p) => p === 1);
    const acc = (await host.raw('acceptCall', [{ callId: ann!.id }])) as Ack;
    expect(acc.ok, JSON.stringify(acc)).to.equal(true);
    const a = await accepted;
    expect(a.call).to.deep.include({ status: 'accepted', performerId: ann!.id });
    expect(a.performers.map((p) => p.displayName)).to.deep.equal(['Host']);
    expect((a.routerRtpCapabilities as { codecs: { mimeType: string }[] }).codecs.map((c) => c.mimeType)).to.include('audio/opus');
    expect((await bobMovesUp).position, 'Bob is next in line now').to.equal(1);
    // The caller is on the stage as a caller, holding a seat.
    expect(app.registry.get(stage.id)!.performer(ann!.id)?.role).to.equal('caller');
    text = await scrape();
    expect(metric(text, `stage="${stage.id}",state="waiting"`)).to.equal(2);
    expect(metric(text, `stage="${stage.id}",state="on_air"`), 'an accepted caller counts as on air').to.equal(1);
    snap = await app.admin.snapshot();
    expect(snap.totals).to.include({ callsWaiting: 2, callsOnAir: 1 });
    // Her media requests work now (the transport lives for the call); Bob's do not (not accepted).
    const t = (await l1.raw('createTransport', [{ direction: 'send' }])) as { ok: boolean; data?: { id: string } };
    expect(t.ok).to.equal(true);
    expect(((await l2.raw('createTransport', [{ direction: 'send' }])) as Ack).error?.code).to.equal('NOT_JOINED');
    // A second accept of the same call: not waiting any more.
    expect(((await host.raw('acceptCall', [{ callId: ann!.id }])) as Ack).error?.code).to.equal('INVALID_STATE');

    // Mute on the server, then hang up: Ann hears why; her transport is gone with the call.
    const muted = (await host.raw('muteCall', [{ callId: ann!.id, muted: true }])) as Ack;
    expect(muted.data?.call.muted).to.equal(true);
    const annEnded = callEvent(l1, (c) => c.status === 'ended');
    expect(((await host.raw('hangUpCall', [{ callId: ann!.id }])) as Ack).ok).to.equal(true);
    expect((await annEnded).call).to.deep.include({ status: 'ended', endReason: 'host', minutes: 0 });
    expect(app.registry.get(stage.id)!.performer(ann!.id), "the caller's seat is free").to.equal(undefined);
    const router = app.registry.get(stage.id)!.router;
    expect(((await router.dump()) as { transportIds: string[] }).transportIds, "the caller's transport closed with the call").to.not.include(t.data!.id);

    // Decline Bob, Cat cancels, a fourth listener's request expires.
    const bobDeclined = callEvent(l2, (c) => c.status === 'declined');
    expect(((await host.raw('declineCall', [{ callId: bob!.id }])) as Ack).ok).to.equal(true);
    expect((await bobDeclined).call.endReason).to.equal('host');
    expect(((await l3.raw('endCall', [{}])) as Ack).ok).to.equal(true);
    const l5 = await listener(stage.id);
    const expired = callEvent(l5, (c) => c.status === 'expired');
    const asked = Date.now();
    expect((await ask(l5, 'Eve')).ok).to.equal(true);
    const eve = await expired;
    const expiredAfter = (Date.now() - asked) / 1000;
    console.log(`      a request expired after ${expiredAfter.toFixed(1)} s (CALL_REQUEST_TTL_SECONDS ${TTL_S})`);
    expect(expiredAfter).to.be.within(TTL_S, TTL_S + 2);
    expect(eve.call.endReason).to.equal('expired');

    // The record: each call's status, reason and events.
    const repo = new CallRepo(app.db);
    const record = async (id: string) => ({ call: await repo.get(id), types: (await repo.events(id)).map((e) => e.type) });
    const got = await eventually(
      async () => Promise.all([ann!.id, bob!.id, cat!.id, eve.call.id].map(record)),
      (rs) => rs.every((r) => r.call && ['ended', 'declined', 'cancelled', 'expired'].includes(r.call.status)),
      5_000,
    );
    const [annR, bobR, catR, eveR] = got;
    expect(annR!.call).to.deep.include({ status: 'ended', endReason: 'host', minutes: 0 });
    expect(annR!.types).to.deep.equal(['call_request', 'call_accepted', 'call_end']);
    expect(bobR!.call).to.deep.include({ status: 'declined', endReason: 'host' });
    expect(bobR!.types).to.deep.equal(['call_request', 'call_declined']);
    expect(catR!.call).to.deep.include({ status: 'cancelled', endReason: 'caller' });
    expect(catR!.types).to.deep.equal(['call_request', 'call_cancelled']);
    expect(eveR!.call).to.deep.include({ status: 'expired', endReason: 'expired' });
    expect(eveR!.types).to.deep.equal(['call_request', 'call_expired']);

    // A listener who leaves the page withdraws the request; the broadcast's end ends what waits.
    const l6 = await listener(stage.id);
    const r6 = await ask(l6, 'Fay');
    l6.close();
    await eventually(async () => (await repo.get(r6.data!.call.id))?.status, (s) => s === 'cancelled', 3_000);
    const l7 = await listener(stage.id);
    const r7 = await ask(l7, 'Gus');
    await transition(app, stage.id, 'stop');
    const gus = await eventually(async () => repo.get(r7.data!.call.id), (c) => c?.status === 'cancelled', 3_000);
    expect(gus).to.deep.include({ status: 'cancelled', endReason: 'broadcast_ended' });
  });

  it('limits call requests per address', async () => {
    const stage = await createStage(app, 'Limits');
    await transition(app, stage.id, 'start');
    const codes: string[] = [];
    // Each listener asks and withdraws: only the address's budget can refuse.
    for (let i = 0; i < PER_MINUTE + 2; i++) {
      const c = await listener(stage.id, '203.0.113.7');
      const r = await ask(c, `Same ${i}`);
      codes.push(r.ok ? 'ok' : r.error!.code);
      if (r.ok) await c.raw('endCall', [{}]);
    }
    expect(codes).to.deep.equal([...Array(PER_MINUTE).fill('ok'), 'RATE_LIMITED', 'RATE_LIMITED']);
    const other = await listener(stage.id, '203.0.113.8');
    expect((await ask(other, 'Other address')).ok, 'another address is not limited').to.equal(true);
    await transition(app, stage.id, 'stop');
  });

  it('answers malformed call payloads on /listen and /stage with error acks and keeps serving', async () => {
    const stage = await createStage(app, 'Fuzz');
    await transition(app, stage.id, 'start');
    const fuzzer = await listener(stage.id);
    const host = await performer(stage, 'Host');
    const big = 'x'.repeat(4096);
    const badValues: unknown[] = [undefined, null, 0, 'call', true, [], { evil: 1 }, { __proto__: { polluted: true } }];
    const cases: [TestClient<never>, string, unknown[]][] = [];
    const listenCalls = ['requestCall', 'createTransport', 'connectTransport', 'produce', 'consume', 'resumeConsumer'] as const;
    for (const name of listenCalls) {
      expect(Object.hasOwn(listenContract.requests, name)).to.equal(true);
      for (const v of badValues) cases.push([fuzzer as TestClient<never>, name, [v]]);
    }
    for (const name of ['acceptCall', 'declineCall', 'muteCall', 'hangUpCall'] as const) {
      expect(Object.hasOwn(stageContract.requests, name)).to.equal(true);
      for (const v of badValues) cases.push([host as TestClient<never>, name, [v]]);
      cases.push([host as TestClient<never>, name, [{ callId: 'not-a-uuid', muted: false }]], [host as TestClient<never>, name, [{ callId: big }]]);
    }
    cases.push(
      [fuzzer as TestClient<never>, 'requestCall', [{ name: '' }]],
      [fuzzer as TestClient<never>, 'requestCall', [{ name: big }]],
      [fuzzer as TestClient<never>, 'requestCall', [{ name: '<script>x</script>' }]],
      [fuzzer as TestClient<never>, 'requestCall', [{ name: 'ok', topic: 'y'.repeat(141) }]],
      [fuzzer as TestClient<never>, 'requestCall', [{ name: 'ok', extra: 1 }]],
      [fuzzer as TestClient<never>, 'requestCall', [{ name: 'ok' }, 'second']],
      [fuzzer as TestClient<never>, 'endCall', [{ extra: true }]],
      [host as TestClient<never>, 'muteCall', [{ callId: '00000000-0000-4000-8000-000000000000', muted: 'yes' }]],
      [host as TestClient<never>, 'acceptCall', [{ callId: '00000000-0000-4000-8000-000000000000' }]],
    );
    expect(cases.length).to.be.at.least(90);
    for (const [c, event, args] of cases) {
      const res = (await c.raw(event, args)) as Ack | null;
      const what = `${event} ${JSON.stringify(args)?.slice(0, 60)}`;
      expect(res, `${what} gets an ack`).to.not.equal(null);
      expect(res!.ok, `${what} is refused`).to.equal(false);
      expect(res!.error!.code, what).to.match(/^(BAD_REQUEST|NOT_FOUND|NOT_JOINED|INVALID_STATE)$/);
      expect(res!.error!.message).to.be.a('string').and.not.equal('');
    }
    // Still served: a well-formed request works, the health is fine.
    const ok = await ask(fuzzer, 'Finally', 'A real question');
    expect(ok.ok, JSON.stringify(ok)).to.equal(true);
    const health = (await (await fetch(`${app.url}/healthz`)).json()) as { status: string };
    expect(health.status).to.equal('ok');
    await transition(app, stage.id, 'stop');
  });
});
