// The on-air mixer with real mediasoup, real FFmpeg and synthetic Opus performers, proved by listening to its HLS.
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { expect } from 'chai';
import * as mediasoup from 'mediasoup';
import type { types as ms } from 'mediasoup';
import { Mixer } from '../../pipelines/mixer/mixer.ts';
import { tickingRelays } from '../../pipelines/mixer/slotRelay.ts';
import { createLogger } from '../../services/logger.ts';
import { STAGE_MEDIA_CODECS } from '../../services/sfu/stage.ts';
import { SAMPLE_RATE, decodeToPcm, toneDb } from '../support/audio.ts';
import { PlaylistWatcher, segmentNumber, segmentsInput } from '../support/hls.ts';
import { TempDir } from '../support/media.ts';
import { SyntheticPerformer } from '../support/synthetic.ts';

const log = createLogger(process.env['TEST_LOG_LEVEL'] ?? 'error');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** FFmpeg writes PROGRAM-DATE-TIME as ...+0000; Date.parse wants +00:00. */
export const pdtMs = (pdt: string) => Date.parse(pdt.replace(/([+-]\d\d)(\d\d)$/, '$1:$2'));

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function udpPortsOpen(ports: number[]): number[] {
  const text = fs.readFileSync('/proc/net/udp', 'utf8');
  const open = new Set(text.split('\n').slice(1).map((l) => parseInt(l.trim().split(/\s+/)[1]?.split(':')[1] ?? '', 16)));
  return ports.filter((p) => open.has(p));
}

