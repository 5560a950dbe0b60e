// The long-running FFmpeg (the on-air mix): started through fluent-ffmpeg with the runner's wrapper as its FFmpeg
// path, watched by the runner's core (child.ts), restarted with a backoff when it dies, up to a bound.
import type { ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import type { Writable } from 'node:stream';
import ffmpeg from 'fluent-ffmpeg';
import type { Log } from '../log.ts';
import { MediaChild, STOP_GRACE_MS, StderrTail, childCommand, describeExit } from './child.ts';

export interface FfmpegSpec {
  input: string;
  inputOptions: string[];
  /** A file, or a stream per run (made at each start) that FFmpeg's stdout is piped into, ended when the run ends. */
  output: string | ((restart: boolean) => Writable);
  /** Built per start, so a restart can differ (e.g. mark a discontinuity). */
  outputOptions: (restart: boolean) => string[];
}

export interface SupervisedFfmpegOptions {
  /**
   * Restarts after consecutive failures before giving up (DEFAULT_MAX_RESTARTS). A run that lasted RUN_RESETS_MS or
   * more was a crash, not a failure to start, and resets the count.
   */
  maxRestarts?: number;
  /** Pause before the 1st, 2nd, … consecutive restart; the last one repeats (RESTART_DELAYS_MS). */
  restartDelaysMs?: readonly number[];
  /** Between SIGINT and SIGKILL on stop() (STOP_GRACE_MS). */
  stopGraceMs?: number;
}

export type SupervisedFfmpegEvents = {
  started: [pid: number, restart: boolean];
  died: [error: string];
  /** It died more than maxRestarts times in a row and is not restarted again: the stderr tail is in the message. */
  failed: [error: string];
  stderr: [line: string];
};

/** Five restarts in a row (about 4.75 s of backoff) tell a broken start-up from a crash. */
export const DEFAULT_MAX_RESTARTS = 5;
/** Well inside the 2 s restart budget for the first try. */
export const RESTART_DELAYS_MS: readonly number[] = [250, 500, 1000, 1500];
export const RUN_RESETS_MS = 10_000;

/**
 * One long-running FFmpeg, restarted when it dies (with a short backoff) until stop(), or until it has failed
 * maxRestarts times in a row: then it emits 'failed' and `failure` says why. stop() asks it to finish (SIGINT), then
 * SIGKILLs after a grace period.
 */
export class SupervisedFfmpeg extends EventEmitter<SupervisedFfmpegEvents> {
  readonly #spec: FfmpegSpec;
  readonly #log: Log;
  readonly #maxRestarts: number;
  readonly #delays: readonly number[];
  readonly #graceMs: number;
  readonly #tail = new StderrTail();
  #child: MediaChild | null = null;
  #exited: Promise<void> = Promise.resolve();
  #running = false;
  #restartTimer: NodeJS.Timeout | null = null;
  #failures = 0;
  #restarts = 0;
  #failure: string | null = null;
  #stopping = false;

  constructor(spec: FfmpegSpec, log: Log, opts: SupervisedFfmpegOptions = {}) {
    super();
    this.#spec = spec;
    this.#log = log;
    this.#maxRestarts = opts.maxRestarts ?? DEFAULT_MAX_RESTARTS;
    this.#delays = opts.restartDelaysMs?.length ? opts.restartDelaysMs : RESTART_DELAYS_MS;
    this.#graceMs = opts.stopGraceMs ?? STOP_GRACE_MS;
  }

  get pid(): number | null {
    return this.#child?.pid ?? null;
  }

  /** The running process's stdin (for an input of `pipe:0`), or null between runs. */
  get stdin(): Writable | null {
    return this.#child?.proc.stdin ?? null;
  }

  /** Restarts so far, over the whole life of this supervisor. */
  get restarts(): number {
    return this.#restarts;
  }

  /** The last stderr lines (at most 40), across runs. */
  get lastStderr(): readonly string[] {
    return this.#tail.lines;
  }

  /** Why it gave up restarting, once it has. */
  get failure(): string | null {
    return this.#failure;
  }

  /** Starts a run; nothing once stopping, failed, or already running. */
  start(restart = false): void {
    if (this.#stopping || this.#failure !== null || this.#running) return;
    this.#running = true;
    const command = ffmpeg({ stdoutLines: 0 })
      .setFfmpegPath(childCommand('ffmpeg'))
      .input(this.#spec.input)
      .inputOptions(this.#spec.inputOptions)
      .outputOptions(this.#spec.outputOptions(restart))
      .output(typeof this.#spec.output === 'function' ? this.#spec.output(restart) : this.#spec.output);
    let resolveExit!: () => void;
    this.#exited = new Promise((r) => (resolveExit = r));
    let child: MediaChild | null = null;
    let ended = false;
    const end = (error: string, ranMs: number) => {
      if (ended) return;
      ended = true;
      const pid = this.#child?.pid;
      this.#child = null;
      this.#running = false;
      resolveExit();
      this.#runEnded(error, ranMs, pid);
    };
    command.on('start', () => {
      // fluent-ffmpeg keeps the child on the command; its typings do not declare it.
      const proc = (command as unknown as { ffmpegProc?: ChildProcess }).ffmpegProc;
      if (!proc) return;
      const startedAt = Date.now();
      // Writes to the stdin of a process that has gone fail with EPIPE: its exit is reported by the watcher below.
      proc.stdin?.on('error', () => undefined);
      child = new MediaChild(proc, { program: 'ffmpeg', tail: this.#tail, onStderrLine: (line) => this.emit('stderr', line) });
      this.#child = child;
      // stop() came while the process was being spawned: it ends now, gracefully.
      if (this.#stopping) void child.stop(this.#graceMs);
      const pid = child.pid ?? -1;
      this.#log.info('ffmpeg started', { pid, restart });
      this.emit('started', pid, restart);
      void child.exited.then((exit) => end(describeExit(exit), Date.now() - startedAt));
    });
    // Before a process exists (fluent-ffmpeg's own checks failed), this is the only news of the run. Once it exists,
    // its watcher reports the exit, with the code and signal.
    command.on('error', (err: Error) => {
      if (!child) end(err.message, 0);
    });
    command.run();
  }

  #runEnded(error: string, ranMs: number, pid: number | undefined | null): void {
    if (this.#stopping) {
      this.#log.info('ffmpeg stopped', { pid });
      return;
    }
    if (ranMs >= RUN_RESETS_MS) this.#failures = 0;
    const stderr = this.#tail.lines.slice(-5);
    if (this.#failures >= this.#maxRestarts) {
      this.#failure = `ffmpeg ${error}, ${this.#failures + 1} times in a row; not restarting it again${stderr.length ? `:\n${stderr.join('\n')}` : ''}`;
      this.#log.error('ffmpeg keeps dying; not restarting it again', { pid, error, runs: this.#failures + 1, stderr });
      this.emit('died', error);
      this.emit('failed', this.#failure);
      return;
    }
    this.#log.error('ffmpeg died; restarting', { pid, error, stderr });
    this.emit('died', error);
    const delay = this.#delays[Math.min(this.#failures, this.#delays.length - 1)]!;
    this.#failures++;
    this.#restartTimer = setTimeout(() => {
      this.#restartTimer = null;
      this.#restarts++;
      this.start(true);
    }, delay);
  }

  /** Idempotent: finishes the current segment and playlist, then resolves when the process is gone. */
  async stop(): Promise<void> {
    this.#stopping = true;
    if (this.#restartTimer) clearTimeout(this.#restartTimer);
    this.#restartTimer = null;
    // While spawning there is no child yet: the 'start' handler stops it as soon as it exists.
    void this.#child?.stop(this.#graceMs);
    await this.#exited;
  }
}
