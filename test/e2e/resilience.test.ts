// Performer resilience with real Chromium pages on a live stage (Ann 440 Hz, Bob 660 Hz), proved in the HLS mix:
// - cut off (the server closes her connection and her transports, her browser is offline for 3 s), Ann is back on
//   stage and on air by herself within 5 s of the network returning;
// - a network change restarts ICE on both her transports: same performer, same slot, on air throughout;
// - an audio path that silently stops working (ICE consent refused) is noticed and repaired the same way;
// - told to rejoin by the server (as after a media worker is replaced), she is back within 5 s.
// Bob stays on air, the mix never pauses and FFmpeg never restarts. The measured times are printed.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import type { types as ms } from 'mediasoup';
import type { Page } from 'playwright-core';
import type { App } from '../../services/app.ts';
import type { Mixer } from '../../pipelines/mixer/mixer.ts';
import { createStage, startTestApp, transition } from '../support/app.ts';
import { SAMPLE_RATE, toneTimeline } from '../support/audio.ts';
import { BrowserSet, eventually, hearsAt } from '../support/browser.ts';
import { PlaylistWatcher, segmentsInput, type SeenSegment } from '../support/hls.ts';
import { TempDir } from '../support/media.ts';

/** What a page hears of another performer: present tones measure -40 to -56 dB there (see performers.test.ts). */
const HEARD_DB = -60;
/** A performer's tone in the mix (after the loudness chain) measures -17 to -25 dBFS; absent, below -60. */
const ON_AIR_DB = -40;
const OFF_AIR_DB = -60;
/** Where a tone leaves and comes back is found in windows of this many seconds of the mix. */
const ONSET_WINDOW_SEC = 0.1;
/**
 * Whether a tone stays on air is checked in windows of this many seconds: the slot relays share the test process's
 * event loop, and on a loaded machine its stalls put short dips (under ~0.1 s) into every slot of the mix at once.
 */
const WINDOW_SEC = 0.5;
const CUT_MS = 3000;
const BACK_WITHIN_MS = 5000;
const MAX_SEGMENT_GAP_MS = 1500;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * decodeToPcm without blocking: the mixer's slot relays run on this process's event loop, and a synchronous decode
 * stalling it for long would put silence into the very mix being measured.
 */
async function decode(input: string): Promise<Float32Array> {
  const { stdout } = await promisify(execFile)('ffmpeg', ['-v', 'error', '-i', input, '-ac', '1', '-ar', String(SAMPLE_RATE), '-f', 'f32le', '-'], {
    encoding: 'buffer',
    maxBuffer: 256 * 1024 * 1024,
  });
  return new Float32Array(stdout.buffer, stdout.byteOffset, Math.floor(stdout.length / 4));
}

/**
 * The longest this process's event loop went without running a 10 ms timer, since the last reset. The app (and so
 * the mixer's slot relays) runs on this event loop: on a loaded machine its stalls delay segments and put short dips
 * into the mix that have nothing to do with the performers; the figure is printed and named in the mix assertions.
 */
class StallMeter {
  #last = performance.now();
  max = 0;
  readonly #timer = setInterval(() => {
    const now = performance.now();
    this.max = Math.max(this.max, now - this.#last - 10);
    this.#last = now;
  }, 10).unref();
  reset(): void {
    this.max = 0;
  }
  stop(): void {
    clearInterval(this.#timer);
  }
}

interface LiveStage {
  id: string;
  ann: Page;
  bob: Page;
  mixer: Mixer;
  watcher: PlaylistWatcher;
  /** The stage's server-side WebRTC transports by id (watched from before anyone joined). */
  transports: Map<string, ms.WebRtcTransport>;
}

interface PageView {
  at: number;
  state: string | undefined;
  link: string | undefined;
  attempt: number;
  status: string;
  performerId: string | null;
}

