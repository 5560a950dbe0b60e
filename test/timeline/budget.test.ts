// One budget for a stage's timeline events, whichever way they come: REST (POST /api/stages/:id/events) and the
// performers' Socket.IO postEvent draw on the same token bucket, so alternating between them gets the documented
// rate, not twice it.
import { expect } from 'chai';
import type { App } from '../../services/app.ts';
import { EVENT_BURST, EVENTS_PER_SECOND } from '../../services/shared/timeline.ts';
import { createStage, startTestApp, TEST_ADMIN_TOKEN, transition } from '../support/app.ts';
import { connectClient, type TestClient } from '../support/client.ts';
import { TempDir } from '../support/media.ts';

describe('timeline: one event budget per stage for REST and Socket.IO together', function () {
  this.timeout(60_000);
  let app: App;
  let tmp: TempDir;
  let host: TestClient;

  before(async () => {
    tmp = new TempDir();
    app = await startTestApp({ CDN_DIR: tmp.file('cdn') });
  });
  after(async () => {
    host?.close();
    await app?.close();
    tmp?.remove();
  });

  it(`alternating REST and Socket.IO is limited at ${EVENT_BURST} in a burst then ${EVENTS_PER_SECOND}/s, not twice that`, async () => {
    const stage = await createStage(app, 'Budget');
    await transition(app, stage.id, 'start');
    host = await connectClient(app.url);
    const joined = await host.request('join', { stageId: stage.id, key: stage.performerKey, displayName: 'Host' });
    expect(joined.ok, JSON.stringify(joined)).to.equal(true);

    const viaRest = async (i: number) => {
      const res = await fetch(`${app.url}/api/stages/${stage.id}/events`, {
        method: 'POST',
        headers: { authorization: `Bearer ${stage.performerKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ type: 'marker', label: `rest ${i}` }),
      });
      const body = (await res.json()) as { ok?: false; error?: { code: string; retryAfterSeconds?: number } };
      return { ok: res.status === 201, code: body.error?.code ?? null, retryAfter: res.headers.get('retry-after'), retryAfterSeconds: body.error?.retryAfterSeconds };
    };
    const viaSocket = async (i: number) => {
      const ack = await host.request('postEvent', { type: 'marker', label: `socket ${i}` });
      return { ok: ack.ok, code: ack.ok ? null : ack.error.code, retryAfter: null, retryAfterSeconds: ack.ok ? undefined : ack.error.retryAfterSeconds };
    };

    // A burst: twice the budget, alternating, as fast as it goes.
    const t0 = performance.now();
    const burst = [];
    for (let i = 0; i < 2 * EVENT_BURST; i++) burst.push(await (i % 2 === 0 ? viaRest(i) : viaSocket(i)));
    const burstSeconds = (performance.now() - t0) / 1000;
    const burstOk = burst.filter((r) => r.ok).length;
    // What the bucket allows in that time: the burst plus what refilled meanwhile.
    const allowed = EVENT_BURST + Math.floor(burstSeconds * EVENTS_PER_SECOND);
    console.log(`      burst: ${burstOk} of ${burst.length} accepted in ${burstSeconds.toFixed(2)} s (budget ${allowed})`);
    expect(burstOk, 'accepted in the burst').to.be.within(EVENT_BURST, allowed);
    const refused = burst.filter((r) => !r.ok);
    expect(refused.every((r) => r.code === 'RATE_LIMITED'), JSON.stringify(refused)).to.equal(true);
    expect(refused.filter((r) => r.retryAfter !== null), 'REST refusals carry Retry-After').to.not.be.empty;
    expect(refused.every((r) => (r.retryAfterSeconds ?? 0) >= 1), 'every refusal says how long to wait').to.equal(true);
    // Both paths were refused: neither has a budget of its own.
    expect(refused.some((r) => r.retryAfter !== null) && refused.some((r) => r.retryAfter === null), 'both paths refused').to.equal(true);

    // Sustained: 4 s of alternating requests every 100 ms.
    const t1 = performance.now();
    let sustainedOk = 0;
    for (let i = 0; performance.now() - t1 < 4000; i++) {
      if ((await (i % 2 === 0 ? viaRest(i) : viaSocket(i))).ok) sustainedOk++;
      await new Promise((r) => setTimeout(r, 100));
    }
    const seconds = (performance.now() - t1) / 1000;
    console.log(`      sustained: ${sustainedOk} accepted in ${seconds.toFixed(1)} s (${(sustainedOk / seconds).toFixed(2)}/s; budget ${EVENTS_PER_SECOND}/s)`);
    expect(sustainedOk, 'accepted at the documented rate').to.be.at.most(Math.ceil(seconds * EVENTS_PER_SECOND) + 1);
    expect(sustainedOk, 'and not starved').to.be.at.least(Math.floor(seconds * EVENTS_PER_SECOND) - 1);
  });
});
