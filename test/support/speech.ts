// Speech for the speaking detector: espeak-ng sentences with pauses, as a 48 kHz mono WAV for Chromium's fake
// microphone; and the measurement: speech activity in a performer's own track (an energy VAD on 20 ms windows) against
// the timeline's speaking intervals.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import type { TempDir } from './media.ts';
import { median, rmsDb, SAMPLE_RATE } from './audio.ts';

export type Interval = [number, number];

export interface SpeechScript {
  /** espeak-ng voice (`en`, `en-us`, `de`, `fr`, …). */
  voice: string;
  /** Words per minute. */
  wpm: number;
  /** Silence before the first sentence, seconds. */
  leadSec: number;
  /** Sentences (with commas: espeak-ng pauses there) and the silence after each, seconds. */
  sentences: [text: string, pauseSec: number][];
}

/** 16-bit mono PCM samples and rate of a RIFF WAV (espeak-ng's output). */
function readWav(buf: Buffer): { rate: number; samples: Int16Array } {
  if (buf.toString('ascii', 0, 4) !== 'RIFF' || buf.toString('ascii', 8, 12) !== 'WAVE') throw new Error('not a WAV');
  let rate = 0;
  for (let p = 12; p + 8 <= buf.length;) {
    const id = buf.toString('ascii', p, p + 4);
    // espeak-ng writes to a pipe, so its data chunk's size field is not filled in: the data runs to the end.
    const size = id === 'data' ? buf.length - p - 8 : buf.readUInt32LE(p + 4);
    if (id === 'fmt ') {
      if (buf.readUInt16LE(p + 8) !== 1 || buf.readUInt16LE(p + 10) !== 1 || buf.readUInt16LE(p + 22) !== 16) throw new Error('not 16-bit mono PCM');
      rate = buf.readUInt32LE(p + 12);
    } else if (id === 'data') {
      const data = buf.subarray(p + 8, p + 8 + (size & ~1));
      return { rate, samples: new Int16Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.length)) };
    }
    p += 8 + size + (size & 1);
  }
  throw new Error('WAV without data');
}

/**
 * The script spoken by espeak-ng, sentence by sentence with its pauses, peak-normalized to -6 dBFS and resampled by
 * FFmpeg to a mono 48 kHz 16-bit WAV (what --use-file-for-fake-audio-capture plays, looped).
 */
export function speechWav(dir: TempDir, name: string, script: SpeechScript): string {
  const out = dir.file(`speech-${name}.wav`);
  if (fs.existsSync(out)) return out;
  let rate = 0;
  const parts: Int16Array[] = [];
  const silence = (sec: number) => new Int16Array(Math.round(sec * rate));
  for (const [i, [text, pauseSec]] of script.sentences.entries()) {
    const wav = readWav(execFileSync('espeak-ng', ['-v', script.voice, '-s', String(script.wpm), '--stdout', text], { maxBuffer: 64 * 1024 * 1024 }));
    if (rate !== 0 && wav.rate !== rate) throw new Error(`espeak-ng changed its rate: ${wav.rate} after ${rate}`);
    rate = wav.rate;
    if (i === 0) parts.push(silence(script.leadSec));
    parts.push(wav.samples, silence(pauseSec));
  }
  const total = parts.reduce((n, p) => n + p.length, 0);
  let peak = 1;
  for (const p of parts) for (const s of p) peak = Math.max(peak, Math.abs(s));
  const gain = (32767 * 10 ** (-6 / 20)) / peak;
  const pcm = Buffer.alloc(total * 2);
  let o = 0;
  for (const p of parts) for (const s of p) o = pcm.writeInt16LE(Math.round(s * gain), o);
  execFileSync('ffmpeg', ['-v', 'error', '-y', '-f', 's16le', '-ar', String(rate), '-ac', '1', '-i', 'pipe:0',
    '-af', 'aresample=48000', '-ac', '1', '-c:a', 'pcm_s16le', out], { input: pcm });
  return out;
}

export const VAD_WINDOW_S = 0.02;

/** RMS level (dBFS) of each 20 ms window of a track. */
export function windowLevels(pcm: Float32Array): number[] {
  const win = Math.round(VAD_WINDOW_S * SAMPLE_RATE);
  const out: number[] = [];
  for (let s = 0; s + win <= pcm.length; s += win) out.push(rmsDb(pcm, s, win));
  return out;
}

/** Runs of true windows as [start, end) intervals in seconds. */
function runs(flags: boolean[]): Interval[] {
  const out: Interval[] = [];
  let start = -1;
  for (let i = 0; i <= flags.length; i++) {
    if (flags[i] && start < 0) start = i;
    if (!flags[i] && start >= 0) {
      out.push([start * VAD_WINDOW_S, i * VAD_WINDOW_S]);
      start = -1;
    }
  }
  return out;
}

