// Cluster mode (docs/cluster.md): every node looks, every second, for live stages nobody serves, and one of them
// takes each over. A stage is an orphan when the database says it is live, nobody holds its lease (it expired: its
// owner stopped renewing, or let it go), and either
// - its latest broadcast is still open and the node recording it has no heartbeat (it expired: no beat for
//   NODE_TTL_MS): the node died; or
// - its latest broadcast was ended while the stage stayed live: its node handed it over (shutting down, or cut off
//   from Redis: services/cluster/cluster.ts FENCE_MS), whether or not that node is back.
// A node looks only once its own connection to Redis has been up for NODE_TTL_MS (right after a Redis restart every
// key is gone, heartbeats and leases alike, and their owners write them again within a second or two). The orphan is
// placed like any stage (the least-loaded live node, atomically); the node it lands on takes it over.
import type { Logger } from '../logger.ts';
import { NODE_TTL_MS, type Cluster } from './cluster.ts';

/** How often the nodes look for orphans. */
export const ORPHAN_SWEEP_MS = 1000;

export interface OrphanSweepArgs {
  cluster: Cluster;
  /** Stages the database says are live. */
  liveStages: () => Promise<string[]>;
  /**
   * The node that recorded the stage's latest broadcast (null: none; nodeId null: recorded without a cluster), and
   * whether that broadcast is still open.
   */
  recorder: (stageId: string) => Promise<{ nodeId: string | null; open: boolean } | null>;
  /** The stage is on air on this node. */
  onAirHere: (stageId: string) => boolean;
  /** This node takes new work (false while it shuts down). */
  accepting: () => boolean;
  /** Takes the stage over here (ends the dead node's broadcast, continues its playlist); true when it did. */
  takeOver: (stageId: string) => Promise<boolean>;
  log: Logger;
}

export class OrphanSweep {
  readonly #a: OrphanSweepArgs;
  readonly #timer: NodeJS.Timeout;
  #running = false;
  #closed = false;

  constructor(args: OrphanSweepArgs) {
    this.#a = args;
    this.#timer = setInterval(() => void this.sweep(), ORPHAN_SWEEP_MS);
  }

  /** One look (also called by tests). Never throws. */
  async sweep(): Promise<void> {
    if (this.#running || this.#closed) return;
    this.#running = true;
    try {
      await this.#sweep();
    } catch (err) {
      this.#a.log.debug('orphan sweep failed; trying again', { error: String(err) });
    } finally {
      this.#running = false;
    }
  }

  async #sweep(): Promise<void> {
    const { cluster, log } = this.#a;
    if (cluster.redisUpMs < NODE_TTL_MS || !this.#a.accepting()) return;
    const alive = new Set((await cluster.nodes()).map((n) => n.id));
    for (const stageId of await this.#a.liveStages()) {
      if (this.#closed) return;
      if (this.#a.onAirHere(stageId)) continue;
      const holder = await cluster.holder(stageId);
      // Placed here (by this node or another) and not on air yet: take it over. Held elsewhere: not an orphan.
      if (holder !== null && holder !== cluster.nodeId) continue;
      const recorder = await this.#a.recorder(stageId);
      if (!recorder?.nodeId) continue;
      // An open broadcast of a live node is that node's (an earlier run of this one included: its start ends it).
      const deserted = recorder.open ? recorder.nodeId !== cluster.nodeId && !alive.has(recorder.nodeId) : true;
      if (!deserted) continue;
      if (holder === null) {
        const placed = await cluster.place(stageId);
        log.info(recorder.open ? 'placed a stage whose node is gone' : 'placed a stage its node handed over', { stageId, from: recorder.nodeId, on: placed.id });
        if (placed.id !== cluster.nodeId) continue;
      }
      const t0 = performance.now();
      if (await this.#a.takeOver(stageId)) log.warn('took over a stage whose node is gone', { stageId, tookMs: Math.round(performance.now() - t0) });
    }
  }

  close(): void {
    this.#closed = true;
    clearInterval(this.#timer);
  }
}
