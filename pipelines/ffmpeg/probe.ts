// What ffprobe tells us about a media file, through the runner.
import type { Log } from '../log.ts';
import { FfmpegRunError, runFfprobe } from './run.ts';

/** A probe that hangs (a stuck file system) must not stall the archive: past this it counts as "could not tell". */
export const PROBE_TIMEOUT_MS = 30_000;

/** ffprobe arguments printing the container's duration in seconds, alone on a line. */
export function probeDurationArgs(file: string): string[] {
  return ['-v', 'error', '-show_entries', 'format=duration', '-of', 'csv=p=0', file];
}

export interface ProbeOptions {
  signal?: AbortSignal;
  /** PROBE_TIMEOUT_MS by default. */
  timeoutMs?: number;
  log?: Log;
}

/**
 * The file's duration in seconds (its format duration), or null when ffprobe cannot tell: it failed, printed no
 * number, timed out, or could not be started. An interruption is not an answer, so it throws the FfmpegRunError:
 * aborted by `signal`, or killed by a signal we did not send (`killedExternally`: retry later).
 */
export async function probeDuration(file: string, opts: ProbeOptions = {}): Promise<number | null> {
  try {
    const stdout = await runFfprobe({ args: probeDurationArgs(file), signal: opts.signal, timeoutMs: opts.timeoutMs ?? PROBE_TIMEOUT_MS, log: opts.log });
    const d = parseFloat(stdout.trim());
    return Number.isFinite(d) ? d : null;
  } catch (err) {
    if (err instanceof FfmpegRunError && (err.aborted || err.killedExternally)) throw err;
    return null;
  }
}
