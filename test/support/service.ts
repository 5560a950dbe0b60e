// The real service (services/main.ts) as a child process, in a process group of its own, as a user or systemd runs
// it: its JSON log lines collected, /healthz awaited; stop() ends it (and only it) if a test has not.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import { TEST_ADMIN_TOKEN } from './app.ts';
import { eventually } from './browser.ts';

const ROOT = path.resolve(import.meta.dirname, '..', '..');

export interface LogLine {
  level: string;
  message: string;
  [k: string]: unknown;
}

export class ServiceProcess {
  readonly child: ChildProcess;
  readonly url: string;
  readonly logs: LogLine[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;

  private constructor(child: ChildProcess, url: string) {
    this.child = child;
    this.url = url;
    readline.createInterface({ input: child.stdout! }).on('line', (line) => {
      if (!line.startsWith('{')) return;
      try {
        this.logs.push(JSON.parse(line) as LogLine);
      } catch {
        // not a log line
      }
    });
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal, at: performance.now() })));
  }

  /** Starts the service with these variables (plus a minimal environment) on `port`; resolves once /healthz answers. */
  static async start(port: number, env: Record<string, string>): Promise<ServiceProcess> {
    const child = spawn(process.execPath, ['--import', 'tsx', 'services/main.ts'], {
      cwd: ROOT,
      detached: true,
      env: {
        PATH: process.env['PATH'],
        HOME: process.env['HOME'],
        PORT: String(port),
        HOST: '127.0.0.1',
        ADMIN_TOKEN: TEST_ADMIN_TOKEN,
        LOG_LEVEL: 'info',
        RTC_LISTEN_IP: '127.0.0.1',
        MEDIASOUP_WORKERS: '1',
        ARCHIVE_SWEEP_SECONDS: '1',
        AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
        ...env,
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const svc = new ServiceProcess(child, `http://127.0.0.1:${port}`);
    const up = await eventually(() => fetch(`${svc.url}/healthz`).then((r) => r.status, () => 0), (s) => s === 200 || child.exitCode !== null, 60_000, 200);
    if (up !== 200) {
      await svc.stop();
      throw new Error(`the service did not come up (healthz ${up}, exit ${child.exitCode})`);
    }
    return svc;
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** Log lines whose message matches. */
  logged(message: string | RegExp): LogLine[] {
    return this.logs.filter((l) => (typeof message === 'string' ? l.message === message : message.test(l.message)));
  }

  /** Ends it if it still runs (SIGKILL to its process group, which this harness made), and waits. Idempotent. */
  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      try {
        process.kill(-this.pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    await this.exited;
  }
}
