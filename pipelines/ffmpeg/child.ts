// The core every external media process runs under: how it is started (the wrapper), and one watcher per child that
// keeps a bounded stderr tail, records the signals we sent, and reports how it ended. The one-shot runs (run.ts) and
// the long-running supervised FFmpeg (supervised.ts) both go through it.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

/** The external programs the runner starts: the media tools, and openssl for the service's self-signed certificate. */
export type MediaProgram = 'ffmpeg' | 'ffprobe' | 'openssl';

/**
 * The wrappers need util-linux's setpriv and setsid. Where they are missing, the program runs plain: a one-shot still
 * gets its own session (spawn's `detached`), but nothing makes it die with a SIGKILLed parent.
 */
export const CHILD_WRAPPED = fs.existsSync('/usr/bin/setpriv') && fs.existsSync('/usr/bin/setsid');

/** What to execute for `program`: its wrapper script (ffmpeg-child.sh, ffprobe-child.sh, openssl-child.sh), or the program itself. */
export function childCommand(program: MediaProgram): string {
  return CHILD_WRAPPED ? path.join(import.meta.dirname, `${program}-child.sh`) : program;
}

/** Grace between SIGINT (FFmpeg finishes its segment and playlist) and SIGKILL when stopping. */
export const STOP_GRACE_MS = 5000;
/** FFmpeg traps SIGINT, SIGTERM and SIGQUIT and then exits with this status (fftools: `received_nb_signals ? 255 : …`). */
export const FFMPEG_SIGNALLED_STATUS = 255;

const TAIL_LINES = 40;
const LINE_CHARS = 2000;

/** The last lines a child wrote to stderr, bounded in lines and in line length. */
export class StderrTail {
  readonly #max: number;
  readonly #lines: string[] = [];

  constructor(maxLines = TAIL_LINES) {
    this.#max = maxLines;
  }

  get lines(): readonly string[] {
    return this.#lines;
  }

  push(line: string): void {
    this.#lines.push(line.length > LINE_CHARS ? `${line.slice(0, LINE_CHARS)}…` : line);
    if (this.#lines.length > this.#max) this.#lines.shift();
  }

  /** The last `n` lines, one per line, for an error message. */
  text(n = 10): string {
    return this.#lines.slice(-n).join('\n');
  }
}

export interface ChildExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Set when the process could not be started at all. */
  spawnError: Error | null;
  /** The signals we sent it, in order. */
  sent: readonly NodeJS.Signals[];
  /**
   * It was ended by a signal we did not send (SIGTERM from systemd, a kill(1)): an interruption, not a failure of the
   * work. For FFmpeg, which traps the usual signals, that is status 255 while we had sent nothing.
   */
  killedExternally: boolean;
}

export interface WatchOptions {
  program: MediaProgram;
  /** Where stderr lines go; a new tail of 40 lines by default. The supervised FFmpeg keeps one across its runs. */
  tail?: StderrTail;
  onStderrLine?: (line: string) => void;
}

const watched = new WeakMap<ChildProcess, MediaChild>();

/** Watches one spawned child, whoever spawned it (our spawnChild or fluent-ffmpeg). */
export class MediaChild {
  readonly program: MediaProgram;
  readonly proc: ChildProcess;
  readonly tail: StderrTail;
  /** Resolves once the process is gone and its stderr is read to the end. Never rejects. */
  readonly exited: Promise<ChildExit>;
  readonly #sent: NodeJS.Signals[] = [];
  #running: boolean;
  #stopped: Promise<ChildExit> | null = null;

