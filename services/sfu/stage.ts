import { EventEmitter } from 'node:events';
import type { types as ms } from 'mediasoup';
import { Broadcast, type BroadcastEndStatus } from '../broadcast/broadcast.ts';
import type { BroadcastServices } from '../broadcast/services.ts';
import type { HlsContinuation } from '../broadcast/takeover.ts';
import type { Db } from '../db/db.ts';
import type { Logger } from '../logger.ts';
import { InvalidStateError, RequestError } from '../errors.ts';
import { Performer, type PerformerRole, type WebRtcTransportSettings } from './performer.ts';
import type { PoolWorker } from './workerPool.ts';

/** Opus 48 kHz stereo is the only codec a stage routes. */
export const STAGE_MEDIA_CODECS: ms.RtpCodecCapability[] = [
  { kind: 'audio', mimeType: 'audio/opus', clockRate: 48000, channels: 2, parameters: { useinbandfec: 1, 'sprop-stereo': 1 } },
];

const AUDIO_LEVEL_INTERVAL_MS = 100;

type StageEvents = {
  performerJoined: [performer: Performer];
  performerLeft: [performerId: string, reason: string];
  performerUpdated: [performer: Performer];
  audioLevels: [levels: { performerId: string; volume: number }[]];
  /** The router was lost with its worker and rebuilt: every performer was dropped and must join again. */
  rebuilt: [reason: string];
  /** `handedOver`: off air because another node continues the stage (cluster mode), not because the show ended. */
  onAirChanged: [onAir: boolean, handedOver?: boolean];
  '@close': [reason: string];
};

/** What a stage needs from the app to put a broadcast on air. */
export interface StageServices {
  db: Db;
  broadcasts: BroadcastServices;
}

/**
 * A live stage: one Router (on one worker), its performers, an AudioLevelObserver, and while on air its Broadcast.
 * Made and owned by StageRegistry; close() cascades to the broadcast first, then the performers and the router.
 */
export class Stage extends EventEmitter<StageEvents> {
  readonly id: string;
  readonly #log: Logger;
  readonly #rtc: WebRtcTransportSettings;
  readonly #maxPerformers: number;
  readonly #performers = new Map<string, Performer>();
  readonly #services: StageServices;
  #poolWorker: PoolWorker;
  #router: ms.Router;
  #levelObserver: ms.AudioLevelObserver;
  #broadcast: Broadcast | null = null;
  /** The AudioLevelObserver's last report (performers above -70 dBov; empty when all are quiet). */
  #lastLevels: readonly { performerId: string; volume: number }[] = [];
  #starting: Promise<Broadcast> | null = null;
  #rebuilding = false;
  #ready: Promise<void> = Promise.resolve();
  #closed = false;

  private constructor(args: {
    id: string;
    poolWorker: PoolWorker;
    router: ms.Router;
    levelObserver: ms.AudioLevelObserver;
    rtc: WebRtcTransportSettings;
    maxPerformers: number;
    services: StageServices;
    log: Logger;
  }) {
    super();
    this.id = args.id;
    this.#services = args.services;
    this.#poolWorker = args.poolWorker;
    this.#router = args.router;
    this.#levelObserver = args.levelObserver;
    this.#rtc = args.rtc;
    this.#maxPerformers = args.maxPerformers;
    this.#log = args.log;
    this.#watchMedia();
  }

  static async create(args: {
    id: string;
    poolWorker: PoolWorker;
    rtc: WebRtcTransportSettings;
    maxPerformers: number;
    services: StageServices;
    log: Logger;
  }): Promise<Stage> {
    const log = args.log.child({ stageId: args.id });
    const { router, levelObserver } = await Stage.#createMedia(args.poolWorker, args.id);
    return new Stage({ ...args, router, levelObserver, log });
  }

