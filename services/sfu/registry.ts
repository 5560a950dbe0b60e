import { EventEmitter } from 'node:events';
import type { Logger } from '../logger.ts';
import type { WebRtcTransportSettings } from './performer.ts';
import { Stage } from './stage.ts';
import type { WorkerPool } from './workerPool.ts';

type RegistryEvents = { stageOpened: [stage: Stage] };

/** A rebuilt stage waits this long for its performers to come back before it closes. */
const REBUILT_IDLE_CLOSE_MS = 30_000;

/**
 * The live stages' media, keyed by stage id. A stage's router is made when its first performer arrives and closed
 * when the last one leaves; stages on a worker that dies are rebuilt on its replacement.
 */
export class StageRegistry extends EventEmitter<RegistryEvents> {
  readonly #stages = new Map<string, Stage>();
  readonly #opening = new Map<string, Promise<Stage>>();
  readonly #pool: WorkerPool;
  readonly #rtc: WebRtcTransportSettings;
  readonly #maxPerformers: number;
  readonly #log: Logger;
  #closed = false;

  constructor(args: { pool: WorkerPool; rtc: WebRtcTransportSettings; maxPerformers: number; log: Logger }) {
    super();
    this.#pool = args.pool;
    this.#rtc = args.rtc;
    this.#maxPerformers = args.maxPerformers;
    this.#log = args.log;
    this.#pool.on('workerReplaced', (dead, replacement) => {
      for (const stage of this.#stages.values()) {
        if (!stage.usesWorker(dead)) continue;
        stage.rebuild(replacement, 'media server restarted').catch((err: unknown) => {
          this.#log.error('stage rebuild failed; closing it', { stageId: stage.id, error: String(err) });
          void stage.close();
        });
      }
    });
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
      pending = Stage.create({
        id,
        poolWorker: this.#pool.leastLoaded(),
        rtc: this.#rtc,
        maxPerformers: this.#maxPerformers,
        log: this.#log,
      }).then((stage) => {
        this.#opening.delete(id);
        if (this.#closed) {
          void stage.close();
          throw new Error('registry closed');
        }
        this.#stages.set(id, stage);
        stage.once('@close', () => this.#stages.delete(id));
        // An empty stage costs nothing once closed; one on air keeps its router for the mix.
        const closeIfIdle = () => {
          if (stage.size === 0 && !stage.rebuilding && !stage.onAir) void stage.close();
        };
        stage.on('performerLeft', closeIfIdle);
        stage.on('onAirChanged', closeIfIdle);
        stage.on('rebuilt', () => {
          const t = setTimeout(closeIfIdle, REBUILT_IDLE_CLOSE_MS);
          t.unref();
          stage.once('@close', () => clearTimeout(t));
        });
        this.emit('stageOpened', stage);
        return stage;
      });
      pending.catch(() => this.#opening.delete(id));
      this.#opening.set(id, pending);
    }
    return pending;
  }

  /** Idempotent: closes every stage, waiting for their mixes to end their playlists. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const stages = [...this.#stages.values()];
    this.#stages.clear();
    this.removeAllListeners();
    await Promise.all(stages.map((s) => s.close()));
  }
}
