// The sound chain's cost and delay, side by side with the chain it replaced (docs/decisions.md, "On-air sound"). One
// FFmpeg does what the mixer's does (8 slots of Opus decoded, the filter graph, AAC 128k), offline on the same input,
// with either chain, alternately; its CPU over the programme's length is its cost per stage in real time. The delay is
// where the programme best matches the slots' sum (cross-correlation, searched to 500 ms).
import { spawnSync } from 'node:child_process';
import { mixerFilter } from '../pipelines/mixer/ffmpegArgs.ts';
import { SAMPLE_RATE } from '../test/support/audio.ts';
import { atPeak, bestLag, concat, filterOffline, music, silence, slotsInput, speech, sum, pinkNoise, type Pcm } from '../test/support/corpus.ts';
import type { TempDir } from '../test/support/media.ts';

/** The chain main ran before "On-air sound": one compressor with a fixed make-up after the mix, tuned on tones. */
export function previousMixerFilter(inputs: number): string {
  const labels = Array.from({ length: inputs }, (_, i) => `[0:a:${i}]`).join('');
  return (
    `${labels}amix=inputs=${inputs}:normalize=0:dropout_transition=0,` +
    'agate=threshold=0.003:ratio=2:range=0.06:attack=10:release=250,acompressor=threshold=0.01:ratio=20:attack=5:release=300:makeup=12:knee=2,' +
    'volume=1.7dB,alimiter=limit=0.79:attack=5:release=50:level=disabled,asetpts=N/SR/TB[mix]'
  );
}

export interface ChainFigures {
  /** CPU (user + system) of the whole FFmpeg over the programme's length, each round. */
  coresPerStage: number[];
  median: number;
  delayMs: number;
}

export interface SoundBench {
  slots: number;
  programmeSeconds: number;
  rounds: number;
  previous: ChainFigures;
  current: ChainFigures;
  /** current − previous, medians. */
  addedCores: number;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** A 4-performer stage's slots: two voices, music, a third voice over it, four empty slots. Opus, as the mixer decodes. */
function stageInput(dir: TempDir, slots: number, seconds: number): { input: string; first: Pcm } {
  const sp = (name: string, voice: string, wpm: number, text: string) =>
    speech(dir, name, { voice, wpm, leadSec: 0.2, sentences: [[text, 0.8], [text, 1.5]] });
  const fit = (p: Pcm) => {
    const out = new Float32Array(Math.round(seconds * SAMPLE_RATE));
    for (let i = 0; i < out.length; i++) out[i] = p[i % p.length]!;
    return out;
  };
  const floor = pinkNoise(dir, seconds, -75);
  const a = sum(fit(atPeak(concat(sp('bench-a', 'en-gb', 160, 'Welcome back to the programme, here are the news at the top of the hour.'), silence(2)), -3)), floor);
  const b = sum(fit(atPeak(concat(silence(3), sp('bench-b', 'en-us', 150, 'Thanks, it is good to be here, and I have a lot to tell you today.')), -24)), floor);
  const m = fit(atPeak(music(dir, 'bench', { chords: [['C3', 'E3', 'G3'], ['A2', 'C3', 'E3']], bpm: 110, wave: 'pluck', seconds: 16 }), -18));
  const c = sum(fit(atPeak(concat(silence(5), sp('bench-c', 'de', 170, 'Und jetzt ein Blick auf das Wetter am Wochenende.')), -12)), floor);
  const pcmInput = slotsInput(dir, 'bench-sound', [a, b, m, c], slots);
  // The slots as the mixer gets them: Opus (it decodes 8 streams, the empty ones carrying Opus silence).
  const opus = dir.file('bench-sound-slots-opus.mka');
  const r = spawnSync('ffmpeg', ['-v', 'error', '-y', '-i', pcmInput, ...Array.from({ length: slots }, (_, i) => ['-map', `0:a:${i}`]).flat(), '-c:a', 'libopus', '-b:a', '64k', opus]);
  if (r.status !== 0) throw new Error(`could not encode the bench's slots: ${r.stderr.toString()}`);
  return { input: opus, first: a };
}

/** CPU seconds (user + system) of one FFmpeg run, from its -benchmark line. */
function runCpuSeconds(input: string, filter: string): number {
  const r = spawnSync('ffmpeg', [
    '-hide_banner', '-nostats', '-benchmark', '-i', input, '-filter_complex', filter, '-map', '[mix]',
    '-c:a', 'aac', '-aac_coder', 'fast', '-b:a', '128k', '-ar', '48000', '-ac', '2', '-f', 'mp4', '-movflags', 'cmaf+empty_moov+default_base_moof', '-frag_duration', '184000', '-y', '/dev/null',
  ], { encoding: 'utf8' });
  const m = /utime=([\d.]+)s stime=([\d.]+)s/.exec(r.stderr);
  if (r.status !== 0 || !m) throw new Error(`ffmpeg failed in the sound bench: ${r.stderr.slice(-500)}`);
  return Number(m[1]) + Number(m[2]);
}

export function benchSound(opts: { dir: TempDir; slots: number; seconds: number; rounds: number; log: (s: string) => void }): SoundBench {
  const { input, first } = stageInput(opts.dir, opts.slots, opts.seconds);
  const chains = { previous: previousMixerFilter(opts.slots), current: mixerFilter(opts.slots) };
  // The delay in real time: the current graph without the lookahead's compensation on the programme clock.
  const delayChains = { previous: chains.previous, current: mixerFilter(opts.slots, { compensateLookahead: false }) };
  const cores: Record<keyof typeof chains, number[]> = { previous: [], current: [] };
  for (let r = 0; r < opts.rounds; r++) {
    // Alternately, so that a busy moment of the machine falls on both.
    for (const k of (r % 2 === 0 ? ['previous', 'current'] : ['current', 'previous']) as (keyof typeof chains)[]) {
      cores[k].push(runCpuSeconds(input, chains[k]) / opts.seconds);
    }
  }
  // Delay: the slots in PCM, slot 0 alone (the others silent), through each graph without the encoder.
  const alone = slotsInput(opts.dir, 'bench-sound-delay', [first], opts.slots);
  const delayMs = (filter: string) => (bestLag(first, filterOffline(alone, filter), 5 * SAMPLE_RATE, 2 * SAMPLE_RATE, 0.5 * SAMPLE_RATE) / SAMPLE_RATE) * 1000;
  const figures = (k: keyof typeof chains): ChainFigures => ({ coresPerStage: cores[k], median: median(cores[k]), delayMs: delayMs(delayChains[k]) });
  const previous = figures('previous');
  const current = figures('current');
  opts.log(`sound chain: ${current.median.toFixed(4)} cores per stage against ${previous.median.toFixed(4)} before (${opts.rounds} rounds each, alternately); delay ${current.delayMs.toFixed(1)} ms against ${previous.delayMs.toFixed(1)} ms`);
  return { slots: opts.slots, programmeSeconds: opts.seconds, rounds: opts.rounds, previous, current, addedCores: current.median - previous.median };
}