/** Joins intervals separated by less than gapSec. */
export function bridge(intervals: readonly Interval[], gapSec: number): Interval[] {
  const out: Interval[] = [];
  for (const [a, b] of intervals) {
    const last = out.at(-1);
    if (last && a - last[1] < gapSec - 1e-9) last[1] = Math.max(last[1], b);
    else out.push([a, b]);
  }
  return out;
}

/**
 * Speech activity in a track of one speaker: a 20 ms window is speech when its RMS is within withinDb of the speech
 * level, the 90th percentile of the windows' levels (the vowels, as long as the speaker talks for more than a tenth of
 * the track); pauses shorter than bridgeSec are bridged (the detector's hangover).
 */
export function speechActivity(levels: readonly number[], opts: { withinDb: number; bridgeSec: number }): { speechLevelDb: number; intervals: Interval[] } {
  const sorted = [...levels].sort((x, y) => x - y);
  const speechLevelDb = sorted[Math.floor(sorted.length * 0.9)] ?? -Infinity;
  const intervals = bridge(runs(levels.map((l) => l >= speechLevelDb - opts.withinDb)), opts.bridgeSec);
  return { speechLevelDb, intervals };
}

const inside = (t: number, xs: readonly Interval[]) => xs.some(([a, b]) => t >= a && t < b);

/** Of the 20 ms windows whose centre is in [from, to): the share where both say the same (speech or not). */
export function agreement(truth: readonly Interval[], detected: readonly Interval[], from: number, to: number): { share: number; windows: number } {
  let agree = 0;
  let windows = 0;
  for (let i = Math.ceil(from / VAD_WINDOW_S); (i + 1) * VAD_WINDOW_S <= to; i++) {
    const t = (i + 0.5) * VAD_WINDOW_S;
    windows++;
    if (inside(t, truth) === inside(t, detected)) agree++;
  }
  return { share: windows ? agree / windows : NaN, windows };
}

export interface EdgeErrors {
  /** Detector start − truth start of each matched group, seconds. */
  onsets: number[];
  /** Detector end − truth end of each matched group, seconds. */
  offsets: number[];
  /** Groups with several truth intervals under one detected run (the detector bridged a pause). */
  merged: number;
  /** Groups where the detector broke one truth interval in several. */
  split: number;
  /** Truth intervals no detected interval overlaps, and detected intervals overlapping no truth. */
  missed: number;
  falseAlarms: number;
}

/**
 * Onset and offset errors. Truth and detected intervals that overlap, directly or through each other, form a group;
 * a group's onset error is its first detected start minus its first truth start, its offset error its last detected
 * end minus its last truth end. Groups reaching outside [from, to) (cut by the broadcast's ends) are left out.
 */
export function edgeErrors(truth: readonly Interval[], detected: readonly Interval[], from: number, to: number): EdgeErrors {
  const r: EdgeErrors = { onsets: [], offsets: [], merged: 0, split: 0, missed: 0, falseAlarms: 0 };
  const overlaps = (x: Interval, y: Interval) => x[0] < y[1] && y[0] < x[1];
  const items = [...truth.map((iv) => ({ iv, truth: true })), ...detected.map((iv) => ({ iv, truth: false }))].sort((x, y) => x.iv[0] - y.iv[0]);
  // Sorted by start, a group is a run of items each starting before the end of what came before it, with both kinds.
  let group: typeof items = [];
  const flush = () => {
    if (group.length === 0) return;
    const t = group.filter((g) => g.truth).map((g) => g.iv);
    const d = group.filter((g) => !g.truth).map((g) => g.iv);
    group = [];
    const lo = Math.min(...t.map((x) => x[0]), ...d.map((x) => x[0]));
    const hi = Math.max(...t.map((x) => x[1]), ...d.map((x) => x[1]));
    if (lo < from || hi > to) return;
    if (d.length === 0) return void (r.missed += t.length);
    if (t.length === 0) return void (r.falseAlarms += d.length);
    r.onsets.push(d[0]![0] - t[0]![0]);
    r.offsets.push(Math.max(...d.map((x) => x[1])) - Math.max(...t.map((x) => x[1])));
    if (t.length > 1) r.merged++;
    if (d.length > 1) r.split++;
  };
  let end = -Infinity;
  for (const it of items) {
    // Same-kind intervals never overlap each other: a new item joins the group only by overlapping one already in it.
    if (group.length > 0 && !(it.iv[0] < end && group.some((g) => g.truth !== it.truth && overlaps(g.iv, it.iv)))) {
      flush();
      end = -Infinity;
    }
    group.push(it);
    end = Math.max(end, it.iv[1]);
  }
  flush();
  return r;
}

export { median };
