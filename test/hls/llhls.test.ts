// The live LL-HLS playlist as players read it, through the real origin (real mediasoup, FFmpeg, live writer, HTTP):
// an LL client's blocking reloads for 30 s, every playlist checked against RFC 8216bis (hls-parser's strict mode and
// our own reading of the rules), every part and segment fetched, the audio decoded; then players other than hls.js
// (FFmpeg's HLS demuxer, GStreamer's hlsdemux2 and its older hlsdemux) play the same live playlist.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import * as HLS from 'hls-parser';
import type { App } from '../../services/app.ts';
import type { Stage } from '../../services/sfu/stage.ts';
import { startTestApp } from '../support/app.ts';
import { decodeToPcm, median, rmsDb, SAMPLE_RATE, toneDb } from '../support/audio.ts';
import { eventually } from '../support/browser.ts';
import { TempDir } from '../support/media.ts';
import { SyntheticPerformer } from '../support/synthetic.ts';

const WATCH_SECONDS = Number(process.env['LLHLS_WATCH_SECONDS'] ?? 30);
const PLAYER_SECONDS = 12;

type MediaPlaylist = HLS.types.MediaPlaylist;

/** What a URI was the first time a playlist listed it: later playlists must say the same. */
interface SegmentIdentity {
  msn: number;
  duration: number;
  pdt: number;
  map: string;
  discontinuitySequence: number;
}

function parseStrict(text: string): MediaPlaylist {
  HLS.setOptions({ strictMode: true, silent: true });
  try {
    const p = HLS.parse(text);
    if (p.isMasterPlaylist) throw new Error('a multivariant playlist where a media playlist was expected');
    return p as MediaPlaylist;
  } catch (err) {
    throw new Error(`hls-parser (strict) refused the playlist: ${(err as Error).message}\n${text}`);
  } finally {
    HLS.setOptions({ strictMode: false, silent: false });
  }
}

const partOf = (uri: string) => {
  const m = /^part_(\d+)_(\d+)\.m4s$/.exec(uri);
  if (!m) throw new Error(`not a part name: ${uri}`);
  return { msn: Number(m[1]), part: Number(m[2]) };
};

/** 20 ms RMS windows of a steady tone: the lowest, relative to the median (a lost frame is a hole many dB deep). */
function deepestDipDb(pcm: Float32Array, skipSec = 0.1): { dipDb: number; at: number; medianDb: number } {
  const win = Math.round(0.02 * SAMPLE_RATE);
  const levels: number[] = [];
  for (let i = Math.round(skipSec * SAMPLE_RATE); i + win <= pcm.length - win; i += win) levels.push(rmsDb(pcm, i, win));
  const med = median(levels);
  let min = Infinity;
  let at = 0;
  levels.forEach((l, i) => {
    if (l < min) (min = l), (at = skipSec + i * 0.02);
  });
  return { dipDb: min - med, at, medianDb: med };
}

/** Where the tone first comes within 20 dB of its median level (5 ms windows), in seconds. */
function toneOnset(pcm: Float32Array): number {
  const win = Math.round(0.005 * SAMPLE_RATE);
  const levels: number[] = [];
  for (let i = 0; i + win <= pcm.length; i += win) levels.push(rmsDb(pcm, i, win));
  const med = median(levels);
  const first = levels.findIndex((l) => l >= med - 20);
  return first < 0 ? Infinity : first * 0.005;
}

/** Milliseconds of hole: 5 ms windows more than 20 dB under the median level (a steady tone has none). */
function holeMs(pcm: Float32Array, skipSec = 0.1): number {
  const win = Math.round(0.005 * SAMPLE_RATE);
  const levels: number[] = [];
  for (let i = Math.round(skipSec * SAMPLE_RATE); i + win <= pcm.length - 4 * win; i += win) levels.push(rmsDb(pcm, i, win));
  const med = median(levels);
  return levels.filter((l) => l < med - 20).length * 5;
}

