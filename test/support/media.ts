// Test media: tones rendered by ffmpeg into a temp dir that is removed on cleanup.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export class TempDir {
  readonly path = fs.mkdtempSync(path.join(os.tmpdir(), 'stage-radio-test-'));
  file(name: string): string {
    return path.join(this.path, name);
  }
  remove(): void {
    fs.rmSync(this.path, { recursive: true, force: true });
  }
}

/** lavfi's sine source has an amplitude of 1/8 (-18.06 dBFS); this gain brings it to peakDb. */
export const sineGainDb = (peakDb: number) => (peakDb + 18.06).toFixed(2);

/** A mono 48 kHz sine WAV peaking at levelDb (dBFS), long enough for Chromium's looping fake mic. */
export function toneWav(dir: TempDir, freq: number, seconds = 60, levelDb = -12): string {
  const out = dir.file(`tone-${freq}-${levelDb}.wav`);
  if (!fs.existsSync(out)) {
    execFileSync('ffmpeg', ['-v', 'error', '-y', '-f', 'lavfi', '-i', `sine=frequency=${freq}:sample_rate=48000:duration=${seconds}`,
      '-af', `volume=${sineGainDb(levelDb)}dB`, '-ac', '1', '-c:a', 'pcm_s16le', out]);
  }
  return out;
}

/**
 * A mono 48 kHz WAV of tone bursts: freq Hz for onSec at the start of every periodSec, silence between; peak levelDb.
 * The bursts' onsets are markers: the same instants must line up in every file that carries this mic.
 */
export function pulseWav(dir: TempDir, freq: number, opts: { periodSec: number; onSec: number; seconds?: number; levelDb?: number }): string {
  const seconds = opts.seconds ?? 120;
  const level = opts.levelDb ?? -12;
  const out = dir.file(`pulse-${freq}-${opts.periodSec}-${opts.onSec}-${level}.wav`);
  if (!fs.existsSync(out)) {
    const amp = 10 ** (level / 20);
    execFileSync('ffmpeg', ['-v', 'error', '-y', '-f', 'lavfi', '-i',
      `aevalsrc='if(lt(mod(t\\,${opts.periodSec})\\,${opts.onSec})\\,${amp.toFixed(6)}*sin(2*PI*${freq}*t)\\,0)':s=48000:d=${seconds}`,
      '-ac', '1', '-c:a', 'pcm_s16le', out]);
  }
  return out;
}