  static async #createMedia(poolWorker: PoolWorker, stageId: string) {
    const router = await poolWorker.worker.createRouter({ mediaCodecs: STAGE_MEDIA_CODECS, appData: { stageId } });
    poolWorker.routers++;
    router.observer.once('close', () => poolWorker.routers--);
    const levelObserver = await router.createAudioLevelObserver({ maxEntries: 16, threshold: -70, interval: AUDIO_LEVEL_INTERVAL_MS });
    return { router, levelObserver };
  }

  #watchMedia(): void {
    const onLevels = (levels: { performerId: string; volume: number }[]) => {
      this.#lastLevels = levels;
      this.#broadcast?.levels(levels);
      this.emit('audioLevels', levels);
    };
    this.#levelObserver.on('volumes', (volumes) => {
      onLevels(volumes.map((v) => ({ performerId: String(v.producer.appData['performerId']), volume: v.volume })));
    });
    this.#levelObserver.on('silence', () => onLevels([]));
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** The broadcast on air, or null. */
  get broadcast(): Broadcast | null {
    return this.#broadcast;
  }

  get onAir(): boolean {
    return this.#broadcast !== null;
  }

  /**
   * Goes on air: a Broadcast is made (the mix, the archive's sink, the timeline, the usage ticks), and every performer
   * who publishes, now or later, is fed into it. Idempotent: the broadcast on air (or being started) is returned.
   */
  startBroadcast(opts: { continues?: HlsContinuation | null } = {}): Promise<Broadcast> {
    if (this.#closed) return Promise.reject(new InvalidStateError('stage closed'));
    if (this.#broadcast) return Promise.resolve(this.#broadcast);
    this.#starting ??= this.#start(opts).finally(() => (this.#starting = null));
    return this.#starting;
  }

  async #start(opts: { continues?: HlsContinuation | null }): Promise<Broadcast> {
    const broadcast = await Broadcast.create(this, this.#services.broadcasts, this.#services.db, opts);
    if (this.#closed) {
      await broadcast.close('stage closed', 'aborted');
      throw new InvalidStateError('stage closed');
    }
    this.#broadcast = broadcast;
    broadcast.once('@close', () => {
      if (this.#broadcast !== broadcast) return;
      this.#broadcast = null;
      this.emit('onAirChanged', false, broadcast.handedOver);
    });
    this.emit('onAirChanged', true);
    return broadcast;
  }

  /** Goes off air: the broadcast ends (ENDLIST, archive finalized). Resolves once it is closed. Idempotent. */
  async stopBroadcast(reason = 'stopped', status: BroadcastEndStatus = 'complete'): Promise<void> {
    await this.#starting?.catch(() => undefined);
    await this.#broadcast?.close(reason, status);
  }

  /** True while performers are being dropped for a rebuild (the stage is not emptying for good). */
  get rebuilding(): boolean {
    return this.#rebuilding;
  }

  /** Resolves once the stage's router is usable (immediately, except while it is being rebuilt). */
  whenReady(): Promise<void> {
    return this.#ready;
  }

  get worker(): ms.Worker {
    return this.#poolWorker.worker;
  }

  get router(): ms.Router {
    return this.#router;
  }

  get rtpCapabilities(): ms.RtpCapabilities {
    return this.#router.rtpCapabilities;
  }

  /** The last audio levels (dBov) of the stage's performers above -70 dBov. */
  get levels(): readonly { performerId: string; volume: number }[] {
    return this.#lastLevels;
  }

  get performers(): Performer[] {
    return [...this.#performers.values()];
  }

  get size(): number {
    return this.#performers.size;
  }

  performer(id: string): Performer | undefined {
    return this.#performers.get(id);
  }

  /** Adds a performer, refusing past the stage's limit. */
  addPerformer(id: string, displayName: string, role: PerformerRole = 'performer'): Performer {
    if (this.#closed) throw new InvalidStateError('stage closed');
    if (this.#performers.size >= this.#maxPerformers) {
      throw new RequestError('STAGE_FULL', `this stage is full (${this.#maxPerformers} performers)`);
    }
    const performer = new Performer({ id, displayName, role, router: this.#router, rtc: this.#rtc, log: this.#log });
    this.#performers.set(id, performer);
    performer.on('updated', () => {
      const producer = performer.producer;
      if (producer && !producer.closed && !producer.appData['observed']) {
        producer.appData['observed'] = true;
        void this.#levelObserver.addProducer({ producerId: producer.id }).catch((err: unknown) => {
          this.#log.warn('could not observe producer level', { error: String(err) });
        });
      }
      this.#broadcast?.attach(performer);
      this.emit('performerUpdated', performer);
    });
    performer.once('@close', (reason) => {
      if (this.#performers.get(id) !== performer) return;
      this.#broadcast?.detach(id);
      this.#performers.delete(id);
      this.emit('performerLeft', id, reason);
    });
    this.emit('performerJoined', performer);
    return performer;
  }

  /** Finds a producer of this stage and the performer who owns it. */
  producer(producerId: string): { producer: ms.Producer; performerId: string } | null {
    for (const p of this.#performers.values()) {
      if (p.producer?.id === producerId) return { producer: p.producer, performerId: p.id };
    }
    return null;
  }

  usesWorker(worker: ms.Worker): boolean {
    return this.#poolWorker.worker === worker;
  }

  /**
   * Moves the stage to a fresh worker after its own died. Performers are dropped (their transports died with the
   * worker) and told to join again; the stage itself, its id and its listeners stay.
   */
  rebuild(poolWorker: PoolWorker, reason: string): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#ready = this.#rebuild(poolWorker, reason);
    return this.#ready;
  }

  async #rebuild(poolWorker: PoolWorker, reason: string): Promise<void> {
    this.#rebuilding = true;
    let media;
    try {
      for (const p of [...this.#performers.values()]) p.close(reason);
      if (!this.#router.closed) this.#router.close();
      media = await Stage.#createMedia(poolWorker, this.id);
    } finally {
      this.#rebuilding = false;
    }
    const { router, levelObserver } = media;
    if (this.#closed) {
      router.close();
      return;
    }
    this.#poolWorker = poolWorker;
    this.#router = router;
    this.#levelObserver = levelObserver;
    // The mix never stopped: its slots filled silence while the router was gone.
    this.#broadcast?.setRouter(router);
    this.#watchMedia();
    this.#log.warn('stage rebuilt on a new worker', { pid: poolWorker.worker.pid, reason });
    this.emit('rebuilt', reason);
  }

  /**
   * Idempotent. Ends the broadcast on air first (with this reason; `aborted` unless said otherwise), then closes every
   * performer and the router. Never leaves the router open, whatever the broadcast's close did. `handOver`: another
   * node continues the stage (the stage stays live in the database).
   */
  async close(reason = 'stage closed', status: BroadcastEndStatus = 'aborted', opts: { handOver?: boolean } = {}): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      await this.#starting?.catch(() => undefined);
      await this.#broadcast?.close(reason, status, opts);
    } finally {
      for (const p of [...this.#performers.values()]) p.close('stage closed');
      this.#performers.clear();
      if (!this.#router.closed) this.#router.close();
      this.#log.info('stage closed', { reason });
      this.emit('@close', reason);
      this.removeAllListeners();
    }
  }
}
