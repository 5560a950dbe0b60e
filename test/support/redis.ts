// A throwaway real Redis for tests: Debian's redis-server as our own child process on a free loopback port, no
// persistence (a restart starts empty, as a Redis without AOF does after a crash), stopped by its PID.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { findFreePort } from './postgres.ts';

const READY_TIMEOUT_MS = 10_000;
const STOP_GRACE_MS = 5_000;

export interface RedisServer {
  /** redis://127.0.0.1:<port> */
  readonly url: string;
  readonly port: number;
  /** The server's PID while running, null while stopped. */
  readonly pid: number | null;
  /** Stops the server, keeping the port: start() runs a new (empty) one on it. */
  stop(): Promise<void>;
  /** Starts it again on the same port and waits until it accepts connections. */
  start(): Promise<void>;
  /** Stops it (if running) and removes its temp dir. Idempotent. */
  close(): Promise<void>;
}

export async function startRedis(): Promise<RedisServer> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stage-radio-redis-'));
  const port = await findFreePort();
  let proc: ChildProcess | null = null;
  let closed = false;

  const launch = async (): Promise<void> => {
    const child = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no', '--daemonize', 'no'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    proc = child;
    let out = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`redis-server did not get ready in ${READY_TIMEOUT_MS} ms:\n${out}`)), READY_TIMEOUT_MS);
      const onData = (d: Buffer) => {
        out += d.toString();
        if (/Ready to accept connections/.test(out)) {
          clearTimeout(timer);
          resolve();
        }
      };
      child.stdout!.on('data', onData);
      child.stderr!.on('data', onData);
      child.once('error', (err) => {
        clearTimeout(timer);
        reject(new Error(`could not run redis-server (Debian's redis-server package; npm test's set-up installs it): ${err.message}`));
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`redis-server exited (${code ?? signal}) before it was ready:\n${out}`));
      });
    });
    // Drain its output from here on.
    child.stdout!.resume();
    child.stderr!.resume();
  };

  const stop = async (): Promise<void> => {
    const p = proc;
    proc = null;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise<void>((r) => p.once('exit', () => r()));
    p.kill('SIGTERM');
    const timer = setTimeout(() => p.kill('SIGKILL'), STOP_GRACE_MS);
    await exited;
    clearTimeout(timer);
  };

  await launch();
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    get pid() {
      return proc?.pid ?? null;
    },
    stop,
    start: async () => {
      if (closed) throw new Error('closed');
      if (proc) return;
      await launch();
    },
    close: async () => {
      if (closed) return;
      closed = true;
      await stop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
