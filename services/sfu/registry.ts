import { EventEmitter } from 'node:events';
import type { types as ms } from 'mediasoup';
import { RequestError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { WebRtcTransportSettings } from './performer.ts';
import { Stage, type StageServices } from './stage.ts';
import type { PoolWorker, WorkerPool } from './workerPool.ts';

type RegistryEvents = { stageOpened: [stage: Stage] };

/**
 * Who may open a stage's media here (cluster mode: the stage's lease, services/cluster/cluster.ts). claim() throws when
 * the stage belongs on another node; release() is called once the stage has closed here.
 */
export interface StageOwnership {
  claim(stageId: string): Promise<void>;
  release(stageId: string): void;
  /** This node still holds the stage's lease (it may have been lost, or fenced, while the stage was opening). */
  holds(stageId: string): boolean;
}

/** After its worker died, a stage waits this long (default) for a performer to be back on it before it closes. */
export const DEFAULT_REJOIN_WAIT_MS = 30_000;

/**
 * The live stages, keyed by stage id. A stage's router is made when it first needs media (a join, going on air) and
 * the stage closes when it is neither on air nor has anyone on it. Stages on a worker that dies are rebuilt on its
 * replacement; one that nobody comes back to within the rejoin wait (or that cannot be rebuilt) closes, and with it
 * its broadcast (aborted).
 */
export class StageRegistry extends EventEmitter<RegistryEvents> {
  readonly #stages = new Map<string, Stage>();
  readonly #opening = new Map<string, Promise<Stage>>();
  readonly #pool: WorkerPool;
  readonly #rtc: WebRtcTransportSettings;
  readonly #maxPerformers: number;
  readonly #services: StageServices;
  readonly #rejoinWaitMs: number;
  readonly #log: Logger;
  readonly #ownership: StageOwnership | null;
  readonly #onWorkerDied: (dead: ms.Worker) => void;
  readonly #onWorkerReplaced: (dead: ms.Worker, replacement: PoolWorker) => void;
  #closed = false;

  constructor(args: {
    pool: WorkerPool;
    rtc: WebRtcTransportSettings;
    maxPerformers: number;
    services: StageServices;
    /** How long a stage whose worker died waits for a performer to come back before it closes. */
    rejoinWaitMs?: number;
    /** Cluster mode: stages are opened only where they are placed. */
    ownership?: StageOwnership | null;
    log: Logger;
  }) {
    super();
    this.#pool = args.pool;
    this.#rtc = args.rtc;
    this.#maxPerformers = args.maxPerformers;
    this.#services = args.services;
    this.#rejoinWaitMs = args.rejoinWaitMs ?? DEFAULT_REJOIN_WAIT_MS;
    this.#log = args.log;
    this.#ownership = args.ownership ?? null;
    this.#onWorkerDied = (dead) => {
      for (const stage of this.#stages.values()) if (stage.usesWorker(dead)) this.#awaitReturn(stage);
    };
    this.#onWorkerReplaced = (dead, replacement) => {
      for (const stage of this.#stages.values()) {
        if (!stage.usesWorker(dead)) continue;
        stage.rebuild(replacement, 'media server restarted').catch((err: unknown) => {
          this.#log.error('stage rebuild failed; closing it', { stageId: stage.id, error: String(err) });
          void stage.close(`the stage's media server died and it could not be rebuilt: ${String(err)}`, 'aborted');
        });
      }
    };
    this.#pool.on('workerDied', this.#onWorkerDied);
    this.#pool.on('workerReplaced', this.#onWorkerReplaced);
  }

  /**
   * The stage's worker died: its performers are gone. Unless one of them (or anyone) is back on it within the rejoin
   * wait, it closes, broadcast and all: a show nobody can get back to is over.
   */
  #awaitReturn(stage: Stage): void {
    const t = setTimeout(() => {
      if (stage.closed || stage.size > 0) return;
      this.#log.warn('nobody came back to the stage after its media server died; closing it', { stageId: stage.id, waitedMs: this.#rejoinWaitMs });
      void stage.close('the media server was lost and no performer came back', 'aborted');
    }, this.#rejoinWaitMs);
    t.unref();
    stage.once('@close', () => clearTimeout(t));
  }

  get(id: string): Stage | undefined {
    return this.#stages.get(id);
  }

  get stages(): Stage[] {
    return [...this.#stages.values()];
  }

  /** The stage's media, created on the least-loaded worker when absent. Concurrent callers share one creation. */
  async open(id: string): Promise<Stage> {
    if (this.#closed) throw new Error('registry closed');
    const existing = this.#stages.get(id);
    if (existing) return existing;
    let pending = this.#opening.get(id);
    if (!pending) {
      const ownership = this.#ownership;
      pending = (ownership ? ownership.claim(id) : Promise.resolve())
        .then(() =>
          Stage.create({
            id,
            poolWorker: this.#pool.leastLoaded(),
            rtc: this.#rtc,
            maxPerformers: this.#maxPerformers,
            services: this.#services,
            log: this.#log,
          }).catch((err: unknown) => {
            ownership?.release(id);
            throw err;
          }),
        )
        .then((stage) => {
          this.#opening.delete(id);
          if (this.#closed) {
            void stage.close('server shutting down', 'complete');
            ownership?.release(id);
            throw new Error('registry closed');
          }
          if (ownership && !ownership.holds(id)) {
            void stage.close('the stage moved to another node while it opened here', 'aborted', { handOver: true });
            throw new RequestError('UNAVAILABLE', 'this stage is moving to another node; try again', 2);
          }
          this.#stages.set(id, stage);
          stage.once('@close', () => {
            this.#stages.delete(id);
            ownership?.release(id);
          });
          // An empty stage costs nothing once closed; one on air keeps its router for the mix.
          const closeIfIdle = () => {
            if (stage.size === 0 && !stage.rebuilding && !stage.onAir) void stage.close('empty and off air', 'complete');
          };
          stage.on('performerLeft', closeIfIdle);
          stage.on('onAirChanged', closeIfIdle);
          this.emit('stageOpened', stage);
          return stage;
        });
      pending.catch(() => this.#opening.delete(id));
      this.#opening.set(id, pending);
    }
    return pending;
  }

  /** Idempotent: closes every stage (their broadcasts end with `reason`), waiting for their mixes to end. */
  async close(reason = 'server shutting down'): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#pool.off('workerDied', this.#onWorkerDied);
    this.#pool.off('workerReplaced', this.#onWorkerReplaced);
    const stages = [...this.#stages.values()];
    this.#stages.clear();
    this.removeAllListeners();
    await Promise.all(stages.map((s) => s.close(reason, 'complete')));
  }
}
