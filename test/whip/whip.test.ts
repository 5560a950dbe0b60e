// WHIP ingest (RFC 9725) against the real app: an OBS-shaped publisher on node-datachannel (libdatachannel, what OBS's
// WHIP output is built on) is in the mix (decoded), heard by a Chromium performer, shown publishing on the performer
// page's panel, archived with its own track aligned to the mix; DELETE frees its seat, transport and mix slot; a
// publisher whose path dies is removed in WHIP_RTP_TIMEOUT_SECONDS and comes back with a new POST; bad requests get
// the RFC's statuses with clear messages.
import path from 'node:path';
import { expect } from 'chai';
import type { App } from '../../services/app.ts';
import { download, waitArchived } from '../support/archive.ts';
import { decodeToPcm, envelopeLag, median, toneDb, toneEnds } from '../support/audio.ts';
import { BrowserSet, eventually, hearsAt } from '../support/browser.ts';
import { PlaylistWatcher, segmentsInput } from '../support/hls.ts';
import { pulseWav, TempDir } from '../support/media.ts';
import { createStage, startTestApp, transition } from '../support/app.ts';
import { WhipPublisher } from '../support/whip.ts';

const OBS_HZ = 660;
const PERFORMER_HZ = 440;
const HEARD_DB = -60;
const RTP_TIMEOUT_S = 4;
const BURST_ON_DB = -40;
const ALIGNED_S = 0.05;
const LAG_RANGE_S = 0.25;

