// A programme corpus for the on-air sound, built at test time from Debian's packages: espeak-ng speech (several
// voices, languages and rates, at levels from -40 to -1 dBFS peak, over a microphone's noise floor), music-like
// material from sox's synth (chords with envelopes, a bass line and a drum-like pulse), and both together. Each item
// is what the mixer's slots would carry; measure() runs the mixer's own filter graph (the same builder) over them
// offline and measures the programme as EBU R128 does (FFmpeg's ebur128, true peak on).
//
// The sound chain's constants were set on other material (other voices, texts and music, see docs/decisions.md,
// "On-air sound"); this corpus judges them.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { mixerOutputOptions } from '../../pipelines/mixer/ffmpegArgs.ts';
import { SAMPLE_RATE, decodeToPcm } from './audio.ts';
import type { TempDir } from './media.ts';
import { speechWav, type SpeechScript } from './speech.ts';

export type Pcm = Float32Array;

const dbToGain = (db: number) => 10 ** (db / 20);

export function peakDb(pcm: Pcm): number {
  let p = 0;
  for (const s of pcm) p = Math.max(p, Math.abs(s));
  return 20 * Math.log10(p);
}

export function rmsOf(pcm: Pcm, from = 0, to = pcm.length): number {
  let e = 0;
  for (let i = from; i < to; i++) e += pcm[i]! ** 2;
  return 10 * Math.log10(e / Math.max(1, to - from) + 1e-30);
}

/** The same material with its peak at `db` dBFS. */
export function atPeak(pcm: Pcm, db: number): Pcm {
  const g = dbToGain(db - peakDb(pcm));
  return pcm.map((s) => s * g);
}

export const silence = (seconds: number): Pcm => new Float32Array(Math.round(seconds * SAMPLE_RATE));

