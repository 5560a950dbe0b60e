// Listening to output: decode with ffmpeg to PCM, then measure tones (Goertzel) and levels per window.
import { execFileSync } from 'node:child_process';

export const SAMPLE_RATE = 48000;

/** Decodes any media (file, playlist, or concat list) to mono float32 PCM at 48 kHz. */
export function decodeToPcm(input: string, inputArgs: string[] = []): Float32Array {
  const buf = execFileSync('ffmpeg', ['-v', 'error', ...inputArgs, '-i', input, '-ac', '1', '-ar', String(SAMPLE_RATE), '-f', 'f32le', '-'], {
    maxBuffer: 1024 * 1024 * 1024,
  });
  return new Float32Array(buf.buffer, buf.byteOffset, Math.floor(buf.length / 4));
}

/** Amplitude (dBFS of a sine) of one frequency in a window: Goertzel over a Hann window (low leakage from neighbours). */
export function toneDb(pcm: Float32Array, freq: number, start = 0, length = pcm.length - start): number {
  const end = Math.min(pcm.length, start + length);
  const n = end - start;
  if (n <= 0) return -Infinity;
  const k = (2 * Math.PI * freq) / SAMPLE_RATE;
  const coeff = 2 * Math.cos(k);
  let s1 = 0;
  let s2 = 0;
  for (let i = start; i < end; i++) {
    const w = 0.5 - 0.5 * Math.cos((2 * Math.PI * (i - start)) / (n - 1));
    const s0 = pcm[i]! * w + coeff * s1 - s2;
    s2 = s1;
    s1 = s0;
  }
  const power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
  // The Hann window's coherent gain is 0.5.
  const amplitude = (2 * Math.sqrt(Math.max(power, 0))) / (n * 0.5);
  return 20 * Math.log10(amplitude + 1e-12);
}

/** RMS level in dBFS of a window. */
export function rmsDb(pcm: Float32Array, start = 0, length = pcm.length - start): number {
  const end = Math.min(pcm.length, start + length);
  let sum = 0;
  for (let i = start; i < end; i++) sum += pcm[i]! * pcm[i]!;
  return 10 * Math.log10(sum / Math.max(1, end - start) + 1e-20);
}

/** Tone levels per window of windowSec seconds: rows of [startSec, ...dB per freq]. */
export function toneTimeline(pcm: Float32Array, freqs: number[], windowSec = 0.5): { t: number; db: number[] }[] {
  const win = Math.round(windowSec * SAMPLE_RATE);
  const rows: { t: number; db: number[] }[] = [];
  for (let s = 0; s + win <= pcm.length; s += win) rows.push({ t: s / SAMPLE_RATE, db: freqs.map((f) => toneDb(pcm, f, s, win)) });
  return rows;
}

/**
 * Onsets (seconds) of bursts of one tone: where its level, measured over a sliding 10 ms window every 1 ms, first
 * rises above half the amplitude of the loudest bursts after at least minGapSec below it.
 */
export function toneOnsets(pcm: Float32Array, freq: number, minGapSec = 0.2): number[] {
  const win = Math.round(0.01 * SAMPLE_RATE);
  const hop = Math.round(0.001 * SAMPLE_RATE);
  const levels: number[] = [];
  for (let s = 0; s + win <= pcm.length; s += hop) levels.push(toneDb(pcm, freq, s, win));
  const sorted = [...levels].sort((a, b) => b - a);
  const plateau = sorted[Math.floor(sorted.length * 0.05)] ?? -Infinity;
  const threshold = plateau - 6;
  const onsets: number[] = [];
  let below = Infinity;
  for (let i = 0; i < levels.length; i++) {
    if (levels[i]! < threshold) {
      below++;
      continue;
    }
    if (below * 0.001 >= minGapSec) onsets.push((i * hop + win / 2) / SAMPLE_RATE);
    below = 0;
  }
  return onsets;
}

/**
 * Ends (seconds) of bursts of one tone: the last 10 ms window (centre, as in toneOnsets) whose level is above
 * toneOnsets' threshold (or `thresholdDb`, for bursts whose level varies: a browser's auto gain) before at least
 * minGapSec below it. A burst still on when pcm ends has no end.
 */