describe('pipeline: on-air mixer', function () {
  this.timeout(240_000);
  let worker: ms.Worker;
  let router: ms.Router;
  let tmp: TempDir;
  const performers: SyntheticPerformer[] = [];
  const mixers: Mixer[] = [];

  before(async () => {
    tmp = new TempDir();
    worker = await mediasoup.createWorker({ logLevel: 'error' });
    router = await worker.createRouter({ mediaCodecs: STAGE_MEDIA_CODECS });
  });
  afterEach(async () => {
    await Promise.all(performers.splice(0).map((p) => p.stop()));
    await Promise.all(mixers.splice(0).map((m) => m.stop()));
  });
  after(() => {
    worker?.close();
    tmp?.remove();
  });

  async function startMixer(name: string, slots = 4, input: 'ogg' | 'rtp' = 'ogg'): Promise<Mixer> {
    const m = await Mixer.start(router, { stageId: name, outDir: tmp.file(name), slots, segmentSeconds: 1, partSeconds: 0.2, lowLatency: true, listSize: 10, aacBitrateKbps: 128, log, input });
    mixers.push(m);
    return m;
  }
  async function performer(freq: number, levelDb = -12): Promise<SyntheticPerformer> {
    const p = await SyntheticPerformer.start(router, freq, { levelDb });
    performers.push(p);
    return p;
  }

  it('churn: performers join, leave and mute for a minute; the programme keeps real-time cadence and carries exactly who is present', async () => {
    const seconds = Number(process.env['CHURN_SECONDS'] ?? 60);
    const mixer = await startMixer('churn');
    const watcher = new PlaylistWatcher(mixer.playlistPath);
    const freqs = [440, 620, 820, 1020];
    // present[f] = list of [fromMs, toMs) wall intervals in which f's tone should be in the mix.
    const present = new Map<number, [number, number][]>(freqs.map((f) => [f, []]));
    const live = new Map<number, { p: SyntheticPerformer; since: number; paused: boolean }>();
    const t0 = Date.now();
    let step = 0;
    try {
      while (Date.now() - t0 < seconds * 1000) {
        const f = freqs[step % freqs.length]!;
        const cur = live.get(f);
        const now = Date.now();
        // A fixed rotation of join → mute → unmute → leave, staggered across performers.
        const action = Math.floor(step / freqs.length) % 4;
        if (!cur && (action === 0 || action === 3)) {
          const p = await performer(f);
          await mixer.attach(`p${f}`, p.producer);
          live.set(f, { p, since: Date.now(), paused: false });
        } else if (cur && action === 1 && !cur.paused) {
          await cur.p.producer.pause(); // server-side mute: packets stop, the slot fills silence
          present.get(f)!.push([cur.since, now]);
          cur.paused = true;
        } else if (cur && action === 2 && cur.paused) {
          await cur.p.producer.resume();
          cur.paused = false;
          cur.since = Date.now();
        } else if (cur) {
          if (!cur.paused) present.get(f)!.push([cur.since, now]);
          live.delete(f);
          await cur.p.stop(); // leave: producer closed, consumer gone, slot detached
        }
        step++;
        await sleep(1500);
      }
      for (const [f, cur] of live) if (!cur.paused) present.get(f)!.push([cur.since, Date.now()]);
      await sleep(1500);
    } finally {
      watcher.stop();
    }

    const segs = watcher.segments;
    expect(segs.length, 'segments written').to.be.at.least(seconds - 3);
    // Cadence and duration.
    const body = segs.slice(0, -1);
    for (const s of body) expect(s.duration, `${s.uri} duration`).to.be.within(0.9, 1.1);
    let maxGap = 0;
    for (let i = 1; i < segs.length; i++) maxGap = Math.max(maxGap, segs[i]!.arrivedAt - segs[i - 1]!.arrivedAt);
    expect(maxGap, 'largest pause between segments (ms)').to.be.at.most(1500);
    // Lag: when a segment is listed versus when its audio ends on the programme clock.
    let maxLag = -Infinity;
    for (const s of segs) maxLag = Math.max(maxLag, s.arrivedAt - (pdtMs(s.programDateTime!) + s.duration * 1000));
    expect(maxLag, 'largest lag behind wall-clock (ms)').to.be.below(1000);
    // Numbering is continuous.
    const nums = segs.map((s) => segmentNumber(s.uri));
    expect(nums).to.deep.equal(nums.map((_, i) => nums[0]! + i));

    // Listen: each window well inside a present interval has the tone; well outside, it does not.
    const pcm = decodeToPcm(watcher.concatInput());
    const mediaStart = pdtMs(segs[0]!.programDateTime!);
    const margin = 1000;
    let checkedPresent = 0;
    let checkedAbsent = 0;
    for (const f of freqs) {
      const intervals = present.get(f)!;
      for (let w = mediaStart + margin; w + 500 < mediaStart + pcm.length / SAMPLE_RATE * 1000 - margin; w += 500) {
        const inside = intervals.some(([a, b]) => w - margin >= a && w + 500 + margin <= b);
        const outside = intervals.every(([a, b]) => w + 500 + margin <= a || w - margin >= b);
        if (!inside && !outside) continue;
        const db = toneDb(pcm, f, Math.round(((w - mediaStart) / 1000) * SAMPLE_RATE), SAMPLE_RATE / 2);
        if (inside) {
          expect(db, `${f} Hz present at +${((w - t0) / 1000).toFixed(1)} s`).to.be.above(-40);
          checkedPresent++;
        } else {
          // Absent tones measure below -60 dB but for intermodulation of the others through the compressor (seen
          // up to -59); present ones measure -14 to -30.
          expect(db, `${f} Hz absent at +${((w - t0) / 1000).toFixed(1)} s`).to.be.below(-50);
          checkedAbsent++;
        }
      }
    }
    expect(checkedPresent, 'present windows checked').to.be.at.least(seconds / 2);
    expect(checkedAbsent, 'absent windows checked').to.be.at.least(seconds / 2);
    expect(mixer.ffmpeg.restarts, 'FFmpeg never restarted for a performer').to.equal(0);
    const durs = body.map((x) => x.duration);
    process.stdout.write(
      `      churn ${seconds}s: ${segs.length} segments, durations ${Math.min(...durs).toFixed(3)}-${Math.max(...durs).toFixed(3)} s, ` +
        `largest gap ${maxGap} ms, largest lag ${maxLag.toFixed(0)} ms, windows checked ${checkedPresent} present / ${checkedAbsent} absent\n`,
    );
  });

  it('crash: a SIGKILLed FFmpeg is back within 2 s with a DISCONTINUITY, numbering continues, nothing written is lost', async () => {
    const mixer = await startMixer('crash');
    await performer(440);
    await mixer.attach('a', performers[0]!.producer);
    const watcher = new PlaylistWatcher(mixer.playlistPath);
    try {
      await watcher.waitFor((w) => w.segments.length >= 4, 15_000);
      const before = fs.readdirSync(path.dirname(mixer.playlistPath)).filter((f) => /^seg_.*\.m4s$/.test(f));
      const oldPid = mixer.ffmpeg.pid!;
      const restarted = new Promise<number>((r) => mixer.ffmpeg.once('started', () => r(Date.now())));
      const countBefore = watcher.segments.length;
      const killedAt = Date.now();
      process.kill(oldPid, 'SIGKILL');
      const restartedAt = await restarted;
      expect(restartedAt - killedAt, 'FFmpeg restarted (ms)').to.be.below(2000);
      expect(mixer.ffmpeg.pid).to.not.equal(oldPid);
      await watcher.waitFor((w) => w.segments.length >= countBefore + 1, 10_000);
      const back = watcher.segments[countBefore]!;
      expect(back.arrivedAt - killedAt, 'first new segment listed after the kill (ms)').to.be.below(2500);
      expect(back.discontinuity, 'the first segment after the crash is marked').to.equal(true);
      process.stdout.write(`      crash: restarted after ${restartedAt - killedAt} ms, first new segment listed after ${back.arrivedAt - killedAt} ms\n`);
      await watcher.waitFor((w) => w.segments.length >= countBefore + 3, 10_000);
      const nums = watcher.segments.map((s) => segmentNumber(s.uri));
      expect(nums, 'numbering continues').to.deep.equal(nums.map((_, i) => nums[0]! + i));
      const after = fs.readdirSync(path.dirname(mixer.playlistPath));
      for (const f of before) expect(after, `${f} kept`).to.include(f);
      // The tone is there after the restart too.
      expect(toneDb(decodeToPcm(segmentsInput(path.dirname(mixer.playlistPath), [watcher.segments.at(-1)!])), 440)).to.be.above(-40);
    } finally {
      watcher.stop();
    }
  });

  for (const level of [-30, -6]) {
    it(`loudness: one performer at ${level} dBFS comes out at -16 ± 1.5 LUFS with true peak ≤ -1 dBTP`, async () => {
      const mixer = await startMixer(`loud${-level}`);
      await mixer.attach('a', (await performer(440, level)).producer);
      const watcher = new PlaylistWatcher(mixer.playlistPath);
      try {
        await watcher.waitFor((w) => w.segments.length >= 17, 30_000);
      } finally {
        watcher.stop();
      }
      // Skip the first segments: the performer joins after FFmpeg starts, then 10 s of settling.
      const r = spawnSync('ffmpeg', ['-hide_banner', '-nostats', '-i', watcher.concatInput(watcher.segments.length - 6), '-af', 'ebur128=peak=true', '-f', 'null', '-'], { encoding: 'utf8' });
      const summary = r.stderr.slice(r.stderr.lastIndexOf('Summary:'));
      const integrated = Number(/I:\s+(-?[\d.]+) LUFS/.exec(summary)?.[1]);
      const truePeak = Number(/True peak:\s+Peak:\s+(-?[\d.]+|-inf) dBFS/.exec(summary)?.[1]);
      process.stdout.write(`      loudness at ${level} dBFS in: ${integrated} LUFS, true peak ${truePeak} dBFS\n`);
      expect(integrated, summary).to.be.within(-17.5, -14.5);
      expect(truePeak, summary).to.be.at.most(-1);
    });
  }

  it('performers attached at the same moment get separate slots, and both are heard', async () => {
    const mixer = await startMixer('together');
    const [a, b] = await Promise.all([performer(440), performer(660)]);
    const slots = await Promise.all([mixer.attach('a', a.producer), mixer.attach('b', b.producer), mixer.attach('a', a.producer)]);
    expect(slots[0]).to.not.equal(slots[1]);
    expect(slots[2], 'attaching again is idempotent').to.equal(slots[0]);
    const watcher = new PlaylistWatcher(mixer.playlistPath);
    await watcher.waitFor((w) => w.segments.length >= 4, 15_000);
    watcher.stop();
    const pcm = decodeToPcm(watcher.concatInput(watcher.segments.length - 2));
    expect(toneDb(pcm, 440)).to.be.above(-25);
    expect(toneDb(pcm, 660)).to.be.above(-25);
  });

  it('stop, one pipe (the default): ENDLIST, FFmpeg gone (it read its slots from a pipe: no SDP, no UDP port of its own), every UDP port, transport and the relay timer released', async () => {
    const mixer = await startMixer('cleanup-ogg');
    await mixer.attach('a', (await performer(440)).producer);
    const watcher = new PlaylistWatcher(mixer.playlistPath);
    await watcher.waitFor((w) => w.segments.length >= 2, 15_000);
    watcher.stop();
    const pid = mixer.ffmpeg.pid!;
    const relayPorts = mixer.relayPorts();
    expect(udpPortsOpen(relayPorts), 'relay ports open while live').to.have.length(4);
    expect(fs.existsSync(path.join(path.dirname(mixer.playlistPath), '.mix.sdp')), 'no SDP').to.equal(false);
    expect(fs.readlinkSync(`/proc/${pid}/fd/0`), "FFmpeg's stdin: Node's pipe (a socket pair)").to.match(/^(pipe|socket):/);
    const socketInodes = fs.readdirSync(`/proc/${pid}/fd`).map((fd) => /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/${pid}/fd/${fd}`))?.[1]).filter(Boolean);
    const udpInodes = new Set(fs.readFileSync('/proc/net/udp', 'utf8').split('\n').slice(1).map((l) => l.trim().split(/\s+/)[9]));
    expect(socketInodes.filter((i) => udpInodes.has(i)), "FFmpeg's UDP sockets").to.deep.equal([]);
    expect(mixer.pipeStats(), 'nothing dropped, no slot out of line').to.deep.equal({ paddedFrames: 0, droppedBytes: 0 });
    const transportsBefore = ((await router.dump()) as { transportIds: string[] }).transportIds.length;
    await mixer.stop();
    mixers.splice(mixers.indexOf(mixer), 1);
    const text = fs.readFileSync(mixer.playlistPath, 'utf8');
    expect(text.trim().endsWith('#EXT-X-ENDLIST')).to.equal(true);
    expect(processAlive(pid), 'FFmpeg exited').to.equal(false);
    expect(udpPortsOpen(relayPorts), 'relay ports released').to.deep.equal([]);
    expect(tickingRelays(), 'no relay left on the timer').to.equal(0);
    const transportsAfter = ((await router.dump()) as { transportIds: string[] }).transportIds.length;
    expect(transportsBefore - transportsAfter, "the mixer's PlainTransport closed").to.equal(1);
  });

  it('stop, RTP sockets (MIX_INPUT=rtp): ENDLIST, FFmpeg gone, every UDP port and transport released', async () => {
    const mixer = await startMixer('cleanup-rtp', 4, 'rtp');
    await mixer.attach('a', (await performer(440)).producer);
    const watcher = new PlaylistWatcher(mixer.playlistPath);
    await watcher.waitFor((w) => w.segments.length >= 2, 15_000);
    watcher.stop();
    const pid = mixer.ffmpeg.pid!;
    const relayPorts = mixer.relayPorts();
    expect(udpPortsOpen(relayPorts), 'relay ports open while live').to.have.length(4);
    expect(mixer.pipeStats()).to.equal(null);
    const transportsBefore = ((await router.dump()) as { transportIds: string[] }).transportIds.length;
    const ffmpegPorts = fs
      .readFileSync(path.join(path.dirname(mixer.playlistPath), '.mix.sdp'), 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('m=audio'))
      .map((l) => Number(l.split(' ')[1]));
    expect(udpPortsOpen(ffmpegPorts), 'FFmpeg listens on its RTP ports while live').to.have.length(ffmpegPorts.length);
    await mixer.stop();
    mixers.splice(mixers.indexOf(mixer), 1);
    const text = fs.readFileSync(mixer.playlistPath, 'utf8');
    expect(text.trim().endsWith('#EXT-X-ENDLIST')).to.equal(true);
    expect(processAlive(pid), 'FFmpeg exited').to.equal(false);
    expect(udpPortsOpen(ffmpegPorts), 'RTP ports released').to.deep.equal([]);
    expect(udpPortsOpen(relayPorts), 'relay ports released').to.deep.equal([]);
    expect(fs.existsSync(path.join(path.dirname(mixer.playlistPath), '.mix.sdp')), 'SDP removed').to.equal(false);
    const transportsAfter = ((await router.dump()) as { transportIds: string[] }).transportIds.length;
    expect(transportsBefore - transportsAfter, "the mixer's PlainTransport closed").to.equal(1);
    expect(mixer.relayStats().length).to.equal(4);
  });
});
