import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import * as mediasoup from 'mediasoup';
import type { types as ms } from 'mediasoup';
import type { Logger } from '../logger.ts';

export interface WorkerPoolOptions {
  numWorkers: number;
  logLevel: ms.WorkerLogLevel;
  rtcMinPort: number;
  rtcMaxPort: number;
}

export interface PoolWorker {
  readonly index: number;
  readonly worker: ms.Worker;
  /** Routers placed on this worker (its load). */
  routers: number;
}

type WorkerPoolEvents = {
  /** A worker died (not while draining or closing): its routers are gone. A replacement is on its way. */
  workerDied: [dead: ms.Worker];
  /** A worker died and `replacement` took its slot. Owners of routers on `dead` must rebuild them. */
  workerReplaced: [dead: ms.Worker, replacement: PoolWorker];
  workerFailed: [index: number, error: Error];
};

const RESPAWN_DELAY_MS = 200;
const MAX_RESPAWN_DELAY_MS = 5000;
/**
 * A worker that exited on its own terms (exit code 0, or SIGINT/SIGTERM) was most likely stopped with the whole
 * service (Ctrl-C signals the terminal's process group; systemd signals every process of the service): its
 * replacement waits this long, so that the service's own signal handler can start draining, and then is not made.
 */
const SIGNALLED_RESPAWN_DELAY_MS = 1000;

/** One mediasoup worker per core; a dead worker is respawned in its slot. Stages go to the least-loaded worker. */
export class WorkerPool extends EventEmitter<WorkerPoolEvents> {
  readonly #slots: (PoolWorker | null)[] = [];
  readonly #log: Logger;
  readonly #opts: WorkerPoolOptions;
  readonly #timers = new Set<NodeJS.Timeout>();
  /** Workers that died of SIGINT or SIGTERM, waiting to see whether the service is shutting down (their timers). */
  readonly #signalled = new Map<NodeJS.Timeout, () => void>();
  #closed = false;
  #draining = false;

  private constructor(opts: WorkerPoolOptions, log: Logger) {
    super();
    this.#opts = opts;
    this.#log = log.child({ component: 'workerPool' });
  }

  static async create(opts: WorkerPoolOptions, log: Logger): Promise<WorkerPool> {
    const pool = new WorkerPool(opts, log);
    for (let i = 0; i < opts.numWorkers; i++) pool.#slots.push(await pool.#spawn(i));
    return pool;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Shutting down: a worker that dies from now on is not replaced (its stages are being closed anyway). */
  drain(): void {
    this.#draining = true;
    this.#settleSignalled();
  }

  /** Shutting down after all: the workers that died of the signal are let go now (and logged so), not later. */
  #settleSignalled(): void {
    for (const [t, wait] of [...this.#signalled]) {
      clearTimeout(t);
      this.#timers.delete(t);
      this.#signalled.delete(t);
      wait();
    }
  }

  get workers(): readonly PoolWorker[] {
    return this.#slots.filter((w): w is PoolWorker => w !== null);
  }

  /** The live worker with the fewest routers. Throws when none is alive (e.g. all respawning). */
  leastLoaded(): PoolWorker {
    let best: PoolWorker | null = null;
    for (const w of this.#slots) if (w && !w.worker.closed && (best === null || w.routers < best.routers)) best = w;
    if (!best) throw new Error('no mediasoup worker is available');
    return best;
  }

  async #spawn(index: number): Promise<PoolWorker> {
    // Each slot has its own share of the port range, so a respawned worker never collides with a live one.
    const { rtcMinPort, rtcMaxPort, numWorkers } = this.#opts;
    const span = Math.floor((rtcMaxPort - rtcMinPort + 1) / numWorkers);
    const minPort = rtcMinPort + index * span;
    const maxPort = index === numWorkers - 1 ? rtcMaxPort : minPort + span - 1;
    const worker = await mediasoup.createWorker({ logLevel: this.#opts.logLevel, rtcMinPort: minPort, rtcMaxPort: maxPort });
    const slot: PoolWorker = { index, worker, routers: 0 };
    this.#log.info('mediasoup worker started', { index, pid: worker.pid, minPort, maxPort });
    worker.on('died', (err) => this.#onDied(slot, err));
    return slot;
  }

  #onDied(slot: PoolWorker, err: Error): void {
    if (this.#closed) return;
    this.#slots[slot.index] = null;
    if (this.#draining) {
      this.#log.info('mediasoup worker exited while the service shuts down', { index: slot.index, pid: slot.worker.pid, error: err.message });
      return;
    }
    // mediasoup's message ends "[pid:…, code:…, signal:…]".
    const signalled = /code:0\b|signal:SIG(INT|TERM)\b/.test(err.message);
    const wait = () => {
      if (this.#closed || this.#draining) {
        this.#log.info('mediasoup worker exited with the service', { index: slot.index, pid: slot.worker.pid, error: err.message });
        return;
      }
      this.#log.error('mediasoup worker died; replacing it', { index: slot.index, pid: slot.worker.pid, error: err.message });
      this.emit('workerDied', slot.worker);
      void this.#respawn(slot, 0);
    };
    if (!signalled) return wait();
    const t = setTimeout(() => {
      this.#timers.delete(t);
      this.#signalled.delete(t);
      wait();
    }, SIGNALLED_RESPAWN_DELAY_MS);
    this.#timers.add(t);
    this.#signalled.set(t, wait);
  }

  async #respawn(dead: PoolWorker, attempt: number): Promise<void> {
    if (this.#closed || this.#draining) return;
    try {
      const replacement = await this.#spawn(dead.index);
      if (this.#closed || this.#draining) {
        replacement.worker.close();
        return;
      }
      this.#slots[dead.index] = replacement;
      this.emit('workerReplaced', dead.worker, replacement);
    } catch (error) {
      const delay = Math.min(MAX_RESPAWN_DELAY_MS, RESPAWN_DELAY_MS * 2 ** attempt);
      this.#log.error('mediasoup worker respawn failed; retrying', { index: dead.index, attempt, delay, error: String(error) });
      this.emit('workerFailed', dead.index, error as Error);
      const t = setTimeout(() => {
        this.#timers.delete(t);
        void this.#respawn(dead, attempt + 1);
      }, delay);
      this.#timers.add(t);
    }
  }

  /** Idempotent. Closes every worker (and so every router on them). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#settleSignalled();
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    for (const w of this.#slots) {
      if (!w) continue;
      // Dead already (the service's own signal reached every process at once) though the pool has not heard yet: it
      // is let go like one whose death was heard; closing it only reaps it.
      if (processExited(w.worker.pid)) this.#log.info('mediasoup worker exited with the service', { index: w.index, pid: w.worker.pid });
      w.worker.close();
    }
    this.#slots.length = 0;
    this.removeAllListeners();
  }

  /** close(), then waits until every worker process has exited (SIGKILL after timeoutMs). */
  async closeAndWait(timeoutMs = 3000): Promise<void> {
    const pids = this.workers.map((w) => w.worker.pid);
    this.close();
    const deadline = Date.now() + timeoutMs;
    for (const pid of pids) {
      while (isAlive(pid)) {
        if (Date.now() > deadline) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            // already gone
          }
          break;
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The process is gone or a zombie (exited, not yet reaped). Linux: /proc/<pid>/stat's state. */
function processExited(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z';
  } catch {
    return true;
  }
}