  constructor(proc: ChildProcess, opts: WatchOptions) {
    this.program = opts.program;
    this.proc = proc;
    this.tail = opts.tail ?? new StderrTail();
    watched.set(proc, this);
    const gone = proc.exitCode !== null || proc.signalCode !== null;
    this.#running = !gone;
    if (proc.stderr) readLines(proc.stderr, (line) => {
      this.tail.push(line);
      opts.onStderrLine?.(line);
    });
    let spawnError: Error | null = null;
    this.exited = new Promise((resolve) => {
      const settle = (code: number | null, signal: NodeJS.Signals | null) => {
        this.#running = false;
        resolve(this.#describe(code, signal, spawnError));
      };
      if (gone) return settle(proc.exitCode, proc.signalCode);
      proc.once('exit', () => (this.#running = false));
      // 'close' comes after 'exit' once stdout and stderr are read to the end, so the tail is complete.
      proc.once('close', (code, signal) => settle(code, signal));
      proc.on('error', (err) => {
        if (proc.pid !== undefined) return; // a failed kill(); the process runs on
        spawnError = err;
        settle(null, null);
      });
    });
  }

  /** The watcher of `proc`, made on first use (e.g. for a process spawned elsewhere). */
  static of(proc: ChildProcess, program: MediaProgram = 'ffmpeg'): MediaChild {
    return watched.get(proc) ?? new MediaChild(proc, { program });
  }

  get pid(): number | null {
    return this.proc.pid ?? null;
  }

  get running(): boolean {
    return this.#running;
  }

  /** Sends `signal` while the process runs, remembering it was ours. */
  kill(signal: NodeJS.Signals): void {
    if (!this.#running) return;
    if (this.proc.kill(signal)) this.#sent.push(signal);
  }

  /**
   * Idempotent: SIGINT (FFmpeg finishes its current segment and playlist and exits, even while still opening its
   * input), then SIGKILL after `graceMs`. Resolves when the process is gone.
   */
  stop(graceMs = STOP_GRACE_MS): Promise<ChildExit> {
    if (!this.#stopped) {
      this.kill('SIGINT');
      const killer = setTimeout(() => this.kill('SIGKILL'), graceMs);
      this.#stopped = this.exited.finally(() => clearTimeout(killer));
    }
    return this.#stopped;
  }

  #describe(code: number | null, signal: NodeJS.Signals | null, spawnError: Error | null): ChildExit {
    const sent = [...this.#sent];
    const killedExternally =
      signal !== null ? !sent.includes(signal) : this.program === 'ffmpeg' && code === FFMPEG_SIGNALLED_STATUS && sent.length === 0;
    return { code, signal, spawnError, sent, killedExternally };
  }
}

export interface SpawnOptions {
  /** 'pipe' to feed stdin; 'ignore' gives the child /dev/null. */
  stdin: 'pipe' | 'ignore';
  stdout: 'pipe' | 'ignore';
  tail?: StderrTail;
  onStderrLine?: (line: string) => void;
}

/** Starts `program` through its wrapper (own session, dies with us) and watches it. */
export function spawnChild(program: MediaProgram, args: readonly string[], opts: SpawnOptions): MediaChild {
  const proc = spawn(childCommand(program), args, { stdio: [opts.stdin, opts.stdout, 'pipe'], detached: !CHILD_WRAPPED });
  return new MediaChild(proc, { program, tail: opts.tail, onStderrLine: opts.onStderrLine });
}

/**
 * Stops a child the runner did not start (the benchmark's baseline FFmpeg) the runner's way: SIGINT, then SIGKILL
 * after the grace. Resolves when it is gone.
 */
export function stopChild(proc: ChildProcess, graceMs = STOP_GRACE_MS): Promise<ChildExit> {
  return MediaChild.of(proc).stop(graceMs);
}

/** Describes an exit for logs and errors: "exited with code 1", "killed by SIGKILL", … */
export function describeExit(exit: ChildExit): string {
  if (exit.spawnError) return `could not start: ${exit.spawnError.message}`;
  if (exit.signal) return `killed by ${exit.signal}${exit.killedExternally ? ' (not sent by us)' : ''}`;
  return `exited with code ${exit.code}${exit.killedExternally ? ' after a signal not sent by us' : ''}`;
}

/** Splits a stream into lines as FFmpeg writes them (progress lines end in \r), bounding an unfinished line. */
function readLines(stream: NodeJS.ReadableStream, onLine: (line: string) => void): void {
  stream.setEncoding('utf8');
  let rest = '';
  stream.on('data', (chunk: string) => {
    const parts = (rest + chunk).split(/\r\n|\r|\n/);
    rest = parts.pop() ?? '';
    if (rest.length > LINE_CHARS * 2) rest = rest.slice(-LINE_CHARS * 2);
    for (const line of parts) if (line !== '') onLine(line);
  });
  stream.on('end', () => {
    if (rest !== '') onLine(rest);
    rest = '';
  });
}
