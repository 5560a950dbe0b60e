// A throwaway real PostgreSQL server for tests: initdb in a temp dir, postmaster as our own child process
// (no pg_ctl daemonizing, so we hold the postmaster's PID and signal only it), trust auth on 127.0.0.1.
//
// As root the server runs as the `postgres` user. It is spawned with uid/gid set (Node drops root's
// supplementary groups) rather than through runuser: runuser forks and stays the parent, and on SIGTERM it
// SIGKILLs its child 2 s later, which is no way to stop a postmaster.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';

export interface PostgresServer {
  /** postgres://postgres@127.0.0.1:<port>/<database> */
  url: string;
  port: number;
  /** The cluster's data directory (inside the temp dir). */
  dataDir: string;
  /** The postmaster's PID while running, null while paused/stopped. */
  readonly pid: number | null;
  /** Stops the server (if running) and removes the temp dir. Idempotent. */
  stop(): Promise<void>;
  /** Stops the server, keeping its data; resume() starts it again on the same data dir and port. */
  pause(): Promise<void>;
  /** Starts a paused server again and waits until it accepts connections. */
  resume(): Promise<void>;
}

export interface StartPostgresOptions {
  /** Database to create and put in the URL. Default 'test'. */
  database?: string;
  /** Port to listen on. Default: a free one. */
  port?: number;
  /** How long to wait for the server to accept connections. Default 20 000 ms. */
  readyTimeoutMs?: number;
}

const READY_TIMEOUT_MS = 20_000;
const STOP_GRACE_MS = 10_000;
const DEBIAN_PACKAGE = 'postgresql-15';

/** A TCP port that was free a moment ago (listen on port 0, read it, close). */
export function findFreePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, host, () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close((err) => (err ? reject(err) : resolve(port)));
    });
  });
}

/** Directory holding initdb and postgres: $PG_BIN_DIR, else the newest /usr/lib/postgresql/<v>/bin. */
export function findPostgresBinDir(): string {
  const candidates: string[] = [];
  if (process.env.PG_BIN_DIR) candidates.push(process.env.PG_BIN_DIR);
  const root = '/usr/lib/postgresql';
  if (fs.existsSync(root)) {
    const versions = fs
      .readdirSync(root)
      .filter((v) => /^\d+(\.\d+)?$/.test(v))
      .sort((a, b) => Number(b) - Number(a));
    for (const v of versions) candidates.push(path.join(root, v, 'bin'));
  }
  for (const dir of candidates) {
    if (fs.existsSync(path.join(dir, 'postgres')) && fs.existsSync(path.join(dir, 'initdb'))) return dir;
  }
  throw new Error(
    `PostgreSQL server binaries (initdb, postgres) not found in ${candidates.join(', ') || root + '/*/bin'}; ` +
      `install the Debian package ${DEBIAN_PACKAGE} (or set PG_BIN_DIR)`,
  );
}

interface RunAs {
  uid: number;
  gid: number;
}

function postgresUser(): RunAs | null {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return null;
  const uid = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
  const gid = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' });
  if (uid.status !== 0 || gid.status !== 0) {
    throw new Error(`running as root but there is no "postgres" user to run the server as (it comes with ${DEBIAN_PACKAGE})`);
  }
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

function childEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, LC_ALL: 'C', LANG: 'C' };
  for (const k of Object.keys(env)) if (k.startsWith('PG')) delete env[k];
  return env;
}

/** Keeps the last `max` characters written to a stream. */
function tail(stream: NodeJS.ReadableStream | null, max = 16_000): () => string {
  let buf = '';
  stream?.setEncoding('utf8');
  stream?.on('data', (chunk: string) => {
    buf += chunk;
    if (buf.length > max) buf = buf.slice(buf.length - max);
  });
  return () => buf;
}

function runToCompletion(cmd: string, args: string[], runAs: RunAs | null, cwd: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'], ...(runAs ?? {}) });
    const out = tail(child.stdout);
    const err = tail(child.stderr);
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (code === 0) resolve();
      else reject(new Error(`${path.basename(cmd)} failed (${signal ?? `exit ${code}`}):\n${err() || out()}`));
    });
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

// Servers still running when the process exits (test crash, missing after()): stop them the hard way
// (SIGQUIT = immediate shutdown; backends exit too) so no postmaster outlives the test run.
const live = new Set<number>();
const tempDirs = new Set<string>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const pid of live) {
      try {
        process.kill(pid, 'SIGQUIT');
      } catch {
        /* already gone */
      }
    }
    for (const dir of tempDirs) {
      try {
        fs.rmSync(dir, { recursive: true, force: true });
      } catch {
        /* best effort */
      }
    }
  });
}