describe('LL-HLS playlist as players read it', function () {
  this.timeout(WATCH_SECONDS * 1000 + 180_000);
  let tmp: TempDir;
  let app: App;
  let stage: Stage;
  let sender: SyntheticPerformer;
  const children = new Set<ChildProcess>();

  const url = (file: string) => `${app.url}/live/${stage.id}/${file}`;
  const get = async (file: string): Promise<{ status: number; body: Buffer }> => {
    const res = await fetch(url(file));
    return { status: res.status, body: Buffer.from(await res.arrayBuffer()) };
  };

  before(async () => {
    tmp = new TempDir();
    app = await startTestApp({ CDN_DIR: tmp.file('cdn') });
    const created = await app.stages.create('LL-HLS compliance');
    stage = await app.registry.open(created.id);
    sender = await SyntheticPerformer.start(stage.router, 440);
    await app.onAir.start(stage.id);
    await stage.broadcast!.mixer.attach('sender', sender.producer, 'Sender');
    await eventually(async () => stage.broadcast!.mixer.publisher.text, (t) => /part_\d+_\d+\.m4s/.test(t), 20_000, 20);
  });
  after(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await sender?.stop();
    await app?.close();
    tmp?.remove();
  });

  it(`${WATCH_SECONDS} s of blocking reloads: every playlist valid (hls-parser strict); parts ≤ PART-TARGET, PART-HOLD-BACK ≥ 3 × PART-TARGET, a PRELOAD-HINT for the next part, names that keep their meaning, PDT steps equal to EXTINF; each segment is its parts byte for byte, and the segments play one unbroken tone (but where the sender stalled and the mixer filled silence)`, async () => {
    const segments = new Map<string, SegmentIdentity>();
    const partDurations = new Map<string, number>();
    const partsListed = new Map<number, string[]>();
    const partBytes = new Map<string, Buffer>();
    const segmentBytes = new Map<number, Buffer>();
    const maps = new Set<string>();
    let reloads = 0;
    let lastMediaSequence = -1;
    let requested: { msn: number; part: number } | null = null;
    const senderSilence = () => stage.broadcast!.mixer.relayStats().find((r) => r.realPackets > 0)?.silencePackets ?? 0;
    const silenceBefore = senderSilence();
    let text = (await (await fetch(url('index.m3u8'))).text());
    const until = Date.now() + WATCH_SECONDS * 1000;
    while (Date.now() < until) {
      reloads++;
      const p = parseStrict(text);
      const ctx = `reload ${reloads}:\n${text}`;
      // Server control and part target.
      const partTarget = p.partTargetDuration!;
      const ll = p.lowLatencyCompatibility!;
      expect(partTarget, ctx).to.be.a('number').and.be.within(0.1, app.config.hls.partSeconds + 1e-9);
      expect(ll.canBlockReload, ctx).to.equal(true);
      expect(ll.partHoldBack, `PART-HOLD-BACK ≥ 3 × PART-TARGET\n${ctx}`).to.be.at.least(3 * partTarget - 1e-9);
      expect(p.mediaSequenceBase!, ctx).to.be.at.least(lastMediaSequence);
      lastMediaSequence = p.mediaSequenceBase!;
      const complete = p.segments.filter((s) => s.uri !== '');
      const trailing = p.segments.at(-1)!;
      expect(trailing.uri, `the playlist ends with the segment being made, its parts and hint\n${ctx}`).to.equal('');
      for (const s of complete) {
        expect(Math.round(s.duration), `EXTINF rounds to at most TARGETDURATION\n${ctx}`).to.be.at.most(p.targetDuration);
        const id: SegmentIdentity = { msn: s.mediaSequenceNumber, duration: s.duration, pdt: s.programDateTime!.getTime(), map: s.map.uri, discontinuitySequence: s.discontinuitySequence };
        const seen = segments.get(s.uri);
        if (seen) expect(id, `${s.uri} keeps its number, duration, date, init section\n${ctx}`).to.deep.equal(seen);
        else segments.set(s.uri, id);
        expect(s.uri).to.equal(`seg_${String(s.mediaSequenceNumber).padStart(5, '0')}.m4s`);
        maps.add(s.map.uri);
      }
      // PROGRAM-DATE-TIME steps by EXTINF (the dates are to the millisecond). The segment being made has no date of
      // its own (it follows from the one before; hls.js 1.6 throws on a DATERANGE in a segment dated by parts only).
      expect(text, `no PROGRAM-DATE-TIME after the last EXTINF\n${ctx}`).to.not.match(/#EXT-X-PROGRAM-DATE-TIME:\S+\n(?:(?!#EXTINF)[^\n]*\n)*$/);
      complete.slice(1).forEach((s, i) => {
        const prev = complete[i]!;
        if (s.discontinuity) return;
        expect(s.programDateTime!.getTime() - prev.programDateTime!.getTime(), `PDT step after ${prev.uri}\n${ctx}`).to.be.closeTo(prev.duration * 1000, 1.5);
      });
      // Parts: within PART-TARGET, a stable duration per name, listed in order as a segment grows.
      for (const s of p.segments) {
        const listed = s.parts.filter((x) => !x.hint);
        listed.forEach((x, i) => {
          expect(partOf(x.uri), `${x.uri} belongs where it is listed\n${ctx}`).to.deep.equal({ msn: s.mediaSequenceNumber, part: i });
          expect(x.duration!, `${x.uri} ≤ PART-TARGET\n${ctx}`).to.be.at.most(partTarget + 1e-9);
          const d = partDurations.get(x.uri);
          if (d === undefined) partDurations.set(x.uri, x.duration!);
          else expect(x.duration, `${x.uri} keeps its duration`).to.equal(d);
        });
        if (s.uri !== '' && listed.length > 0) {
          const sum = listed.reduce((a, x) => a + x.duration!, 0);
          expect(sum, `${s.uri}'s parts add up to its EXTINF\n${ctx}`).to.be.closeTo(s.duration, 0.0005);
        }
        const before = partsListed.get(s.mediaSequenceNumber) ?? [];
        const now = listed.map((x) => x.uri);
        expect(now.slice(0, before.length), `parts of ${s.mediaSequenceNumber} only grow`).to.deep.equal(before.slice(0, now.length));
        if (now.length > before.length) partsListed.set(s.mediaSequenceNumber, now);
      }
      // One hint, for the part after the last one listed.
      const hint = trailing.parts.at(-1)!;
      expect(hint.hint, ctx).to.equal(true);
      expect(p.segments.flatMap((s) => s.parts).filter((x) => x.hint)).to.have.length(1);
      const last = trailing.parts.length > 1 ? trailing.parts.at(-2)! : complete.at(-1)!.parts.at(-1)!;
      const l = partOf(last.uri);
      const h = partOf(hint.uri);
      expect(h, `the hint follows ${last.uri}\n${ctx}`).to.deep.equal(
        trailing.parts.length > 1 ? { msn: l.msn, part: l.part + 1 } : { msn: l.msn + 1, part: 0 },
      );
      // The blocking reload answered with the part it asked for.
      if (requested) {
        const r = requested;
        const has = p.segments.some((s) => s.parts.some((x) => !x.hint && x.uri === `part_${String(r.msn).padStart(5, '0')}_${r.part}.m4s`));
        expect(has, `asked for ${r.msn}.${r.part}\n${ctx}`).to.equal(true);
      }
      // Fetch what is new: every listed part once, every complete segment once.
      for (const s of p.segments)
        for (const x of s.parts)
          if (!x.hint && !partBytes.has(x.uri)) {
            const r = await get(x.uri);
            expect(r.status, x.uri).to.equal(200);
            partBytes.set(x.uri, r.body);
          }
      for (const s of complete)
        if (!segmentBytes.has(s.mediaSequenceNumber)) {
          const r = await get(s.uri);
          expect(r.status, s.uri).to.equal(200);
          segmentBytes.set(s.mediaSequenceNumber, r.body);
        }
      requested = h;
      const res = await fetch(url(`index.m3u8?_HLS_msn=${h.msn}&_HLS_part=${h.part}`));
      expect(res.status).to.equal(200);
      text = await res.text();
    }

    // Each segment whose every part was seen is those parts, byte for byte.
    const msns = [...segmentBytes.keys()].sort((a, b) => a - b);
    let compared = 0;
    for (const msn of msns) {
      const parts = partsListed.get(msn);
      const seg = [...segments.values()].find((s) => s.msn === msn)!;
      if (!parts || Math.abs(parts.reduce((a, u) => a + partDurations.get(u)!, 0) - seg.duration) > 0.0005) continue;
      expect(Buffer.concat(parts.map((u) => partBytes.get(u)!)).equals(segmentBytes.get(msn)!), `segment ${msn} = its parts`).to.equal(true);
      compared++;
    }
    const durations = msns.map((m) => [...segments.values()].find((s) => s.msn === m)!.duration);
    const totalSec = durations.reduce((a, b) => a + b, 0);
    console.log(
      `      ${reloads} reloads, ${msns.length} segments (${msns[0]}–${msns.at(-1)}), ${partBytes.size} parts fetched; ${compared} segments compared with their parts; ` +
        `init sections ${[...maps].join(',')}`,
    );
    expect(reloads, 'an LL client reloads about once a part').to.be.at.least((WATCH_SECONDS / app.config.hls.partSeconds) * 0.8);
    expect(compared, 'segments compared with their parts').to.be.at.least(msns.length - 3);
    expect(msns, 'no segment skipped').to.deep.equal(msns.map((_, i) => msns[0]! + i));
    expect(maps.size, 'one FFmpeg run, one init section').to.equal(1);

    // The segments, behind their init section, decode to as much audio as EXTINF says, and the tone never breaks.
    const init = await get([...maps][0]!);
    expect(init.status).to.equal(200);
    const file = tmp.file('joined.mp4');
    fs.writeFileSync(file, Buffer.concat([init.body, ...msns.map((m) => segmentBytes.get(m)!)]));
    const pcm = decodeToPcm(file);
    // From the first segment on, the programme starts before the sender is attached: silence until its tone comes in.
    const onset = toneOnset(pcm);
    expect(onset, 'the tone starts within the first second').to.be.below(1);
    const dip = deepestDipDb(pcm, onset + 0.02);
    const holes = holeMs(pcm, onset + 0.02);
    // A sender stalled by a loaded machine (over GAP_MS without packets) is filled with silence by the mixer, as a
    // performer's network stall would be: the only hole the segments may have, and no longer than that silence.
    const senderFilled = senderSilence() - silenceBefore;
    console.log(
      `      decoded ${(pcm.length / SAMPLE_RATE).toFixed(3)} s (EXTINF sum ${totalSec.toFixed(3)} s); 440 Hz ${toneDb(pcm, 440).toFixed(1)} dB; ` +
        `tone from ${onset.toFixed(3)} s; deepest 20 ms dip after it ${dip.dipDb.toFixed(1)} dB at ${dip.at.toFixed(2)} s; holes ${holes} ms; the sender's slot filled ${senderFilled} silence frames meanwhile`,
    );
    expect(pcm.length / SAMPLE_RATE, 'decoded duration vs EXTINF sum (s)').to.be.closeTo(totalSec, 0.05);
    expect(toneDb(pcm, 440), 'the tone').to.be.above(-30);
    if (senderFilled === 0) expect(dip.dipDb, 'no hole in the tone (deepest 20 ms window vs the median, dB)').to.be.above(-3);
    else expect(holes, `ms of hole, against the ${senderFilled} silence frames the sender's stalls were filled with`).to.be.at.most(senderFilled * 20 + 40);
  });

  it(`FFmpeg's HLS demuxer, GStreamer's hlsdemux2 (uridecodebin's choice) and its older hlsdemux play the live playlist for ${PLAYER_SECONDS} s each: the tone, with no hole that the origin's own segments do not have`, async () => {
    const playlist = url('index.m3u8');
    // (Never a synchronous child here: the origin answering it is this process.)
    const probed = await new Promise<string>((resolve, reject) =>
      execFile('ffprobe', ['-v', 'error', '-show_entries', 'stream=codec_name,sample_rate', '-of', 'json', playlist], { timeout: 30_000 }, (err, out, stderr) =>
        err ? reject(new Error(`ffprobe: ${err.message}\n${stderr}`)) : resolve(out),
      ),
    );
    expect((JSON.parse(probed) as { streams: unknown[] }).streams[0]).to.deep.equal({ codec_name: 'aac', sample_rate: '48000' });

    const raw = ['audioconvert', '!', 'audioresample', '!', `audio/x-raw,rate=${SAMPLE_RATE},channels=1,format=S16LE`, '!', 'filesink'];
    const players: { name: string; cmd: string; args: (out: string) => string[] }[] = [
      { name: 'ffmpeg', cmd: 'ffmpeg', args: (out) => ['-v', 'error', '-i', playlist, '-ac', '1', '-ar', String(SAMPLE_RATE), '-f', 's16le', '-y', out] },
      { name: 'hlsdemux2', cmd: 'gst-launch-1.0', args: (out) => ['-q', 'uridecodebin', `uri=${playlist}`, '!', ...raw, `location=${out}`] },
      { name: 'hlsdemux', cmd: 'gst-launch-1.0', args: (out) => ['-q', 'souphttpsrc', `location=${playlist}`, '!', 'hlsdemux', '!', 'decodebin', '!', ...raw, `location=${out}`] },
    ];
    // What the origin serves meanwhile, fetched as an ordinary client: every segment listed from before the players
    // start until they stop. A hole in a player's audio must be one the origin has too (the sender's own stall under
    // load, filled with silence by the mixer), never one the player made.
    const senderSilence = () => stage.broadcast!.mixer.relayStats().find((r) => r.realPackets > 0)?.silencePackets ?? 0;
    const silenceBefore = senderSilence();
    const originSegments = new Map<number, Buffer>();
    let originMap = '';
    let capturing = true;
    const capture = async () => {
      HLS.setOptions({ silent: true });
      const p = HLS.parse(await (await fetch(playlist)).text()) as MediaPlaylist;
      for (const s of p.segments) {
        if (s.map) originMap = s.map.uri;
        if (!originSegments.has(s.mediaSequenceNumber)) {
          const r = await get(s.uri);
          if (r.status === 200) originSegments.set(s.mediaSequenceNumber, r.body);
        }
      }
    };
    await capture();
    const captured = (async () => {
      while (capturing) {
        await new Promise((r) => setTimeout(r, 500));
        await capture();
      }
    })();

    // All three at once (each is light: one AAC decode), stopped by PID after the same time.
    const results = await Promise.all(
      players.map(async (pl) => {
        const out = tmp.file(`${pl.name}.raw`);
        const child = spawn(pl.cmd, pl.args(out), { stdio: ['ignore', 'ignore', 'pipe'] });
        children.add(child);
        let stderr = '';
        child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
        const exited = new Promise<void>((r) => child.once('exit', () => r()));
        await Promise.race([exited, new Promise((r) => setTimeout(r, PLAYER_SECONDS * 1000))]);
        const early = child.exitCode !== null;
        child.kill('SIGKILL');
        await exited;
        children.delete(child);
        return { ...pl, out, early, stderr };
      }),
    );
    capturing = false;
    await captured;
    const senderFilled = senderSilence() - silenceBefore;
    const msns = [...originSegments.keys()].sort((a, b) => a - b);
    expect(msns, 'the origin capture skipped no segment').to.deep.equal(msns.map((_, i) => msns[0]! + i));
    const originFile = tmp.file('origin.mp4');
    fs.writeFileSync(originFile, Buffer.concat([(await get(originMap)).body, ...msns.map((m) => originSegments.get(m)!)]));
    const origin = decodeToPcm(originFile);
    const originHoles = holeMs(origin);
    console.log(
      `      origin: ${(origin.length / SAMPLE_RATE).toFixed(2)} s (segments ${msns[0]}–${msns.at(-1)}); holes ${originHoles} ms; ` +
        `the sender's slot filled ${senderFilled} silence frames meanwhile`,
    );
    expect(origin.length / SAMPLE_RATE, 'origin seconds captured').to.be.at.least(PLAYER_SECONDS);
    for (const r of results) {
      expect(r.early, `${r.name} stopped on its own:\n${r.stderr}`).to.equal(false);
      const pcm = decodeToPcm(r.out, ['-f', 's16le', '-ar', String(SAMPLE_RATE), '-ac', '1']);
      // Drop the last 20 ms: a kill can cut a buffer in two.
      const played = pcm.subarray(0, Math.max(0, pcm.length - 0.02 * SAMPLE_RATE));
      const dip = deepestDipDb(played);
      const holes = holeMs(played);
      console.log(
        `      ${r.name}: ${(played.length / SAMPLE_RATE).toFixed(2)} s in ${PLAYER_SECONDS} s; 440 Hz ${toneDb(played, 440).toFixed(1)} dB; ` +
          `deepest 20 ms dip ${dip.dipDb.toFixed(1)} dB; holes ${holes} ms`,
      );
      expect(played.length / SAMPLE_RATE, `${r.name}: seconds of audio`).to.be.at.least(PLAYER_SECONDS - 4);
      expect(toneDb(played, 440), `${r.name}: the tone`).to.be.above(-30);
      // Each hole the origin has may straddle one more 5 ms window in the player's decode than in ours.
      expect(holes, `${r.name}: ms of hole beyond the origin's ${originHoles} ms`).to.be.at.most(originHoles + (originHoles > 0 ? 10 : 0));
      if (originHoles === 0) expect(dip.dipDb, `${r.name}: no dip in the tone (dB) where the origin has none`).to.be.above(-3);
    }
  });
});