const view = (page: Page): Promise<PageView> =>
  page.evaluate(() => ({
    at: Date.now(),
    state: document.body.dataset['state'],
    link: document.body.dataset['link'],
    attempt: Number(document.body.dataset['attempt'] ?? 0),
    status: document.getElementById('status')?.textContent ?? '',
    performerId: window.stageDebug.performerId(),
  }));

/** Tone levels of one segment of the mix, per window: rows of [offset in the segment, dB per freq]. */
async function segmentTones(watcher: PlaylistWatcher, seg: SeenSegment, freqs: number[]): Promise<{ t: number; db: number[] }[]> {
  // An fMP4 segment decodes behind its run's init section.
  return toneTimeline(await decode(segmentsInput(path.dirname(watcher.playlist), [seg])), freqs, ONSET_WINDOW_SEC);
}

/**
 * The first segment listed at or after `after` in which freq is on air (in any window), with the wall-clock time its
 * audio starts there (PROGRAM-DATE-TIME plus the window's offset); null if none within timeoutMs. With `afterGone`,
 * only a return counts: the tone must first be off air in some window of those segments.
 */
async function firstOnAir(
  watcher: PlaylistWatcher,
  freq: number,
  after: number,
  timeoutMs: number,
  afterGone = false,
  /** Windows of audio from before this wall-clock time are ignored (a segment listed after a cut still holds audio from before it). */
  audioAfter = 0,
): Promise<{ seg: SeenSegment; audioAt: number } | null> {
  const deadline = Date.now() + timeoutMs;
  let gone = !afterGone;
  let i = 0;
  while (Date.now() < deadline) {
    watcher.poll();
    for (; i < watcher.segments.length; i++) {
      const seg = watcher.segments[i]!;
      if (seg.arrivedAt < after) continue;
      for (const w of await segmentTones(watcher, seg, [freq])) {
        if (Date.parse(seg.programDateTime ?? '') + w.t * 1000 < audioAfter) continue;
        if (w.db[0]! < OFF_AIR_DB) gone = true;
        else if (gone && w.db[0]! > ON_AIR_DB) return { seg, audioAt: Date.parse(seg.programDateTime ?? '') + w.t * 1000 };
      }
    }
    await sleep(50);
  }
  return null;
}

