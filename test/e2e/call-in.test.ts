// Call-in end to end, in real Chromium: a listener whose fake microphone plays one tone asks to speak, a performer
// with another tone accepts from the page's queue, and the caller is on air: in the HLS mix (decoded), heard by the
// performer through the SFU, hearing the performer and not themselves, their page's stream stopped. Hang up takes
// them out of the mix and puts the page back on the stream. The archive has the caller's own track, on the mix's
// clock, and the timeline's call interval; the call's record has its events and its bill.
import fs from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import type { Browser, Page } from 'playwright-core';
import type { App } from '../../services/app.ts';
import type { CallDetail } from '../../services/shared/calls.ts';
import type { TimelineFile } from '../../services/timeline/files.ts';
import { download, waitArchived } from '../support/archive.ts';
import { decodeToPcm, envelopeLag, median, SAMPLE_RATE, toneDb, toneEnds, toneOnsets } from '../support/audio.ts';
import { BrowserSet, eventually, hearsAt, launchPerformerBrowser, levelsAt } from '../support/browser.ts';
import { PlaylistWatcher, segmentsInput, type SeenSegment } from '../support/hls.ts';
import { pulseWav, TempDir } from '../support/media.ts';
import { startTestApp, TEST_ADMIN_TOKEN } from '../support/app.ts';

const PERFORMER_HZ = 440;
const CALLER_HZ = 1000;
/** Heard above this (present tones measure -40 to -56 dB in a page's analyser); absent when 30 dB under the loudest. */
const HEARD_DB = -60;
const ABSENT_BELOW = 30;
/** A tone is in a decoded segment above this (a -12 dBFS tone in the mix measures about -12 to -18). */
const IN_MIX_DB = -35;

/** The caller's microphone: 0.3 s bursts every 0.5 s (every published 1 s segment carries two). */
const CALLER_BURSTS = { periodSec: 0.5, onSec: 0.3 };

/** A burst is on above this level (dBFS): bursts measure -17 to +3 in the mix and the track, the gaps under -85. */
const BURST_ON_DB = -40;
/** A track is aligned with the mix when each of its bursts is within this of the mix's. */
const ALIGNED_S = 0.05;
/** How far the measure looks for a burst in the mix: well beyond ALIGNED_S, so that a misplaced burst fails. */
const LAG_RANGE_S = 0.25;

/** The rate the stage bills calls at: 1.25 EUR per started minute. */
const RATE = { currency: 'EUR', amountMinor: 125 };

async function createStageWithRate(app: App, title: string): Promise<{ id: string; performerKey: string; performerUrl: string }> {
  const res = await fetch(`${app.url}/api/stages`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ title, callRate: RATE }),
  });
  expect(res.status).to.equal(201);
  return (await res.json()) as { id: string; performerKey: string; performerUrl: string };
}

/** Level of a tone in one published segment (its init section and itself, decoded). */
function segmentToneDb(dir: string, seg: SeenSegment, freq: number): number {
  return toneDb(decodeToPcm(segmentsInput(dir, [seg])), freq);
}

