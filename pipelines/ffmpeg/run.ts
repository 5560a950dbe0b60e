// One-shot runs of ffmpeg and ffprobe (a remux, a probe) under the runner's core: abortable, with a timeout, and a
// typed error that says whether the run failed, was stopped by us, or was interrupted from outside.
//
// These are spawned by spawnChild, not by fluent-ffmpeg: fluent-ffmpeg cannot feed stdin from a list of files, runs
// ffprobe without a way to abort it, and reports an exit as a message string. The wrapper, the process group, the
// stderr tail and the exit handling are the same as the long-running FFmpeg's (child.ts).
import fs from 'node:fs';
import type { Writable } from 'node:stream';
import { silentLog, type Log } from '../log.ts';
import { describeExit, spawnChild, type ChildExit, type MediaChild, type MediaProgram } from './child.ts';

export interface RunOptions {
  args: readonly string[];
  /** Fed into stdin back to back, in order (a byte-level concat, like the concat: protocol). */
  stdinFiles?: readonly string[];
  /** Aborting SIGKILLs the child at once (a SIGSTOPped one too). */
  signal?: AbortSignal;
  /** SIGKILLs the child after this long. */
  timeoutMs?: number;
  log?: Log;
  /** Called with the child's PID once it is spawned. */
  onSpawn?: (pid: number) => void;
}

/** More than this on stdout ends the run (the programs here write files; stdout carries a probe's answer). */
export const MAX_STDOUT_BYTES = 8 * 1024 * 1024;

export interface FfmpegRunErrorInit {
  program: MediaProgram;
  args: readonly string[];
  exit: ChildExit | null;
  stderrTail: readonly string[];
  aborted?: boolean;
  timedOut?: boolean;
  /** Why the run failed when the process itself did not (an unreadable input file, too much output). */
  reason?: string;
  cause?: unknown;
}

/** A one-shot ffmpeg or ffprobe that did not succeed. */
export class FfmpegRunError extends Error {
  override readonly name = 'FfmpegRunError';
  readonly program: MediaProgram;
  readonly args: readonly string[];
  /** Exit status, or null when it was killed by a signal or never started. */
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** The last stderr lines (at most 40). */
  readonly stderrTail: readonly string[];
  /** Our AbortSignal ended it (or was aborted before it started). */
  readonly aborted: boolean;
  /** Our timeout ended it. */
  readonly timedOut: boolean;
  /** A signal we did not send ended it (SIGTERM from systemd, …): an interruption, retry later, not a failure. */
  readonly killedExternally: boolean;

  constructor(init: FfmpegRunErrorInit) {
    const what = init.aborted
      ? 'was aborted'
      : init.timedOut
        ? 'timed out'
        : init.reason ?? (init.exit ? describeExit(init.exit) : 'did not run');
    const tail = init.stderrTail.slice(-5).join('\n');
    super(`${init.program} ${what}${tail ? `: ${tail}` : ''}`, { cause: init.cause });
    this.program = init.program;
    this.args = init.args;
    this.code = init.exit?.code ?? null;
    this.signal = init.exit?.signal ?? null;
    this.stderrTail = init.stderrTail;
    this.aborted = init.aborted ?? false;
    this.timedOut = init.timedOut ?? false;
    this.killedExternally = !this.aborted && !this.timedOut && (init.exit?.killedExternally ?? false);
  }
}

/** Runs ffmpeg to the end; resolves with its stdout (usually empty: it writes files). */
export function runFfmpeg(opts: RunOptions): Promise<string> {
  return runChild('ffmpeg', opts);
}

/** Runs ffprobe to the end; resolves with its stdout. */
export function runFfprobe(opts: RunOptions): Promise<string> {
  return runChild('ffprobe', opts);
}

/** Runs openssl to the end (making a certificate); resolves with its stdout. */
export function runOpenssl(opts: RunOptions): Promise<string> {
  return runChild('openssl', opts);
}

async function runChild(program: MediaProgram, opts: RunOptions): Promise<string> {
  const args = [...opts.args];
  const log = (opts.log ?? silentLog).child({ program });
  if (opts.signal?.aborted) throw new FfmpegRunError({ program, args, exit: null, stderrTail: [], aborted: true });
  const child = spawnChild(program, args, { stdin: opts.stdinFiles ? 'pipe' : 'ignore', stdout: 'pipe' });
  // Why we ended the run, if we did: our abort or timeout, or a failure of ours (an unreadable input, too much output).
  const ours: { stopped: 'aborted' | 'timedOut' | null; reason: string | null; cause?: unknown } = { stopped: null, reason: null };
  const kill = (why: 'aborted' | 'timedOut') => {
    if (!child.running || ours.stopped) return;
    ours.stopped = why;
    child.kill('SIGKILL');
  };
  const fail = (reason: string, cause?: unknown) => {
    if (ours.reason === null) Object.assign(ours, { reason, cause });
    child.kill('SIGKILL');
  };
  const onAbort = () => kill('aborted');
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  const timer = opts.timeoutMs !== undefined ? setTimeout(() => kill('timedOut'), opts.timeoutMs) : null;

  const stdout: Buffer[] = [];
  let stdoutBytes = 0;
  child.proc.stdout?.on('data', (chunk: Buffer) => {
    stdoutBytes += chunk.length;
    if (stdoutBytes <= MAX_STDOUT_BYTES) stdout.push(chunk);
    else fail(`wrote more than ${MAX_STDOUT_BYTES} bytes to stdout`);
  });
  const pid = child.pid;
  if (pid !== null) {
    log.debug('started', { pid, args });
    opts.onSpawn?.(pid);
  }
  const stdin = child.proc.stdin;
  // Not awaited: a read that hangs (a stuck file system) must not outlive the child. A read error is recorded before
  // the child is killed for it, so it is known when the child's exit is.
  if (opts.stdinFiles && stdin) void feed(stdin, opts.stdinFiles, child).catch((err: unknown) => fail(`could not read its input: ${(err as Error).message}`, err));

  try {
    const exit = await child.exited;
    log.debug('exited', { pid, code: exit.code, signal: exit.signal });
    if (exit.code === 0 && ours.stopped === null && ours.reason === null) return Buffer.concat(stdout).toString('utf8');
    throw new FfmpegRunError({
      program,
      args,
      exit,
      stderrTail: [...child.tail.lines],
      aborted: ours.stopped === 'aborted',
      timedOut: ours.stopped === 'timedOut',
      reason: ours.reason ?? undefined,
      cause: ours.cause ?? exit.spawnError ?? undefined,
    });
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
    if (timer) clearTimeout(timer);
  }
}

/** Writes the files into stdin in order, then closes it. Stops quietly when the child goes away first. */
async function feed(stdin: Writable, files: readonly string[], child: MediaChild): Promise<void> {
  // EPIPE when the child exits before reading everything: its exit status tells what happened.
  stdin.on('error', () => undefined);
  try {
    for (const file of files) {
      for await (const chunk of fs.createReadStream(file)) {
        if (!child.running || stdin.destroyed) return;
        if (!stdin.write(chunk)) await drained(stdin);
      }
    }
  } finally {
    stdin.end();
  }
}

function drained(stream: Writable): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      stream.off('drain', done);
      stream.off('close', done);
      resolve();
    };
    stream.on('drain', done);
    stream.on('close', done);
  });
}