export async function startPostgres(opts: StartPostgresOptions = {}): Promise<PostgresServer> {
  const binDir = findPostgresBinDir();
  const runAs = postgresUser();
  const database = opts.database ?? 'test';
  const readyTimeoutMs = opts.readyTimeoutMs ?? READY_TIMEOUT_MS;

  const baseDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pg-test-'));
  const dataDir = path.join(baseDir, 'data');
  let child: ChildProcess | null = null;
  let exited: Promise<void> = Promise.resolve();
  let stderr: () => string = () => '';
  let removed = false;
  installExitHook();

  tempDirs.add(baseDir);
  const removeDir = (): void => {
    if (removed) return;
    removed = true;
    fs.rmSync(baseDir, { recursive: true, force: true });
    tempDirs.delete(baseDir);
  };

  try {
    if (runAs) fs.chownSync(baseDir, runAs.uid, runAs.gid);
    await runToCompletion(
      path.join(binDir, 'initdb'),
      ['-D', dataDir, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8', '--locale=C'],
      runAs,
      baseDir,
    );
  } catch (err) {
    removeDir();
    if (runAs && /permission denied/i.test(String(err))) {
      throw new Error(`${String(err)}\n(the postgres user must be able to reach ${baseDir}; is TMPDIR readable by it?)`, { cause: err });
    }
    throw err;
  }

  const port = opts.port ?? (await findFreePort());
  const url = `postgres://postgres@127.0.0.1:${port}/${database}`;
  const adminConfig = { host: '127.0.0.1', port, user: 'postgres', database: 'postgres', connectionTimeoutMillis: 2000 };

  async function launch(): Promise<void> {
    const proc = spawn(
      path.join(binDir, 'postgres'),
      [
        '-D', dataDir,
        '-k', baseDir,
        '-p', String(port),
        '-c', 'listen_addresses=127.0.0.1',
        '-c', 'fsync=off',
        '-c', 'synchronous_commit=off',
        '-c', 'full_page_writes=off',
      ],
      { cwd: baseDir, env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'], ...(runAs ?? {}) },
    );
    child = proc;
    const errTail = tail(proc.stderr);
    const outTail = tail(proc.stdout);
    stderr = () => errTail() + outTail();
    let hasExited = false;
    exited = new Promise<void>((resolve) => {
      proc.on('exit', () => {
        hasExited = true;
        if (proc.pid !== undefined) live.delete(proc.pid);
        resolve();
      });
    });
    let spawnError: Error | null = null;
    proc.on('error', (err) => (spawnError = err));
    if (proc.pid !== undefined) live.add(proc.pid);

    const deadline = Date.now() + readyTimeoutMs;
    let lastErr: unknown = null;
    for (;;) {
      if (hasExited) throw new Error(`postgres exited before accepting connections (exit ${proc.exitCode ?? proc.signalCode}):\n${stderr()}`);
      if (spawnError) throw new Error(`could not start postgres: ${(spawnError as Error).message}`);
      const client = new pg.Client(adminConfig);
      client.on('error', () => {});
      try {
        await client.connect();
        await client.query('select 1');
        await client.end();
        return;
      } catch (err) {
        lastErr = err;
        await client.end().catch(() => {});
      }
      if (Date.now() > deadline) {
        await shutdown();
        throw new Error(
          `postgres did not accept connections on 127.0.0.1:${port} within ${readyTimeoutMs} ms ` +
            `(last error: ${(lastErr as Error)?.message}); server output:\n${stderr()}`,
        );
      }
      await sleep(100);
    }
  }

  /** Fast shutdown (SIGINT: disconnect clients, checkpoint), then immediate (SIGQUIT), then SIGKILL. */
  async function shutdown(): Promise<void> {
    const proc = child;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) {
      child = null;
      return;
    }
    const signalIt = (sig: NodeJS.Signals): void => {
      try {
        proc.kill(sig); // this PID only
      } catch {
        /* already gone */
      }
    };
    signalIt('SIGINT');
    const timedOut = Symbol('timeout');
    const wait = (ms: number) => Promise.race([exited, sleep(ms).then(() => timedOut)]);
    if ((await wait(STOP_GRACE_MS)) === timedOut) {
      signalIt('SIGQUIT');
      if ((await wait(5_000)) === timedOut) {
        signalIt('SIGKILL');
        await exited;
      }
    }
    child = null;
  }

  try {
    await launch();
    const admin = new pg.Client(adminConfig);
    await admin.connect();
    try {
      await admin.query(`create database "${database.replace(/"/g, '""')}"`);
    } finally {
      await admin.end();
    }
  } catch (err) {
    await shutdown().catch(() => {});
    removeDir();
    throw err;
  }

  let stopped = false;
  let paused = false;
  return {
    url,
    port,
    dataDir,
    get pid() {
      return child?.pid ?? null;
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await shutdown();
      removeDir();
    },
    async pause() {
      if (stopped) throw new Error('postgres server was stopped');
      if (paused) return;
      paused = true;
      await shutdown();
    },
    async resume() {
      if (stopped) throw new Error('postgres server was stopped');
      if (!paused) return;
      await launch();
      paused = false;
    },
  };
}

/** Creates an empty database named name on the server at serverUrl and returns its URL. */
export async function createDatabase(serverUrl: string, name: string): Promise<string> {
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  try {
    await admin.query(`create database ${name}`);
  } finally {
    await admin.end();
  }
  const u = new URL(serverUrl);
  u.pathname = `/${name}`;
  return u.toString();
}
