import { EventEmitter } from 'node:events';
import type { types as ms } from 'mediasoup';
import { Mixer, type MixerOptions } from '../../pipelines/mixer/mixer.ts';
import type { Logger } from '../logger.ts';
import { InvalidStateError, RequestError } from './errors.ts';
import { Performer, type WebRtcTransportSettings } from './performer.ts';
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
  onAirChanged: [onAir: boolean];
  '@close': [];
};

/** A stage's media: one Router (on one worker), its performers and an AudioLevelObserver. Owned by StageRegistry. */
export class Stage extends EventEmitter<StageEvents> {
  readonly id: string;
  readonly #log: Logger;
  readonly #rtc: WebRtcTransportSettings;
  readonly #maxPerformers: number;
  readonly #performers = new Map<string, Performer>();
  #poolWorker: PoolWorker;
  #router: ms.Router;
  #levelObserver: ms.AudioLevelObserver;
  #mixer: Mixer | null = null;
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
    log: Logger;
  }) {
    super();
    this.id = args.id;
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
    this.#levelObserver.on('volumes', (volumes) => {
      this.emit(
        'audioLevels',
        volumes.map((v) => ({ performerId: String(v.producer.appData['performerId']), volume: v.volume })),
      );
    });
    this.#levelObserver.on('silence', () => this.emit('audioLevels', []));
  }

  get closed(): boolean {
    return this.#closed;
  }

  get mixer(): Mixer | null {
    return this.#mixer;
  }

  get onAir(): boolean {
    return this.#mixer !== null;
  }

  /** Starts the on-air mix: every performer who publishes, now or later, is fed into it. Idempotent. */
  async goLive(opts: Omit<MixerOptions, 'stageId' | 'log'>): Promise<Mixer> {
    if (this.#closed) throw new InvalidStateError('stage closed');
    if (this.#mixer) return this.#mixer;
    const mixer = await Mixer.start(this.#router, { ...opts, stageId: this.id, log: this.#log });
    if (this.#closed) {
      await mixer.stop();
      throw new InvalidStateError('stage closed');
    }
    this.#mixer = mixer;
    for (const p of this.#performers.values()) this.#feedMixer(p);
    this.emit('onAirChanged', true);
    return mixer;
  }

  /** Stops the mix (the playlist gets ENDLIST). Idempotent. */
  async goOffAir(): Promise<void> {
    const mixer = this.#mixer;
    if (!mixer) return;
    this.#mixer = null;
    await mixer.stop();
    this.emit('onAirChanged', false);
  }

  #feedMixer(performer: Performer): void {
    const producer = performer.producer;
    if (!this.#mixer || !producer || producer.closed) return;
    this.#mixer.attach(performer.id, producer, performer.displayName).catch((err: unknown) => {
      this.#log.error('could not put performer on air', { performerId: performer.id, error: String(err) });
    });
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
  addPerformer(id: string, displayName: string): Performer {
    if (this.#closed) throw new InvalidStateError('stage closed');
    if (this.#performers.size >= this.#maxPerformers) {
      throw new RequestError('STAGE_FULL', `this stage is full (${this.#maxPerformers} performers)`);
    }
    const performer = new Performer({ id, displayName, router: this.#router, rtc: this.#rtc, log: this.#log });
    this.#performers.set(id, performer);
    performer.on('updated', () => {
      const producer = performer.producer;
      if (producer && !producer.closed && !producer.appData['observed']) {
        producer.appData['observed'] = true;
        void this.#levelObserver.addProducer({ producerId: producer.id }).catch((err: unknown) => {
          this.#log.warn('could not observe producer level', { error: String(err) });
        });
      }
      this.#feedMixer(performer);
      this.emit('performerUpdated', performer);
    });
    performer.once('@close', (reason) => {
      this.#mixer?.detach(id);
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
    this.#mixer?.setRouter(router);
    this.#watchMedia();
    this.#log.warn('stage rebuilt on a new worker', { pid: poolWorker.worker.pid, reason });
    this.emit('rebuilt', reason);
  }

  /** Idempotent; stops the mix (ending its playlist), closes every performer and the router. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const p of [...this.#performers.values()]) p.close('stage closed');
    this.#performers.clear();
    const mixer = this.#mixer;
    this.#mixer = null;
    try {
      await mixer?.stop();
    } finally {
      if (!this.#router.closed) this.#router.close();
      this.#log.info('stage media closed');
      this.emit('@close');
      this.removeAllListeners();
    }
  }
}