export function toneEnds(pcm: Float32Array, freq: number, minGapSec = 0.2, thresholdDb?: number): number[] {
  const win = Math.round(0.01 * SAMPLE_RATE);
  const hop = Math.round(0.001 * SAMPLE_RATE);
  const levels: number[] = [];
  for (let s = 0; s + win <= pcm.length; s += hop) levels.push(toneDb(pcm, freq, s, win));
  const sorted = [...levels].sort((a, b) => b - a);
  const threshold = thresholdDb ?? (sorted[Math.floor(sorted.length * 0.05)] ?? -Infinity) - 6;
  const ends: number[] = [];
  let last = -1;
  for (let i = 0; i < levels.length; i++) {
    if (levels[i]! >= threshold) last = i;
    else if (last >= 0 && (i - last) * 0.001 >= minGapSec) {
      ends.push((last * hop + win / 2) / SAMPLE_RATE);
      last = -1;
    }
  }
  return ends;
}

/** For each onset in a, the signed offset (b - a, seconds) to the nearest onset in b within maxSec. */
export function matchOnsets(a: number[], b: number[], maxSec = 0.3): number[] {
  const out: number[] = [];
  for (const t of a) {
    let best: number | null = null;
    for (const u of b) if (Math.abs(u - t) <= maxSec && (best === null || Math.abs(u - t) < Math.abs(best))) best = u - t;
    if (best !== null) out.push(best);
  }
  return out;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((x, y) => x - y);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

/**
 * Whether one tone is on, over sliding 10 ms windows every 1 ms from fromSec for durSec: 1 where its level is within
 * onDb of the loudest window in the span, 0 elsewhere (and outside pcm).
 */
function toneOnOff(pcm: Float32Array, freq: number, fromSec: number, durSec: number, onDb = 20): number[] {
  const win = Math.round(0.01 * SAMPLE_RATE);
  const hop = Math.round(0.001 * SAMPLE_RATE);
  const start = Math.round(fromSec * SAMPLE_RATE);
  const levels: number[] = [];
  for (let i = 0; i * 0.001 < durSec; i++) {
    const s = start + i * hop;
    levels.push(s < 0 || s + win > pcm.length ? -Infinity : toneDb(pcm, freq, s, win));
  }
  const peak = Math.max(...levels);
  return levels.map((db) => (db >= peak - onDb ? 1 : 0));
}

/**
 * How far (seconds, b minus a) the tone's burst in b is shifted from a around time t: the lag within ±maxLagSec that
 * maximizes the normalized cross-correlation of the two on/off envelopes (toneOnOff) over [t - before, t + after]:
 * by default around an onset (toneOnsets), { before: 0.2, after: 0.1 } around an end (toneEnds). On/off, not levels:
 * only the timing of the edges counts, so a level that changes within the window (b's compressor ducking one voice
 * under another) does not pull the peak; with levels it did, by tens of ms.
 *
 * Measure a burst that begins with its performer's stream (the first after a join or a reload) at its end: for its
 * first 100-150 ms, an Opus decoder joining a stream midway puts the tone out tens of dB low and rising (each frame's
 * band energies are coded against the previous frame's, and the decoder's previous frames were silence), and the
 * mix's compressor lifts that quiet start, so the burst rises earlier in the mix than in the track at any threshold.
 * Its end is where the source stops, at once in both. b's other voices can still show for a few ms (onset clicks).
 */
export function envelopeLag(a: Float32Array, b: Float32Array, freq: number, t: number, maxLagSec = 0.25, span = { before: 0.1, after: 0.2 }): number {
  const ea = toneOnOff(a, freq, t - span.before, span.before + span.after);
  const maxLag = Math.round(maxLagSec * 1000);
  const eb = toneOnOff(b, freq, t - span.before - maxLagSec, span.before + span.after + 2 * maxLagSec);
  const norm = (xs: number[]) => {
    const m = xs.reduce((s, x) => s + x, 0) / xs.length;
    const d = xs.map((x) => x - m);
    const n = Math.sqrt(d.reduce((s, x) => s + x * x, 0)) || 1;
    return d.map((x) => x / n);
  };
  const na = norm(ea);
  let best = -Infinity;
  let bestLag = 0;
  for (let lag = -maxLag; lag <= maxLag; lag++) {
    const nb = norm(eb.slice(lag + maxLag, lag + maxLag + ea.length));
    let c = 0;
    for (let i = 0; i < na.length; i++) c += na[i]! * nb[i]!;
    if (c > best) {
      best = c;
      bestLag = lag;
    }
  }
  return bestLag / 1000;
}
