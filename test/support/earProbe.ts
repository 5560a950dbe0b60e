// An ear in the page: what a page's own audio graph renders, measured for one tone (Goertzel per 256-sample block,
// stamped with the wall clock), so that latency can be measured as people hear it, mic to ear, on one clock.
// A Playwright init script wraps the page's createMediaStreamSource (the microphone, remote performers) and
// createMediaElementSource (the listener's <audio>). Used by the browser benchmark and the latency tests.
import fs from 'node:fs';
import type { Browser, Page } from 'playwright-core';

export const PULSE_HZ = 880;
const PULSE_SECONDS = 0.25;
const RATE = 48000;

/** A mono 16-bit WAV: bursts of PULSE_HZ, 1.2-2.8 s apart (a fixed pseudo-random sequence), or silence. */
export function writeWav(file: string, seconds: number, pulses: boolean): number[] {
  const n = Math.round(seconds * RATE);
  const data = Buffer.alloc(n * 2);
  const onsets: number[] = [];
  if (pulses) {
    let seed = 12345;
    const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    for (let t = 0.5; t + PULSE_SECONDS < seconds; t += 1.2 + 1.6 * rand()) onsets.push(t);
    const amp = 10 ** (-12 / 20) * 32767;
    const ramp = Math.round(0.002 * RATE);
    for (const t of onsets) {
      const s0 = Math.round(t * RATE);
      const len = Math.round(PULSE_SECONDS * RATE);
      for (let i = 0; i < len; i++) {
        const env = Math.min(1, i / ramp, (len - i) / ramp);
        data.writeInt16LE(Math.round(amp * env * Math.sin((2 * Math.PI * PULSE_HZ * i) / RATE)), (s0 + i) * 2);
      }
    }
  }
  const header = Buffer.alloc(44);
  header.write('RIFF', 0);
  header.writeUInt32LE(36 + data.length, 4);
  header.write('WAVE', 8);
  header.write('fmt ', 12);
  header.writeUInt32LE(16, 16);
  header.writeUInt16LE(1, 20); // PCM
  header.writeUInt16LE(1, 22); // mono
  header.writeUInt32LE(RATE, 24);
  header.writeUInt32LE(RATE * 2, 28);
  header.writeUInt16LE(2, 32);
  header.writeUInt16LE(16, 34);
  header.write('data', 36);
  header.writeUInt32LE(data.length, 40);
  fs.writeFileSync(file, Buffer.concat([header, data]));
  return onsets;
}

export type Tap = [wallMs: number, amplitude: number][];
declare global {
  interface Window {
    __benchTaps: { mic: Tap; remote: Tap; element: Tap };
  }
}

/**
 * The probe, injected before any page script runs (so the page's own calls go through it). Plain JavaScript text: a
 * function passed to Playwright would be serialized as this process's loader compiled it (with helpers it lacks).
 */
export const PROBE_SCRIPT = `(() => {
  const FREQ = ${PULSE_HZ};
  const taps = { mic: [], remote: [], element: [] };
  window.__benchTaps = taps;
  const micStreams = new WeakSet();
  const md = navigator.mediaDevices;
  if (md && md.getUserMedia) {
    const gum = md.getUserMedia.bind(md);
    md.getUserMedia = async (c) => {
      const s = await gum(c);
      micStreams.add(s);
      return s;
    };
  }
  const probe = (ctx, node, label) => {
    const sp = ctx.createScriptProcessor(256, 1, 1);
    const coeff = 2 * Math.cos((2 * Math.PI * FREQ) / ctx.sampleRate);
    sp.onaudioprocess = (e) => {
      const x = e.inputBuffer.getChannelData(0);
      let s1 = 0, s2 = 0;
      for (let i = 0; i < x.length; i++) {
        const s0 = x[i] + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
      }
      const power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
      taps[label].push([performance.timeOrigin + performance.now(), (2 * Math.sqrt(Math.max(power, 0))) / x.length]);
    };
    node.connect(sp);
    sp.connect(ctx.destination); // a ScriptProcessor runs only when connected; it outputs silence
  };
  const ms = AudioContext.prototype.createMediaStreamSource;
  AudioContext.prototype.createMediaStreamSource = function (stream) {
    const node = ms.call(this, stream);
    probe(this, node, micStreams.has(stream) ? 'mic' : 'remote');
    return node;
  };
  const me = AudioContext.prototype.createMediaElementSource;
  AudioContext.prototype.createMediaElementSource = function (el) {
    const node = me.call(this, el);
    probe(this, node, 'element');
    return node;
  };
})();`;

/** Onsets (wall ms) in a tap: the level rising over half the bursts' plateau after at least 0.4 s under it. */
export function tapOnsets(tap: Tap): number[] {
  if (tap.length === 0) return [];
  const sorted = tap.map(([, a]) => a).sort((a, b) => b - a);
  const plateau = sorted[Math.floor(sorted.length * 0.03)]!;
  if (!(plateau > 1e-4)) return [];
  const threshold = plateau / 2;
  const out: number[] = [];
  let lastAbove = -Infinity;
  for (const [t, a] of tap) {
    if (a < threshold) continue;
    if (t - lastAbove >= 400) out.push(t);
    lastAbove = t;
  }
  return out;
}

/** Delays (ms) from each onset in `from` to its match in `to`: the first within maxMs, at the delay most agree on. */
export function matchDelays(from: number[], to: number[], minMs: number, maxMs: number, tolMs = 150): number[] {
  let best = NaN;
  let bestCount = 0;
  for (const f of from) {
    for (const t of to) {
      const d = t - f;
      if (d < minMs || d > maxMs) continue;
      let c = 0;
      for (const f2 of from) if (to.some((t2) => Math.abs(t2 - f2 - d) <= tolMs)) c++;
      if (c > bestCount) {
        bestCount = c;
        best = d;
      }
    }
  }
  if (Number.isNaN(best)) return [];
  const out: number[] = [];
  for (const f of from) {
    const t = to.find((x) => Math.abs(x - f - best) <= tolMs);
    if (t !== undefined) out.push(t - f);
  }
  return out;
}

export async function probedPage(browser: Browser): Promise<Page> {
  const page = await browser.newPage();
  await page.addInitScript(PROBE_SCRIPT);
  return page;
}

