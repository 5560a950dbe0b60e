import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { EventEmitter } from 'node:events';
import ffmpeg from 'fluent-ffmpeg';
import type { Logger } from '../../services/logger.ts';

export interface FfmpegSpec {
  input: string;
  inputOptions: string[];
  output: string;
  /** Built per start, so a restart can differ (e.g. mark a discontinuity). */
  outputOptions: (restart: boolean) => string[];
}

type SupervisedEvents = {
  started: [pid: number, restart: boolean];
  died: [error: string];
  stderr: [line: string];
};

/** Runs FFmpeg so that it dies with this process (Linux, util-linux setpriv); plain ffmpeg where that is missing. */
const CHILD_WRAPPER = path.join(import.meta.dirname, 'ffmpeg-child.sh');
export const FFMPEG_COMMAND = fs.existsSync('/usr/bin/setpriv') ? CHILD_WRAPPER : 'ffmpeg';

const RESTART_DELAYS_MS = [250, 500, 1000, 1500];
const STOP_GRACE_MS = 5000;
const STDERR_KEEP = 40;

/**
 * One long-running FFmpeg, started through fluent-ffmpeg and restarted when it dies (with a short backoff, well
 * inside the 2 s budget) until stop(). stop() asks it to finish (SIGINT), then SIGKILLs after a grace period.
 */
export class SupervisedFfmpeg extends EventEmitter<SupervisedEvents> {
  readonly #spec: FfmpegSpec;
  readonly #log: Logger;
  #proc: ChildProcess | null = null;
  #exited: Promise<void> = Promise.resolve();
  #restartTimer: NodeJS.Timeout | null = null;
  #failures = 0;
  #stopping = false;
  restarts = 0;
  readonly lastStderr: string[] = [];

  constructor(spec: FfmpegSpec, log: Logger) {
    super();
    this.#spec = spec;
    this.#log = log;
  }

  get pid(): number | null {
    return this.#proc?.pid ?? null;
  }

  start(restart = false): void {
    if (this.#stopping) return;
    const command = ffmpeg({ stdoutLines: 0 })
      .setFfmpegPath(FFMPEG_COMMAND)
      .input(this.#spec.input)
      .inputOptions(this.#spec.inputOptions)
      .outputOptions(this.#spec.outputOptions(restart))
      .output(this.#spec.output);
    let resolveExit!: () => void;
    this.#exited = new Promise((r) => (resolveExit = r));
    const startedAt = Date.now();
    command.on('start', () => {
      // fluent-ffmpeg keeps the child on the command; its typings do not declare it.
      const proc = (command as unknown as { ffmpegProc?: ChildProcess }).ffmpegProc ?? null;
      this.#proc = proc;
      const pid = proc?.pid ?? -1;
      // stop() came while the process was being spawned: it ends now, gracefully.
      if (this.#stopping) proc?.kill('SIGINT');
      this.#log.info('ffmpeg started', { pid, restart });
      this.emit('started', pid, restart);
    });
    command.on('stderr', (line: string) => {
      this.lastStderr.push(line);
      if (this.lastStderr.length > STDERR_KEEP) this.lastStderr.shift();
      this.emit('stderr', line);
    });
    const onExit = (error: string | null) => {
      const pid = this.#proc?.pid;
      this.#proc = null;
      resolveExit();
      if (this.#stopping) {
        this.#log.info('ffmpeg stopped', { pid });
        return;
      }
      const message = error ?? 'exited';
      this.#log.error('ffmpeg died; restarting', { pid, error: message, stderr: this.lastStderr.slice(-5) });
      this.emit('died', message);
      // A process that ran a while had a real crash, not a start-up failure: restart at the shortest delay.
      if (Date.now() - startedAt > 10_000) this.#failures = 0;
      const delay = RESTART_DELAYS_MS[Math.min(this.#failures, RESTART_DELAYS_MS.length - 1)]!;
      this.#failures++;
      this.#restartTimer = setTimeout(() => {
        this.#restartTimer = null;
        this.restarts++;
        this.start(true);
      }, delay);
    };
    command.on('error', (err: Error) => onExit(err.message));
    command.on('end', () => onExit(null));
    command.run();
  }

  /** Idempotent: finishes the current segment and playlist, then resolves when the process is gone. */
  async stop(): Promise<void> {
    this.#stopping = true;
    if (this.#restartTimer) clearTimeout(this.#restartTimer);
    this.#restartTimer = null;
    const proc = this.#proc;
    // SIGINT, unlike 'q' on stdin, is honoured even while FFmpeg is still opening its input: it finishes the
    // current segment and playlist and exits.
    if (proc && proc.exitCode === null && proc.signalCode === null) proc.kill('SIGINT');
    const killer = setTimeout(() => (this.#proc ?? proc)?.kill('SIGKILL'), STOP_GRACE_MS);
    await this.#exited;
    clearTimeout(killer);
  }
}