describe('WHIP ingest', function () {
  this.timeout(120_000);
  let app: App;
  let tmp: TempDir;
  let browsers: BrowserSet;
  const publishers: WhipPublisher[] = [];
  const publisher = (opts?: { video?: boolean }) => {
    const p = new WhipPublisher(opts);
    publishers.push(p);
    return p;
  };

  before(async () => {
    tmp = new TempDir();
    browsers = new BrowserSet(tmp);
    // Many POSTs from one address in a minute: the attempt limit (tested with joins in test/http/limits.test.ts) raised.
    app = await startTestApp({ CDN_DIR: tmp.file('cdn'), MAX_PERFORMERS_PER_STAGE: '3', WHIP_RTP_TIMEOUT_SECONDS: String(RTP_TIMEOUT_S), RATE_LIMIT_JOIN_PER_MINUTE: '1000' });
  });
  afterEach(async () => {
    for (const p of publishers.splice(0)) await p.close();
  });
  after(async () => {
    await browsers?.close();
    await app?.close();
    tmp?.remove();
  });

  it('an OBS-shaped publisher (libdatachannel, Opus 111 + a video m-line, no candidates) is in the mix, heard by a browser performer, shown on the panel, and archived with its track aligned; DELETE frees everything', async () => {
    const stage = await createStage(app, 'OBS show');
    const created = (await (await fetch(`${app.url}/api/stages/${stage.id}`)).json()) as { id: string };
    expect(created.id).to.equal(stage.id);
    const host = await browsers.performer(stage.performerUrl, PERFORMER_HZ, 'Host');
    // The panel shows where and with what to publish, and waits.
    const whipUrl = `${app.url}/whip/${stage.id}`;
    expect(await host.locator('#whip-url').textContent()).to.equal(whipUrl);
    expect(await host.locator('#whip-token').textContent()).to.equal(stage.performerKey);
    await host.waitForFunction(() => document.getElementById('encoder-state')?.dataset['state'] === 'waiting');
    await transition(app, stage.id, 'start');

    const obs = publisher();
    expect(obs.offer).to.match(/^m=video /m).and.not.match(/^a=candidate/m);
    expect(obs.offer).to.include('a=fmtp:111 minptime=10;maxaveragebitrate=96000;stereo=1;sprop-stereo=1;useinbandfec=1');
    const res = await obs.publish(`${whipUrl}?name=Studio%20OBS`, stage.performerKey);
    expect(res.status, res.answer).to.equal(201);
    expect(res.location).to.match(new RegExp(`^/whip/${stage.id}/[0-9a-f-]{36}$`));
    // The answer: ICE-lite, candidates (UDP and TCP), we are the DTLS server, Opus with the offer's parameters, video declined.
    expect(res.answer).to.match(/^a=ice-lite/m).and.match(/^a=setup:passive/m).and.match(/^a=candidate:\S+ 1 udp /m).and.match(/^a=candidate:\S+ 1 tcp .* tcptype passive/m);
    expect(res.answer).to.include('a=fmtp:111 minptime=10;maxaveragebitrate=96000;stereo=1;sprop-stereo=1;useinbandfec=1');
    expect(res.answer).to.match(/^m=video 0 /m).and.match(/^a=group:BUNDLE 0\r?$/m);
    expect(await obs.opened(), 'ICE and DTLS complete: the track opens').to.equal(true);
    await obs.startAudio({ wav: pulseWav(tmp, OBS_HZ, { periodSec: 0.5, onSec: 0.3 }) });

    // A performer of role encoder, named from ?name=, heard by the browser performer.
    const stageMedia = app.registry.get(stage.id)!;
    const resourceId = res.location!.split('/').at(-1)!;
    const performer = stageMedia.performer(resourceId);
    expect(performer?.info()).to.deep.include({ displayName: 'Studio OBS', role: 'encoder' });
    const heard = await eventually(() => hearsAt(host, [OBS_HZ]), ([f]) => f! > HEARD_DB, 10_000, 50);
    expect(heard[0], 'the browser performer hears the encoder').to.be.above(HEARD_DB);
    // The panel says publishing, with a level.
    await host.waitForFunction(() => document.getElementById('encoder-state')?.dataset['state'] === 'publishing', null, { timeout: 10_000 });
    expect(await host.locator('#encoder-state').textContent()).to.include('Studio OBS');
    // libdatachannel (OBS) sends no audio-level RTP extension: the panel says so instead of a meter.
    const shown = await host.evaluate(() => window.stageDebug.encoders()[0]);
    expect(shown).to.deep.include({ state: 'publishing', levelKnown: false });
    expect(await host.locator('#encoder-state').textContent()).to.include('sends no audio level');

    // In the mix: decoded segments carry the tone.
    const mixer = stageMedia.broadcast!.mixer;
    const watcher = new PlaylistWatcher(mixer.playlistPath);
    watcher.poll();
    const from = watcher.segments.length;
    await watcher.waitFor((w) => w.segments.length >= from + 3, 10_000);
    watcher.stop();
    const pcm = decodeToPcm(segmentsInput(path.dirname(mixer.playlistPath), watcher.segments.slice(from)));
    expect(toneDb(pcm, OBS_HZ), "the encoder's tone in the mix").to.be.above(-30);
    await new Promise((r) => setTimeout(r, 3000));

    // OBS stops: DELETE. Seat, transport and mix slot are free.
    const router = stageMedia.router;
    const transportId = performer!.sendTransport!.id;
    expect(await obs.unpublish(stage.performerKey)).to.equal(200);
    expect(stageMedia.performer(resourceId), 'gone from the stage').to.equal(undefined);
    expect(((await router.dump()) as { transportIds: string[] }).transportIds, 'its transport closed').to.not.include(transportId);
    expect(mixer.attached.has(resourceId), 'its mix slot freed').to.equal(false);
    expect(await obs.unpublish(stage.performerKey), 'a second DELETE: no such session').to.equal(404);
    await host.waitForFunction(() => document.getElementById('encoder-state')?.dataset['state'] === 'waiting', null, { timeout: 5_000 });

    // The archive: its own track, aligned with the mix at every burst.
    await new Promise((r) => setTimeout(r, 1000));
    await transition(app, stage.id, 'stop');
    const { rec } = await waitArchived(app.url, stage.id, 60_000);
    const track = rec.files.find((f) => f.file === `track:${resourceId}`);
    expect(track?.displayName, `its track in ${rec.files.map((f) => f.file).join(', ')}`).to.equal('Studio OBS');
    const mixFile = tmp.file('mix.m4a');
    const trackFile = tmp.file('obs.ogg');
    await download(app.url, rec, 'audio', mixFile);
    await download(app.url, rec, `track:${resourceId}`, trackFile);
    const mix = decodeToPcm(mixFile);
    const own = decodeToPcm(trackFile);
    const ends = toneEnds(own, OBS_HZ, 0.1, BURST_ON_DB);
    const offsets = ends.map((e) => envelopeLag(own, mix, OBS_HZ, e, LAG_RANGE_S, { before: 0.2, after: 0.1 }));
    const worst = Math.max(...offsets.map(Math.abs));
    console.log(`      encoder's bursts: ${ends.length} in its track, offset to the mix median ${(median(offsets) * 1000).toFixed(1)} ms, worst ${(worst * 1000).toFixed(1)} ms`);
    expect(ends.length, 'its bursts are in its track').to.be.at.least(8);
    expect(worst, "the encoder's track lines up with the mix at every burst (s)").to.be.below(ALIGNED_S);
  });

  it(`a publisher whose path dies is removed within WHIP_RTP_TIMEOUT_SECONDS (${RTP_TIMEOUT_S} s) and joins again with a new POST`, async () => {
    const stage = await createStage(app, 'Flaky path');
    await transition(app, stage.id, 'start');
    const url = `${app.url}/whip/${stage.id}`;
    const first = publisher();
    const r1 = await first.publish(url, stage.performerKey);
    expect(r1.status).to.equal(201);
    expect(await first.opened()).to.equal(true);
    await first.startAudio({ freq: OBS_HZ });
    const id1 = r1.location!.split('/').at(-1)!;
    await eventually(async () => app.whip.resources(stage.id).find((r) => r.id === id1)?.published, (p) => p === true, 5_000);
    // The path dies: nothing arrives any more (no DELETE, no DTLS close).
    first.sending = false;
    const diedAt = Date.now();
    await eventually(async () => app.registry.get(stage.id)?.performer(id1), (p) => p === undefined, (RTP_TIMEOUT_S + 5) * 1000, 100);
    const removedAfter = (Date.now() - diedAt) / 1000;
    console.log(`      removed ${removedAfter.toFixed(1)} s after its RTP stopped`);
    expect(app.registry.get(stage.id)?.performer(id1), 'removed').to.equal(undefined);
    expect(removedAfter).to.be.within(RTP_TIMEOUT_S - 1, RTP_TIMEOUT_S + 2);
    // The encoder publishes again (a new session): on stage and publishing.
    const again = publisher();
    const r2 = await again.publish(url, stage.performerKey);
    expect(r2.status).to.equal(201);
    expect(await again.opened()).to.equal(true);
    await again.startAudio({ freq: OBS_HZ });
    const id2 = r2.location!.split('/').at(-1)!;
    expect(id2).to.not.equal(id1);
    await eventually(async () => app.whip.resources(stage.id).find((r) => r.id === id2)?.published, (p) => p === true, 5_000);
    expect(app.registry.get(stage.id)?.performer(id2)?.role).to.equal('encoder');
    await transition(app, stage.id, 'stop');
  });

  it('refuses bad requests with the RFC’s statuses and clear messages, 50 fuzzed offers included, and stays healthy', async () => {
    const stage = await createStage(app, 'Refusals');
    const other = await createStage(app, 'Other');
    const url = `${app.url}/whip/${stage.id}`;
    const good = publisher().offer;
    const post = async (body: string, opts: { token?: string | null; type?: string; to?: string } = {}) => {
      const res = await fetch(opts.to ?? url, {
        method: 'POST',
        headers: { 'content-type': opts.type ?? 'application/sdp', ...(opts.token === null ? {} : { authorization: `Bearer ${opts.token ?? stage.performerKey}` }) },
        body,
      });
      const text = await res.text();
      let message = '';
      try {
        message = (JSON.parse(text) as { error: { message: string } }).error.message;
      } catch {
        // an answer
      }
      return { status: res.status, message };
    };
    const cases: [string, () => Promise<{ status: number; message: string }>, number, RegExp][] = [
      ['no token', () => post(good, { token: null }), 401, /Bearer/],
      ['wrong key', () => post(good, { token: other.performerKey }), 401, /wrong performer key/],
      ['unknown stage', () => post(good, { to: `${app.url}/whip/nosuchstage` }), 404, /no stage|no such stage/],
      ['bad stage id', () => post(good, { to: `${app.url}/whip/${encodeURIComponent('../x')}` }), 404, /./],
      ['empty body', () => post(''), 400, /empty/],
      ['not SDP', () => post('hello world'), 400, /not an SDP offer/],
      ['JSON content type', () => post(good, { type: 'application/json' }), 415, /application\/sdp/],
      ['no audio', () => post(good.replace(/m=audio[\s\S]*?(?=m=video)/, '')), 422, /no audio m= line/],
      ['only unsupported codecs', () => post(good.replace(/opus\/48000\/2/gi, 'PCMU/8000')), 422, /only Opus is supported/],
      ['no fingerprint', () => post(good.replace(/^a=fingerprint:.*\r?\n/gm, '')), 400, /fingerprint/],
      ['no ICE credentials', () => post(good.replace(/^a=ice-(ufrag|pwd):.*\r?\n/gm, '')), 400, /ice-ufrag/],
    ];
    for (const [what, run, status, re] of cases) {
      const r = await run();
      expect(r.status, `${what}: ${r.message}`).to.equal(status);
      expect(r.message, what).to.match(re);
    }
    // A full stage (3 seats): three publishers take them, the fourth gets 409.
    for (let i = 0; i < 3; i++) expect((await publisher().publish(url, stage.performerKey)).status).to.equal(201);
    const full = await post(publisher().offer);
    expect(full.status, full.message).to.equal(409);
    expect(full.message).to.match(/full/);
    // PATCH: no trickle, no ICE restart (405 with Allow); OPTIONS for browser clients; an unknown session.
    const resource = publishers.at(-2)!.location!;
    const patch = await fetch(resource, { method: 'PATCH', headers: { 'content-type': 'application/trickle-ice-sdpfrag', authorization: `Bearer ${stage.performerKey}` }, body: 'a=end-of-candidates' });
    expect(patch.status).to.equal(405);
    expect(patch.headers.get('allow')).to.equal('DELETE, OPTIONS');
    const options = await fetch(url, { method: 'OPTIONS', headers: { origin: 'https://encoder.example', 'access-control-request-method': 'POST' } });
    expect(options.status).to.equal(204);
    expect(options.headers.get('accept-post')).to.equal('application/sdp');
    expect(options.headers.get('access-control-allow-origin')).to.equal('*');
    expect(options.headers.get('access-control-allow-headers')).to.include('Authorization');
    expect(options.headers.get('access-control-expose-headers')).to.include('Location');
    const unknownDelete = await fetch(`${url}/00000000-0000-4000-8000-000000000000`, { method: 'DELETE', headers: { authorization: `Bearer ${stage.performerKey}` } });
    expect(unknownDelete.status).to.equal(404);
    const wrongKeyDelete = await fetch(resource, { method: 'DELETE', headers: { authorization: `Bearer ${other.performerKey}` } });
    expect(wrongKeyDelete.status, 'DELETE with the wrong key').to.equal(401);
    // OBS's Stop Streaming: DELETE each, then close.
    for (const p of publishers.splice(0)) {
      if (p.location) expect(await p.unpublish(stage.performerKey)).to.equal(200);
      await p.close();
    }
    expect(app.whip.resources(stage.id)).to.deep.equal([]);

    // 50 fuzzed offers: each refused with 400 or 422 and a message; nothing is left on the stage.
    let seed = 7;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const lines = good.split(/\r?\n/);
    const mutations: ((ls: string[]) => string[])[] = [
      (ls) => ls.filter((_, i) => i !== rand(ls.length)).filter((l) => !l.startsWith('a=fingerprint')),
      (ls) => ls.map((l) => (l.startsWith('m=audio') ? 'm=audio 9 RTP/AVP 111' : l)),
      (ls) => ls.map((l) => (l.startsWith('a=rtpmap:111') ? 'a=rtpmap:111 opus/44100/2' : l)),
      (ls) => ls.map((l) => (l.startsWith('a=mid:0') ? `a=mid:${'x'.repeat(200)}` : l)),
      (ls) => ls.map((l) => (l.startsWith('a=setup') ? 'a=setup:holdconn' : l)),
      (ls) => ls.map((l) => (l.startsWith('a=fingerprint') ? 'a=fingerprint:md5 zz:zz' : l)),
      (ls) => ls.map((l) => (l.startsWith('a=sendonly') ? 'a=recvonly' : l)),
      (ls) => ls.filter((l) => !l.startsWith('a=ssrc') && !l.startsWith('a=ice-pwd')),
      (ls) => [...ls.slice(0, 4), ...Array.from({ length: 20 }, (_, i) => `m=audio 9 UDP/TLS/RTP/SAVPF ${i}`)],
      (ls) => ['v=0', ...ls.slice(1).map((l) => l.replace(/[0-9]/g, () => String.fromCharCode(33 + rand(90))))],
    ];
    let refused = 0;
    for (let i = 0; i < 50; i++) {
      const mutated = mutations[i % mutations.length]!(lines.slice()).join('\r\n');
      const r = await post(mutated.startsWith('v=0') ? mutated : `v=0\r\n${mutated}`);
      expect([400, 422], `fuzzed offer ${i}: ${r.status} ${r.message}`).to.include(r.status);
      expect(r.message, `fuzzed offer ${i} has a message`).to.not.equal('');
      refused++;
    }
    expect(refused).to.equal(50);
    expect(app.registry.get(stage.id)?.performers.length ?? 0, 'nothing left on the stage').to.equal(0);
    const health = (await (await fetch(`${app.url}/healthz`)).json()) as { status: string };
    expect(health.status).to.equal('ok');
  });
});