describe('e2e: call-in', function () {
  this.timeout(180_000);
  let app: App;
  let tmp: TempDir;
  let browsers: BrowserSet;
  let callerBrowser: Browser | undefined;
  let watcher: PlaylistWatcher | undefined;

  before(async () => {
    tmp = new TempDir();
    browsers = new BrowserSet(tmp);
    app = await startTestApp({ CDN_DIR: tmp.file('cdn') });
  });
  after(async () => {
    watcher?.stop();
    await callerBrowser?.close();
    await browsers?.close();
    await app?.close();
    tmp?.remove();
  });

  it('a listener requests to speak, a performer accepts, the caller is on air within 3 s (mix, SFU, hand-over), hang up leaves the mix within 2 s, and the archive has their track and the call', async () => {
    const stage = await createStageWithRate(app, 'Phone-in');
    const host = await browsers.performer(stage.performerUrl, PERFORMER_HZ, 'Host');
    await host.getByRole('button', { name: 'Start broadcast' }).click();
    await host.waitForFunction(() => document.body.dataset['stageStatus'] === 'live', null, { timeout: 10_000 });

    // The caller: a listener page with a fake microphone (the browser grants it, as a user would at the prompt).
    // Bursts, not a steady tone: the caller's voice processing (on, as by default) would take a steady tone for noise.
    callerBrowser = await launchPerformerBrowser(pulseWav(tmp, CALLER_HZ, CALLER_BURSTS));
    const caller: Page = await callerBrowser.newPage();
    caller.on('pageerror', (err) => process.stderr.write(`[caller page] ${err.message}\n`));
    await caller.goto(`${app.url}/listen/${stage.id}`);
    await caller.waitForFunction(() => document.body.dataset['state'] === 'playing', null, { timeout: 30_000 });
    expect(await caller.evaluate(() => window.listenerDebug.streamPlaying()), 'the listener plays the stream before the call').to.equal(true);

    await caller.getByLabel('Name on air').fill('Carla');
    await caller.getByLabel('Topic (optional)').fill('Weekend weather');
    await caller.getByRole('button', { name: 'Request to speak' }).click();
    await caller.waitForFunction(() => document.body.dataset['call'] === 'waiting', null, { timeout: 5_000 });

    // The host's page shows the request live, with its topic and waiting time.
    const item = host.locator('#call-queue li[data-status="waiting"]');
    await item.waitFor({ timeout: 5_000 });
    const text = (await item.textContent()) ?? '';
    expect(text).to.include('Carla').and.include('Weekend weather').and.match(/waiting \d+ s/);

    const mixer = app.registry.get(stage.id)!.broadcast!.mixer;
    watcher = new PlaylistWatcher(mixer.playlistPath);
    const dir = path.dirname(mixer.playlistPath);
    watcher.poll();
    const acceptedAt = Date.now();
    await item.getByRole('button', { name: 'Accept' }).click();

    // Within 3 s of the accept: the host hears the caller through the SFU ...
    const hostHears = await eventually(() => hearsAt(host, [CALLER_HZ]), ([f]) => f! > HEARD_DB, 10_000, 50);
    const hostHeardMs = Date.now() - acceptedAt;
    // ... the caller hears the host and not themselves ...
    const callerHears = await eventually(
      () => caller.evaluate(() => window.listenerDebug.callHearingSpectrum()).then((s) => levelsAt(s, [PERFORMER_HZ, CALLER_HZ])),
      ([p]) => p! > HEARD_DB,
      10_000,
      50,
    );
    const callerHeardMs = Date.now() - acceptedAt;
    // ... and the caller's page no longer plays the stream (no echo, no double audio).
    await caller.waitForFunction(() => !window.listenerDebug.streamPlaying() && (document.getElementById('player') as HTMLAudioElement).paused, null, { timeout: 10_000 });
    const streamStoppedMs = Date.now() - acceptedAt;
    expect(await caller.evaluate(() => document.body.dataset['call'])).to.equal('on-air');
    expect(await caller.locator('#call-end').textContent()).to.equal('Hang up');

    // The caller's tone in the HLS mix: the first published segment that carries it.
    await watcher.waitFor((w) => w.segments.some((s) => s.arrivedAt > acceptedAt && segmentToneDb(dir, s, CALLER_HZ) > IN_MIX_DB), 10_000);
    const firstWith = watcher.segments.find((s) => s.arrivedAt > acceptedAt && segmentToneDb(dir, s, CALLER_HZ) > IN_MIX_DB);
    const inMixMs = firstWith ? firstWith.arrivedAt - acceptedAt : Infinity;
    console.log(`      after the accept: host hears the caller ${hostHeardMs} ms, caller hears the host ${callerHeardMs} ms, stream stopped ${streamStoppedMs} ms, caller's tone listed in the mix ${inMixMs} ms`);
    expect(hostHears[0], 'the host hears the caller').to.be.above(HEARD_DB);
    expect(callerHears[0], 'the caller hears the host').to.be.above(HEARD_DB);
    expect(callerHears[1], `the caller does not hear themselves: ${callerHears}`).to.be.below(Math.max(...callerHears) - ABSENT_BELOW);
    expect(hostHeardMs, 'host hears the caller within 3 s (ms)').to.be.below(3000);
    expect(callerHeardMs, 'caller hears the host within 3 s (ms)').to.be.below(3000);
    expect(streamStoppedMs, "the caller's stream stopped within 3 s (ms)").to.be.below(3000);
    expect(inMixMs, "the caller's tone is in a published segment within 3 s (ms)").to.be.below(3000);

    const callId = (await caller.evaluate(() => window.listenerDebug.call().callId))!;
    const onAirItem = host.locator(`#call-queue li[data-call-id="${callId}"][data-status="on_air"]`);
    await onAirItem.waitFor({ timeout: 5_000 });

    // On air a few seconds, then the caller hangs up.
    await new Promise((r) => setTimeout(r, 4000));
    const hungUpAt = Date.now();
    await caller.getByRole('button', { name: 'Hang up' }).click();
    await watcher.waitFor((w) => w.segments.some((s) => s.arrivedAt > hungUpAt + 300 && segmentToneDb(dir, s, CALLER_HZ) < IN_MIX_DB - 20), 10_000);
    // The last published segment with the caller in it, and the first without: when the tone left what listeners get.
    const after = watcher.segments.filter((s) => s.arrivedAt > hungUpAt);
    const firstWithout = after.find((s) => segmentToneDb(dir, s, CALLER_HZ) < IN_MIX_DB - 20);
    const lastWith = [...after].reverse().find((s) => segmentToneDb(dir, s, CALLER_HZ) > IN_MIX_DB);
    // The tone's end inside the mix: its programme time, then when the segment holding it was listed.
    const pcmAfter = decodeToPcm(segmentsInput(dir, after.slice(0, after.indexOf(firstWithout!) + 1)));
    const endInAfter = toneEnds(pcmAfter, CALLER_HZ, 0.1).at(-1);
    const leftMs = (lastWith ?? after[0]!).arrivedAt - hungUpAt;
    console.log(`      after hang-up: tone ends ${endInAfter?.toFixed(3)} s into the segments listed after it; last segment with it listed ${leftMs} ms, first without ${firstWithout!.arrivedAt - hungUpAt} ms`);
    expect(firstWithout, 'a segment without the caller after the hang-up').to.not.equal(undefined);
    expect(leftMs, 'the last segment with the caller is listed within 2 s of the hang-up (ms)').to.be.below(2000);

    // The page is back on the stream, and the host's queue is empty.
    await caller.waitForFunction(() => window.listenerDebug.streamPlaying() && document.body.dataset['state'] === 'playing', null, { timeout: 15_000 });
    expect(await caller.evaluate(() => document.body.dataset['call'])).to.equal('ended');
    await host.locator('#call-queue li').waitFor({ state: 'detached', timeout: 5_000 });
    const hostHearsAfter = await eventually(() => hearsAt(host, [CALLER_HZ]), ([f]) => f! < HEARD_DB - 10, 5_000);
    expect(hostHearsAfter[0], 'the host no longer hears the caller').to.be.below(HEARD_DB);

    // The record: requested, accepted, connected, one tick (a short call: its first minute), ended by the caller,
    // billed one minute at the stage's rate.
    const detail = await eventually(
      async () => (await (await fetch(`${app.url}/api/calls/${callId}`, { headers: { authorization: `Bearer ${stage.performerKey}` } })).json()) as CallDetail,
      (d) => d.events?.some((e) => e.type === 'call_end'),
      5_000,
    );
    expect(detail.events.map((e) => e.type)).to.deep.equal(['call_request', 'call_accepted', 'call_connected', 'call_tick', 'call_end']);
    expect(detail).to.deep.include({ status: 'ended', endReason: 'caller', minutes: 1, name: 'Carla', topic: 'Weekend weather' });
    expect(detail.bill).to.deep.equal({ currency: 'EUR', amountMinor: 125 });

    // The archive: the caller's own track, on the mix's clock; the timeline's call interval.
    await host.getByRole('button', { name: 'Stop broadcast' }).click();
    const { rec } = await waitArchived(app.url, stage.id, 60_000);
    const track = rec.files.find((f) => f.file === `track:${callId}`);
    expect(track, `the caller's track in ${rec.files.map((f) => f.file).join(', ')}`).to.not.equal(undefined);
    expect(track!.displayName).to.equal('Carla');
    const mixFile = tmp.file('mix.m4a');
    const trackFile = tmp.file('caller.ogg');
    const timelineFile = tmp.file('timeline.json');
    await download(app.url, rec, 'audio', mixFile);
    await download(app.url, rec, `track:${callId}`, trackFile);
    await download(app.url, rec, 'timeline', timelineFile);
    if (process.env['CALLIN_DEBUG']) for (const f of [mixFile, trackFile]) fs.copyFileSync(f, path.join(process.env['CALLIN_DEBUG'], path.basename(f)));
    const mix = decodeToPcm(mixFile);
    const own = decodeToPcm(trackFile);
    // At each burst's end in the caller's track, the shift of the same burst in the mix (envelopeLag, as for the
    // performers' tracks in test/archive/archive.test.ts: ends, where the source stops at once in both). A fixed
    // threshold: the caller's auto gain moves their level by 12 dB over the first seconds (bursts -9 to +3 dBFS in the
    // track, gaps under -85).
    const ends = toneEnds(own, CALLER_HZ, 0.1, BURST_ON_DB);
    const offsets = ends.map((e) => envelopeLag(own, mix, CALLER_HZ, e, LAG_RANGE_S, { before: 0.2, after: 0.1 }));
    const worst = Math.max(...offsets.map(Math.abs));
    const mixOn = toneOnsets(mix, CALLER_HZ, 0.1)[0]!;
    const mixOff = toneEnds(mix, CALLER_HZ, 0.1, BURST_ON_DB).at(-1)!;
    const onAirSeconds = mixOff - mixOn;
    console.log(`      caller in the mix ${mixOn.toFixed(3)}–${mixOff.toFixed(3)} s: ${ends.length} bursts in the track, offset to the mix median ${(median(offsets) * 1000).toFixed(1)} ms, worst ${(worst * 1000).toFixed(1)} ms`);
    expect(ends.length, 'a burst per period on air in the track').to.be.at.least(Math.floor(onAirSeconds / CALLER_BURSTS.periodSec) - 1);
    expect(worst, "the caller's track lines up with the mix, every burst (s)").to.be.below(ALIGNED_S);
    expect(toneDb(own, PERFORMER_HZ, Math.round(mixOn * SAMPLE_RATE), Math.round(onAirSeconds * SAMPLE_RATE)), 'the track is the caller alone').to.be.below(-50);
    const timeline = JSON.parse(fs.readFileSync(timelineFile, 'utf8')) as TimelineFile;
    expect(timeline.calls).to.have.length(1);
    const interval = timeline.calls[0]!;
    expect(interval).to.deep.include({ callId, name: 'Carla', topic: 'Weekend weather' });
    console.log(`      timeline call interval ${interval.start}–${interval.end} s`);
    expect(Math.abs(interval.start - mixOn!), 'the call interval starts where the caller is heard (s)').to.be.below(0.5);
    expect(Math.abs(interval.end - mixOff!), 'the call interval ends where the caller stops (s)').to.be.below(0.5);
  });
});