export function concat(...parts: Pcm[]): Pcm {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Sample-wise sum, as long as the longest. */
export function sum(...parts: Pcm[]): Pcm {
  const out = new Float32Array(Math.max(...parts.map((p) => p.length)));
  for (const p of parts) for (let i = 0; i < p.length; i++) out[i]! += p[i]!;
  return out;
}

/** `pcm` repeated (or cut) to `seconds`. */
export function loopTo(pcm: Pcm, seconds: number): Pcm {
  const out = new Float32Array(Math.round(seconds * SAMPLE_RATE));
  for (let i = 0; i < out.length; i++) out[i] = pcm[i % pcm.length]!;
  return out;
}

/** Pink noise (sox), `seconds` long, at `rmsDb` dBFS RMS: a microphone's and a room's floor. */
export function pinkNoise(dir: TempDir, seconds: number, rmsDb: number): Pcm {
  const f = dir.file(`pink-${seconds}.wav`);
  if (!fs.existsSync(f)) execFileSync('sox', ['-n', '-r', String(SAMPLE_RATE), '-c', '1', '-b', '16', f, 'synth', String(seconds), 'pinknoise']);
  const pcm = decodeToPcm(f);
  const g = dbToGain(rmsDb - rmsOf(pcm));
  return pcm.map((s) => s * g);
}

/** A script spoken by espeak-ng (test/support/speech.ts), as PCM. */
export function speech(dir: TempDir, name: string, script: SpeechScript): Pcm {
  return decodeToPcm(speechWav(dir, name, script));
}

export interface MusicSpec {
  /** Chords, each a list of notes in sox's names (C3, E3, G3 …), one per bar. */
  chords: string[][];
  /** Beats a minute; four beats a bar. */
  bpm: number;
  /** sox synth's wave for the chords: pluck, square, sawtooth, triangle, sine. */
  wave: string;
  /** Length, seconds (the bars are repeated). */
  seconds: number;
}

/**
 * Music-like material from sox: each bar a chord (its notes with an attack and a decay), a bass note an octave under
 * the chord's root on every beat, and a drum-like pulse: a falling sine (kick) on beats 1 and 3, high-passed noise
 * (snare) on 2 and 4.
 */
export function music(dir: TempDir, name: string, spec: MusicSpec): Pcm {
  const f = dir.file(`music-${name}.wav`);
  if (!fs.existsSync(f)) {
    const beat = 60 / spec.bpm;
    const bar = 4 * beat;
    const sox = (...args: string[]) => execFileSync('sox', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    const gen = (out: string, ...effects: string[]) => sox('-n', '-r', String(SAMPLE_RATE), '-c', '1', '-b', '16', out, ...effects);
    const bars: string[] = [];
    spec.chords.forEach((chord, i) => {
      const notes = chord.map((n, j) => {
        const nf = dir.file(`music-${name}-${i}-${j}.wav`);
        gen(nf, 'synth', bar.toFixed(4), spec.wave, n, 'fade', 'q', '0.02', bar.toFixed(4), (bar * 0.6).toFixed(4), 'vol', '0.25');
        return nf;
      });
      const bass = dir.file(`music-${name}-${i}-bass.wav`);
      gen(bass, 'synth', beat.toFixed(4), 'triangle', `${chord[0]!.replace(/\d$/, '')}1`, 'fade', '0', beat.toFixed(4), (beat * 0.5).toFixed(4), 'vol', '0.5', 'repeat', '3');
      const kick = dir.file(`music-${name}-kick.wav`);
      gen(kick, 'synth', beat.toFixed(4), 'sine', '110-40', 'fade', '0', beat.toFixed(4), (beat * 0.7).toFixed(4), 'vol', '0.7');
      const snare = dir.file(`music-${name}-snare.wav`);
      gen(snare, 'synth', beat.toFixed(4), 'noise', 'highpass', '1200', 'fade', '0', beat.toFixed(4), (beat * 0.8).toFixed(4), 'vol', '0.35');
      const drums = dir.file(`music-${name}-${i}-drums.wav`);
      sox(kick, snare, kick, snare, drums);
      const b = dir.file(`music-${name}-${i}-bar.wav`);
      sox('-m', ...(notes.length > 1 ? notes : [notes[0]!]), bass, drums, b);
      bars.push(b);
    });
    const once = dir.file(`music-${name}-once.wav`);
    if (bars.length > 1) sox(...bars, once);
    else fs.copyFileSync(bars[0]!, once);
    fs.renameSync(once, f);
  }
  return loopTo(decodeToPcm(f), spec.seconds);
}

/** Writes PCM as a 48 kHz mono WAV: float, or 16-bit (what Chromium's fake microphone plays). */
export function writeWav(file: string, pcm: Pcm, codec: 'pcm_f32le' | 'pcm_s16le' = 'pcm_f32le'): string {
  execFileSync('ffmpeg', ['-v', 'error', '-y', '-f', 'f32le', '-ar', String(SAMPLE_RATE), '-ac', '1', '-i', 'pipe:0', '-c:a', codec, file], {
    input: Buffer.from(pcm.buffer, pcm.byteOffset, pcm.byteLength),
  });
  return file;
}

/**
 * One Matroska file with `slots` streams: the items' slots first, silence in the rest (as empty mixer slots carry), all
 * as long as the longest. Each stream is stereo with the same signal in both channels, as FFmpeg decodes a browser's
 * mono Opus from the mixer's SDP (opus/48000/2). The mixer's filter reads its slots as streams 0:a:0 … 0:a:N-1.
 */
export function slotsInput(dir: TempDir, name: string, items: Pcm[], slots: number): string {
  const len = Math.max(...items.map((p) => p.length));
  const files = Array.from({ length: slots }, (_, i) => writeWav(dir.file(`${name}-slot${i}.wav`), items[i] ?? new Float32Array(len)));
  const out = dir.file(`${name}-slots.mka`);
  execFileSync('ffmpeg', ['-v', 'error', '-y', ...files.flatMap((f) => ['-i', f]), '-filter_complex', files.map((_, i) => `[${i}:a]pan=stereo|c0=c0|c1=c0[s${i}]`).join(';'), ...files.flatMap((_, i) => ['-map', `[s${i}]`]), '-c:a', 'pcm_f32le', out]);
  return out;
}

export interface Loudness {
  /** Integrated loudness, LUFS. */
  integrated: number;
  truePeak: number;
  lra: number;
  /** Momentary (400 ms) and short-term (3 s) loudness every 100 ms, t the window's end (s). */
  frames: { t: number; m: number; s: number }[];
}

/** EBU R128 figures of an audio file (FFmpeg's ebur128, true peak). */
export function loudness(file: string): Loudness {
  const r = spawnSync('ffmpeg', ['-hide_banner', '-nostats', '-i', file, '-af', 'ebur128=peak=true:framelog=info', '-f', 'null', '-'], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
  const summary = r.stderr.slice(r.stderr.lastIndexOf('Summary:'));
  const num = (re: RegExp) => {
    const m = re.exec(summary)?.[1];
    if (m === undefined) throw new Error(`ebur128 gave no figure for ${re}: ${summary || r.stderr.slice(-2000)}`);
    return m === '-inf' ? -Infinity : Number(m);
  };
  const frames = [...r.stderr.matchAll(/t: *([\d.]+) +TARGET.*?M: *(-?[\d.]+|-inf) S: *(-?[\d.]+|-inf)/g)].map((m) => ({ t: Number(m[1]), m: Number(m[2]), s: Number(m[3]) }));
  return { integrated: num(/I:\s+(-?[\d.]+) LUFS/), truePeak: num(/True peak:\s+Peak:\s+(-?[\d.]+|-inf) dBFS/), lra: num(/LRA:\s+(-?[\d.]+) LU/), frames };
}

/**
 * The programme the mixer would publish from these slots: its exact filter graph and AAC encoder
 * (mixerOutputOptions, with `slots` inputs), offline, to a fragmented MP4.
 */
export function mixOffline(input: string, slots: number, out: string): string {
  const r = spawnSync('ffmpeg', ['-v', 'error', '-y', '-i', input, ...mixerOutputOptions({ inputs: slots, partSeconds: 0.2, aacBitrateKbps: 128 }), out], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`the mixer's graph failed offline: ${r.stderr}`);
  return out;
}

/** The mixer's filter graph alone (no encoder): the programme as mono 48 kHz PCM. */
export function filterOffline(input: string, filter: string): Pcm {
  const r = spawnSync('ffmpeg', ['-v', 'error', '-i', input, '-filter_complex', filter, '-map', '[mix]', '-ac', '1', '-f', 'f32le', '-'], { maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`the filter failed offline: ${r.stderr.toString()}`);
  return new Float32Array(r.stdout.buffer, r.stdout.byteOffset, r.stdout.length / 4);
}

/**
 * The lag (samples, 0 … maxLag) at which `b` best matches `a` (normalized cross-correlation), over `length` samples
 * from `from`: first on 4× decimated signals, then at full rate around the best.
 */
export function bestLag(a: Pcm, b: Pcm, from: number, length: number, maxLag: number): number {
  const corr = (x: Pcm, y: Pcm, f: number, n: number, lag: number, step: number) => {
    let xy = 0, yy = 0;
    for (let i = f; i < f + n; i += step) {
      const yv = y[i + lag] ?? 0;
      xy += x[i]! * yv;
      yy += yv * yv;
    }
    return xy / Math.sqrt(yy + 1e-30);
  };
  let best = 0;
  let bestC = -Infinity;
  for (let lag = 0; lag <= maxLag; lag += 4) {
    const c = corr(a, b, from, length, lag, 4);
    if (c > bestC) [best, bestC] = [lag, c];
  }
  let fine = best;
  bestC = -Infinity;
  for (let lag = Math.max(0, best - 8); lag <= best + 8; lag++) {
    const c = corr(a, b, from, length, lag, 1);
    if (c > bestC) [fine, bestC] = [lag, c];
  }
  return fine;
}