describe('e2e: performer resilience', function () {
  this.timeout(180_000);
  let app: App;
  let tmp: TempDir;
  let browsers: BrowserSet;
  let watcher: PlaylistWatcher | null = null;
  let stalls: StallMeter;

  before(async () => {
    stalls = new StallMeter();
    tmp = new TempDir();
    app = await startTestApp({ CDN_DIR: tmp.file('cdn') });
  });
  beforeEach(() => {
    browsers = new BrowserSet(tmp);
  });
  afterEach(async () => {
    watcher?.stop();
    watcher = null;
    await browsers?.close();
  });
  after(async () => {
    stalls?.stop();
    await app?.close();
    tmp?.remove();
  });

  /** Ann (440 Hz) and Bob (660 Hz) hear each other on a stage that is on air, both in the mix. */
  async function liveStage(title: string): Promise<LiveStage> {
    const stage = await createStage(app, title);
    // Opened before anyone joins, so every transport the stage's router makes is seen.
    const media = await app.registry.open(stage.id);
    const transports = new Map<string, ms.WebRtcTransport>();
    media.router.observer.on('newtransport', (t) => {
      if ('iceParameters' in t) transports.set(t.id, t as ms.WebRtcTransport);
    });
    const ann = await browsers.performer(stage.performerUrl, 440, 'Ann');
    const bob = await browsers.performer(stage.performerUrl, 660, 'Bob');
    await eventually(() => hearsAt(ann, [660]), ([f]) => f! > HEARD_DB, 10_000);
    await eventually(() => hearsAt(bob, [440]), ([f]) => f! > HEARD_DB, 10_000);
    await transition(app, stage.id, 'start');
    const mixer = app.registry.get(stage.id)!.broadcast!.mixer;
    watcher = new PlaylistWatcher(mixer.playlistPath);
    await eventually(async () => mixer.attached.size, (n) => n === 2, 10_000);
    expect(mixer.attached.size, 'both performers on air').to.equal(2);
    expect(await watcher.waitFor((w) => w.segments.length >= 3, 15_000), 'the mix publishes segments').to.equal(true);
    stalls.reset();
    return { id: stage.id, ann, bob, mixer, watcher, transports };
  }

  /**
   * The mix itself: no pause between segments, FFmpeg never restarted. The gaps are taken between the times FFmpeg
   * finished each segment (their files' mtimes): the watcher's own arrival times, polled on this process's event loop,
   * add its stalls to the gaps (they are printed too).
   */
  function expectMixRanThrough(live: LiveStage): number {
    const dir = path.dirname(live.watcher.playlist);
    const written = live.watcher.segments.map((s) => fs.statSync(path.join(dir, s.uri)).mtimeMs);
    const maxGap = Math.round(Math.max(...written.slice(1).map((t, i) => t - written[i]!)));
    console.log(`      largest gap between segments ${maxGap} ms (as listed by the watcher ${Math.max(...live.watcher.gapsMs())} ms); longest event-loop stall of this process ${Math.round(stalls.max)} ms`);
    expect(maxGap, `largest pause between segments (ms; event loop stalled up to ${Math.round(stalls.max)} ms)`).to.be.at.most(MAX_SEGMENT_GAP_MS);
    expect(live.mixer.ffmpeg.restarts, 'FFmpeg restarts').to.equal(0);
    return maxGap;
  }

  it('a performer whose connection the server closes and whose network is down for 3 s is back on stage and on air within 5 s of the path returning', async () => {
    const live = await liveStage('Cut off');
    const { ann, bob, mixer } = live;
    const annId = (await view(ann)).performerId!;
    const bobId = (await view(bob)).performerId!;
    const socketId = await ann.evaluate(() => window.stageDebug.socketId());
    const socket = app.signaling.io.of('/stage').sockets.get(socketId ?? '');
    expect(socket, "Ann's connection on the server").to.not.equal(undefined);
    const segmentsBefore = live.watcher.segments.length;

    // Cut: the server closes Ann's connection (her performer and its transports go with it), and her browser goes
    // offline so that neither Socket.IO nor a new join can come back before the path is restored.
    const cutAt = Date.now();
    socket!.disconnect(true);
    await ann.context().setOffline(true);
    expect(app.registry.get(live.id)!.performer(annId), 'the server dropped her performer').to.equal(undefined);
    expect(mixer.attached.has(annId), 'her slot is free (silence)').to.equal(false);

    const during: PageView[] = [];
    while (Date.now() - cutAt < CUT_MS) {
      during.push(await view(ann));
      await sleep(150);
    }
    const disconnectReason = await ann.evaluate(() => window.stageDebug.lastDisconnect());
    await ann.context().setOffline(false);
    const restoredAt = Date.now();

    await ann.waitForFunction(() => document.body.dataset['state'] === 'publishing', null, { timeout: 15_000 });
    const publishingAt = Date.now();
    const back = await firstOnAir(live.watcher, 440, cutAt, 15_000, true, cutAt + 500);
    const after = await view(ann);

    // How the page looked while cut off: reconnecting, counting tries, saying when the next one is.
    const tries = Math.max(...during.map((v) => v.attempt));
    const shown = during.filter((v) => /attempt \d+, next try in \d+\.\d s/.test(v.status));
    console.log(`      cut off ${CUT_MS} ms: disconnect reason '${disconnectReason}', ${tries} tries while cut; links ${[...new Set(during.map((v) => v.link))].join(' → ')}`);
    console.log(`      status while cut: "${shown.at(0)?.status}" … "${during.at(-1)?.status}"`);
    console.log(`      after the path returned: publishing in ${publishingAt - restoredAt} ms; her tone in a listed segment in ${back ? back.seg.arrivedAt - restoredAt : 'never'} ms (its audio starts ${back ? back.audioAt - restoredAt : '-'} ms after)`);

    expect(disconnectReason, 'the page saw a server-side disconnect').to.equal('io server disconnect');
    expect(during.every((v) => v.state === 'joining'), `data-state while cut: ${[...new Set(during.map((v) => v.state))]}`).to.equal(true);
    expect(during.every((v) => ['reconnecting', 'offline', 'connecting'].includes(v.link ?? '')), `data-link while cut: ${[...new Set(during.map((v) => v.link))]}`).to.equal(true);
    expect(shown.length, 'the status line showed the attempt and the next retry').to.be.above(0);
    expect(tries, 'kept counting tries while cut off').to.be.at.least(2);
    expect(publishingAt - restoredAt, 'back on stage (ms after the path returned)').to.be.at.most(BACK_WITHIN_MS);
    expect(back, 'her tone is back in the mix').to.not.equal(null);
    expect(back!.seg.arrivedAt - restoredAt, 'on air again (ms after the path returned)').to.be.at.most(BACK_WITHIN_MS);
    expect(after.performerId, 'she rejoined as the same performer (her resume token)').to.equal(annId);
    expect(mixer.attached.has(after.performerId!), 'her new performer is attached to the mix').to.equal(true);
    expect(mixer.attached.has(bobId), 'Bob never left the mix').to.equal(true);
    const bobHears = await eventually(() => hearsAt(bob, [440]), ([f]) => f! > HEARD_DB, 10_000);
    expect(bobHears[0], 'Bob hears Ann again').to.be.greaterThan(HEARD_DB);

    // The mix around the cut, window by window: Bob throughout; Ann gone while cut off, then back.
    await live.watcher.waitFor((w) => w.segments.length >= live.watcher.segments.indexOf(back!.seg) + 3, 10_000);
    live.watcher.stop();
    const from = Math.max(0, segmentsBefore - 2);
    const rows = toneTimeline(await decode(live.watcher.concatInput(from)), [440, 660], WINDOW_SEC);
    const bobMin = Math.min(...rows.map((r) => r.db[1]!));
    const annGone = rows.filter((r) => r.db[0]! < OFF_AIR_DB).length * WINDOW_SEC;
    const last = rows.slice(-4);
    console.log(`      mix: Bob's tone never below ${bobMin.toFixed(1)} dBFS; Ann absent for ${annGone.toFixed(2)} s`);
    expect(bobMin, `Bob stayed on air throughout (lowest window, dBFS; event loop stalled up to ${Math.round(stalls.max)} ms)`).to.be.above(ON_AIR_DB);
    expect(annGone, 'Ann was off air while cut off (s)').to.be.at.least(2);
    expect(Math.min(...last.map((r) => r.db[0]!)), 'Ann on air at the end').to.be.above(ON_AIR_DB);
    expectMixRanThrough(live);
  });

  it('a network change restarts ICE on both transports: the same performer stays on stage and on air', async () => {
    const live = await liveStage('Network change');
    const { ann, bob, mixer } = live;
    const annId = (await view(ann)).performerId!;
    const slot = mixer.attached.get(annId)?.slot;
    const performer = app.registry.get(live.id)!.performer(annId);
    const producerId = performer?.producer?.id;
    const pageBefore = await ann.evaluate(() => window.stageDebug.transports());
    expect(pageBefore.map((t) => t.state), 'both transports connected').to.deep.equal(['connected', 'connected']);
    const serverUfrag = (id: string) => live.transports.get(id)?.iceParameters.usernameFragment;
    const serverBefore = pageBefore.map((t) => serverUfrag(t.id));
    expect(serverBefore.every(Boolean), "the server's transports were seen").to.equal(true);
    const restartsBefore = await ann.evaluate(() => window.stageDebug.iceRestarts());
    const segmentsBefore = live.watcher.segments.length;

    // What the browser does when it comes back online or changes networks: the page's own 'online' listener.
    const changedAt = Date.now();
    await ann.evaluate(() => window.dispatchEvent(new Event('online')));
    const states: PageView[] = [];
    const done = await eventually(
      async () => {
        const v = await view(ann);
        states.push(v);
        return { v, restarts: await ann.evaluate(() => window.stageDebug.iceRestarts()) };
      },
      ({ v, restarts }) => restarts >= restartsBefore + 2 && v.link === 'on-stage',
      10_000,
      50,
    );
    const restartedAt = Date.now();
    const pageAfter = await eventually(
      () => ann.evaluate(() => window.stageDebug.transports()),
      (ts) => ts.every((t) => t.state === 'connected'),
      5_000,
    );
    const history = await ann.evaluate(() => window.stageDebug.linkHistory());
    const serverAfter = pageAfter.map((t) => serverUfrag(t.id));
    const iceStates = await Promise.all(pageAfter.map(async (t) => (await live.transports.get(t.id)!.getStats())[0]?.iceState));
    console.log(`      ICE restart on both transports: ${done.restarts - restartsBefore} restarts, on stage again after ${restartedAt - changedAt} ms; server ICE ${iceStates.join('/')}`);
    console.log(`      local ufrags ${pageBefore.map((t) => t.localUfrag).join(',')} → ${pageAfter.map((t) => t.localUfrag).join(',')}`);

    expect(done.restarts - restartsBefore, 'ICE restarts (send + recv)').to.equal(2);
    expect(done.v.link).to.equal('on-stage');
    expect(history.some((h) => h.link === 'ice-restarting' && h.at >= changedAt), 'the page showed the ICE restart').to.equal(true);
    expect(states.every((v) => v.state === 'publishing'), 'on stage throughout').to.equal(true);
    expect(states.every((v) => v.performerId === annId), 'the same performer throughout').to.equal(true);
    expect(pageAfter.map((t) => t.id), 'the same transports').to.deep.equal(pageBefore.map((t) => t.id));
    for (let i = 0; i < 2; i++) {
      expect(serverAfter[i], `the server gave ${pageAfter[i]!.direction} new ICE credentials`).to.be.a('string').and.not.equal(serverBefore[i]);
      if (pageBefore[i]!.localUfrag !== null) {
        expect(pageAfter[i]!.localUfrag, `the browser's ${pageAfter[i]!.direction} ICE agent restarted`).to.not.equal(pageBefore[i]!.localUfrag);
      }
    }
    expect(iceStates.every((s) => s === 'completed' || s === 'connected'), `server ICE states ${iceStates}`).to.equal(true);
    expect(app.registry.get(live.id)!.performer(annId), 'the same performer on the server').to.equal(performer);
    expect(performer!.producer?.id, 'the same producer').to.equal(producerId);
    expect(mixer.attached.get(annId)?.slot, 'the same mix slot').to.equal(slot);

    // Audio still flows both ways over the restarted paths.
    const back = await firstOnAir(live.watcher, 440, restartedAt + 1000, 10_000);
    expect(back, 'Ann on air after the restart').to.not.equal(null);
    const bobHears = await eventually(() => hearsAt(bob, [440]), ([f]) => f! > HEARD_DB, 5_000);
    const annHears = await eventually(() => hearsAt(ann, [660]), ([f]) => f! > HEARD_DB, 5_000);
    expect(bobHears[0], 'Bob hears Ann').to.be.greaterThan(HEARD_DB);
    expect(annHears[0], 'Ann hears Bob').to.be.greaterThan(HEARD_DB);
    await live.watcher.waitFor((w) => w.segments.length >= live.watcher.segments.indexOf(back!.seg) + 2, 10_000);
    live.watcher.stop();
    const rows = toneTimeline(await decode(live.watcher.concatInput(Math.max(0, segmentsBefore - 1))), [440, 660], WINDOW_SEC);
    const lows = [0, 1].map((k) => Math.min(...rows.map((r) => r.db[k]!)));
    console.log(`      mix across the restart: Ann never below ${lows[0]!.toFixed(1)} dBFS, Bob never below ${lows[1]!.toFixed(1)} dBFS`);
    expect(lows[0], `Ann stayed on air through the restart (event loop stalled up to ${Math.round(stalls.max)} ms)`).to.be.above(ON_AIR_DB);
    expect(lows[1], `Bob stayed on air through the restart (event loop stalled up to ${Math.round(stalls.max)} ms)`).to.be.above(ON_AIR_DB);
    expectMixRanThrough(live);
  });

  it('an audio path that silently stops working is noticed (ICE disconnected for 2 s) and repaired by an ICE restart: same performer', async () => {
    const live = await liveStage('Broken path');
    const { ann, bob, mixer } = live;
    const annId = (await view(ann)).performerId!;
    const slot = mixer.attached.get(annId)?.slot;
    const performer = app.registry.get(live.id)!.performer(annId);
    const pageBefore = await ann.evaluate(() => window.stageDebug.transports());
    const restartsBefore = await ann.evaluate(() => window.stageDebug.iceRestarts());
    const segmentsBefore = live.watcher.segments.length;

    // Break Ann's paths without a word to her page: two ICE restarts on the server that she never hears of. Her
    // browser's consent checks still use the first credentials, which the server now refuses (STUN 401), so her ICE
    // agent loses the path as it would behind a dead route; only the page's own watch on the ICE state can notice.
    for (const t of pageBefore) {
      const server = live.transports.get(t.id)!;
      await server.restartIce();
      await server.restartIce();
    }
    const brokenAt = Date.now();
    const views: PageView[] = [];
    const repaired = await eventually(
      async () => {
        const v = await view(ann);
        views.push(v);
        return { v, restarts: await ann.evaluate(() => window.stageDebug.iceRestarts()) };
      },
      ({ v, restarts }) => restarts >= restartsBefore + 2 && v.link === 'on-stage',
      40_000,
      100,
    );
    const repairedAt = Date.now();
    const pageAfter = await eventually(
      () => ann.evaluate(() => window.stageDebug.transports()),
      (ts) => ts.every((t) => t.state === 'connected'),
      5_000,
    );
    const history = (await ann.evaluate(() => window.stageDebug.linkHistory())).filter((h) => h.at >= brokenAt);
    const interruptedAt = history.find((h) => h.link === 'interrupted')?.at;
    const restartingAt = history.find((h) => h.link === 'ice-restarting')?.at;
    console.log(`      path broken: the browser reported it after ${interruptedAt ? interruptedAt - brokenAt : '-'} ms, ICE restart began ${interruptedAt && restartingAt ? restartingAt - interruptedAt : '-'} ms later, on stage again ${repairedAt - brokenAt} ms after the break (${repaired.restarts - restartsBefore} restarts)`);
    console.log(`      links: ${history.map((h) => `${h.link}@${h.at - brokenAt}`).join(' → ')}`);

    expect(interruptedAt, 'the page showed the interruption').to.be.a('number');
    expect(restartingAt, 'the page restarted ICE').to.be.a('number');
    expect(restartingAt! - interruptedAt!, 'ICE restart after the path stayed down ~2 s (ms)').to.be.within(1500, 4000);
    expect(repaired.restarts - restartsBefore, 'ICE restarts (send + recv)').to.equal(2);
    expect(repaired.v.link, 'back to on-stage').to.equal('on-stage');
    expect(pageAfter.map((t) => t.state), 'both transports connected again').to.deep.equal(['connected', 'connected']);
    expect(views.every((v) => v.state === 'publishing' && v.performerId === annId), 'the same performer on stage throughout').to.equal(true);
    expect(app.registry.get(live.id)!.performer(annId), 'the same performer on the server').to.equal(performer);
    expect(mixer.attached.get(annId)?.slot, 'the same mix slot').to.equal(slot);
    for (let i = 0; i < 2; i++) {
      if (pageBefore[i]!.localUfrag !== null) {
        expect(pageAfter[i]!.localUfrag, `the browser's ${pageAfter[i]!.direction} ICE agent restarted`).to.not.equal(pageBefore[i]!.localUfrag);
      }
    }

    const back = await firstOnAir(live.watcher, 440, repairedAt + 1000, 10_000);
    expect(back, 'Ann on air after the repair').to.not.equal(null);
    const bobHears = await eventually(() => hearsAt(bob, [440]), ([f]) => f! > HEARD_DB, 5_000);
    const annHears = await eventually(() => hearsAt(ann, [660]), ([f]) => f! > HEARD_DB, 5_000);
    expect(bobHears[0], 'Bob hears Ann').to.be.greaterThan(HEARD_DB);
    expect(annHears[0], 'Ann hears Bob').to.be.greaterThan(HEARD_DB);
    await live.watcher.waitFor((w) => w.segments.length >= live.watcher.segments.indexOf(back!.seg) + 2, 10_000);
    live.watcher.stop();
    const rows = toneTimeline(await decode(live.watcher.concatInput(Math.max(0, segmentsBefore - 1))), [440, 660], WINDOW_SEC);
    const annGone = rows.filter((r) => r.db[0]! < OFF_AIR_DB).length * WINDOW_SEC;
    const bobMin = Math.min(...rows.map((r) => r.db[1]!));
    console.log(`      mix: Ann off air for ${annGone.toFixed(1)} s across the break and repair; Bob never below ${bobMin.toFixed(1)} dBFS`);
    expect(bobMin, `Bob stayed on air (event loop stalled up to ${Math.round(stalls.max)} ms)`).to.be.above(ON_AIR_DB);
    expectMixRanThrough(live);
  });

  it('a performer the server drops and tells to rejoin (as when its media worker is replaced) is back on stage and on air within 5 s', async () => {
    const live = await liveStage('Told to rejoin');
    const { ann, mixer } = live;
    const annId = (await view(ann)).performerId!;
    // What Stage.rebuild does to every performer after a worker death: close it with a server reason, which the
    // signaling server forwards to the page as `rejoin` (the connection itself stays up).
    const joinsBefore = await ann.evaluate(() => window.stageDebug.joins());
    const droppedAt = Date.now();
    app.registry.get(live.id)!.performer(annId)!.close('media server restarted');
    await ann.waitForFunction((n) => document.body.dataset['state'] === 'publishing' && window.stageDebug.joins() > n, joinsBefore, { timeout: 10_000 });
    expect(await ann.evaluate(() => window.stageDebug.performerId()), 'back as the same performer').to.equal(annId);
    expect(await ann.evaluate(() => document.body.dataset['resumed']), 'the rejoin resumed').to.equal('true');
    const publishingAt = Date.now();
    // Segments listed just after the drop still carry her audio from before it: only a return after silence counts.
    // The silence can be short (a quick rejoin) and the mix's PROGRAM-DATE-TIME is not exactly the wall clock, so
    // the silence is looked for from the drop onward without a margin after it.
    const back = await firstOnAir(live.watcher, 440, droppedAt, 10_000, true);
    const history = (await ann.evaluate(() => window.stageDebug.linkHistory())).filter((h) => h.at >= droppedAt);
    console.log(`      told to rejoin: publishing again in ${publishingAt - droppedAt} ms, on air in a listed segment ${back ? back.seg.arrivedAt - droppedAt : '-'} ms after the drop (its audio from ${back ? back.audioAt - droppedAt : '-'} ms); links ${history.map((h) => h.link).join(' → ')}`);
    expect(history.map((h) => h.link), 'the page showed it was reconnecting').to.include('reconnecting');
    expect(publishingAt - droppedAt, 'back on stage (ms)').to.be.at.most(BACK_WITHIN_MS);
    expect(back, 'on air again').to.not.equal(null);
    expect(back!.seg.arrivedAt - droppedAt, 'on air again (ms)').to.be.at.most(BACK_WITHIN_MS);
    expect(mixer.attached.size, 'both performers in the mix').to.equal(2);
    live.watcher.stop();
    expectMixRanThrough(live);
  });
});
