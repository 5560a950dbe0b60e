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
