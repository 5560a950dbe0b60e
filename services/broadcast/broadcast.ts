// A broadcast: one stage on air, from go-live to its end. It owns everything that lives exactly as long as that:
// the mixer (its slot relays, FFmpeg, the HLS publisher and the performers' tracks), the archive's segment sink (fed
// by the publisher's events), the live timeline and its speaking detector, and the usage ticks. Its stage creates it
// (Stage.startBroadcast) and closes it; whatever closes the stage closes it first.
//
// close() is idempotent and cascades, child by child, each in its own try: one child failing to close does not
// strand the others. It then records how the broadcast ended (journaled, so a database outage or a crash loses
// nothing) and hands the archive to finalization, a durable step of its own.
import crypto from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { types as ms } from 'mediasoup';
import { Mixer } from '../../pipelines/mixer/mixer.ts';
import { recordContinuation, type HlsContinuation } from './takeover.ts';
import { BroadcastRepo } from '../db/broadcasts.ts';
import type { Db } from '../db/db.ts';
import { StageRepo } from '../db/repositories.ts';
import type { Logger } from '../logger.ts';
import { LiveTimeline } from './liveTimeline.ts';
import type { BroadcastServices, BroadcastStage, SegmentSink } from './services.ts';

export type BroadcastEndStatus = 'complete' | 'aborted' | 'failed';

type BroadcastEvents = {
  /** Closed (by its stage, or by itself when its mix failed). */
  '@close': [status: BroadcastEndStatus, reason: string];
};

export class Broadcast extends EventEmitter<BroadcastEvents> {
  readonly id: string;
  readonly stageId: string;
  readonly mixer: Mixer;
  readonly timeline: LiveTimeline;
  readonly startedAt = new Date();
  readonly #stage: BroadcastStage;
  readonly #services: BroadcastServices;
  readonly #log: Logger;
  readonly #sink: SegmentSink | null;
  readonly #usage: { close(): void };
  /** Performers fed into the mix (the on-air record of each is written once per stretch on air). */
  readonly #onAir = new Set<string>();
  #closing: Promise<void> | null = null;
  #end: { status: BroadcastEndStatus; reason: string } | null = null;
  #recorded: Promise<boolean> = new Promise(() => undefined);

  private constructor(args: {
    id: string;
    stage: BroadcastStage;
    services: BroadcastServices;
    mixer: Mixer;
    sink: SegmentSink | null;
    log: Logger;
    /** It continues a broadcast of the same stage that another node was making (a takeover). */
    continuing: boolean;
  }) {
    super();
    this.id = args.id;
    this.stageId = args.stage.id;
    this.#stage = args.stage;
    this.#services = args.services;
    this.mixer = args.mixer;
    this.#sink = args.sink;
    this.#log = args.log;
    this.timeline = new LiveTimeline({
      broadcastId: this.id,
      stageId: this.stageId,
      clock: this.mixer,
      writes: args.services.writes,
      publish: (event) => args.services.publish(this.stageId, event),
      displayName: (performerId) => this.#stage.performers.find((p) => p.id === performerId)?.displayName ?? performerId,
      log: args.log,
    });
    this.#usage = args.services.usage.register({
      stageId: this.stageId,
      broadcastId: this.id,
      performerIds: () => this.#stage.performers.filter((p) => p.producer).map((p) => p.id),
    }, { tickNow: args.continuing });
    // A mix that cannot be kept running ends the broadcast: the playlist gets its ENDLIST, the archive what there is.
    this.mixer.ffmpeg.once('failed', (error) => void this.close(`the mix failed: ${error}`, 'failed'));
  }

  /**
   * Puts the stage on air: records the broadcast, starts the mix (FFmpeg listening on every slot) and the archive's
   * sink. Anything that fails on the way is undone before the error is thrown. Called by the stage only.
   */
  static async create(stage: BroadcastStage, services: BroadcastServices, db: Db, opts: { continues?: HlsContinuation | null } = {}): Promise<Broadcast> {
    const id = crypto.randomUUID();
    const log = services.log.child({ stageId: stage.id, broadcastId: id });
    const s = services.settings;
    const hlsDir = s.hlsDir(stage.id);
    await new BroadcastRepo(db).start({ id, stageId: stage.id });
    if (opts.continues) await recordContinuation(db, id, opts.continues);
    let mixer: Mixer | null = null;
    let sink: SegmentSink | null = null;
    try {
      mixer = await Mixer.start(stage.router, {
        stageId: stage.id,
        outDir: hlsDir,
        slots: s.slots,
        ...(s.rtcPorts ? { avoidPorts: [s.rtcPorts] } : {}),
        segmentSeconds: s.segmentSeconds,
        partSeconds: s.partSeconds,
        lowLatency: s.lowLatency,
        listSize: s.listSize,
        aacBitrateKbps: s.aacBitrateKbps,
        input: s.mixInput,
        continues: opts.continues ?? null,
        log,
        ...(services.archive ? { tracksDir: services.archive.tracksDir(id) } : {}),
      });
      await new StageRepo(db).setStatus(stage.id, 'live');
      sink = (await services.archive?.begin({ broadcastId: id, stageId: stage.id, hlsDir, mixer })) ?? null;
    } catch (err) {
      await sink?.close().catch(() => undefined);
      await mixer?.stop().catch(() => undefined);
      const reason = `could not go on air: ${err instanceof Error ? err.message : String(err)}`;
      await services.writes.write('broadcast.end', { broadcastId: id, reason, status: 'failed', at: new Date().toISOString() });
      throw err;
    }
    const broadcast = new Broadcast({ id, stage, services, mixer, sink, log, continuing: Boolean(opts.continues) });
    for (const p of stage.performers) broadcast.attach(p);
    log.info('on air');
    return broadcast;
  }

  get closed(): boolean {
    return this.#closing !== null;
  }

  /** How it ended (null while on air). */
  get end(): { status: BroadcastEndStatus; reason: string } | null {
    return this.#end;
  }

  /** After close(): resolves true once its end is in the database (it waits out an outage, journaled). */
  get recorded(): Promise<boolean> {
    return this.#recorded;
  }

  /** A performer publishes (or publishes again): feed them into the mix and record them on air. */
  attach(performer: BroadcastStage['performers'][number]): void {
    const producer = performer.producer;
    if (this.#closing || !producer || producer.closed) return;
    this.mixer.attach(performer.id, producer, performer.displayName).then(
      () => {
        if (this.#closing || this.#onAir.has(performer.id)) return;
        this.#onAir.add(performer.id);
        void this.#services.writes.write('performer.onAir', {
          broadcastId: this.id,
          performerId: performer.id,
          displayName: performer.displayName,
          at: new Date().toISOString(),
        });
      },
      (err: unknown) => this.#log.error('could not put performer on air', { performerId: performer.id, error: String(err) }),
    );
  }

  /** A performer left the stage: their slot carries silence from now on (their track goes on, silent). */
  detach(performerId: string): void {
    this.mixer.detach(performerId);
    if (this.#closing || !this.#onAir.delete(performerId)) return;
    void this.#services.writes.write('performer.offAir', { broadcastId: this.id, performerId, at: new Date().toISOString() });
  }

  /** The stage's audio levels (every 100 ms): who is speaking. */
  levels(levels: readonly { performerId: string; volume: number }[]): void {
    this.timeline.levels(levels);
  }

  /** The stage moved to a new router (its worker died): the mix goes on, fed from the new one. */
  setRouter(router: ms.Router): void {
    this.#onAir.clear();
    this.mixer.setRouter(router);
  }

  /**
   * Ends the broadcast. Idempotent: later calls wait for the first one. Never rejects: a child that fails to close is
   * logged and reported, and the others still close.
   */
  /**
   * `handOver` (cluster mode): the stage is not over, another node continues it (this node is shutting down, or lost
   * the stage's lease): the stage stays live in the database.
   */
  close(reason = 'stopped', status: BroadcastEndStatus = 'complete', opts: { handOver?: boolean } = {}): Promise<void> {
    this.#closing ??= this.#close(reason, status, opts.handOver ?? false);
    return this.#closing;
  }

  /** Ended as a hand-over: another node continues the stage (cluster mode). */
  get handedOver(): boolean {
    return this.#handedOver;
  }

  #handedOver = false;

  async #close(reason: string, status: BroadcastEndStatus, handOver: boolean): Promise<void> {
    this.#end = { status, reason };
    this.#handedOver = handOver;
    const problems: string[] = [];
    const step = async (name: string, fn: () => Promise<unknown> | unknown) => {
      try {
        await fn();
      } catch (err) {
        problems.push(`${name}: ${err instanceof Error ? err.message : String(err)}`);
        this.#log.error(`could not close the broadcast's ${name}`, { error: err instanceof Error ? err.stack : String(err) });
      }
    };
    // Open speaking intervals end at the programme's end; the mix then finishes its last segment and ENDLIST, which
    // the sink still sees; the usage ticks stop.
    await step('timeline', () => this.timeline.close());
    await step('mixer', () => this.mixer.stop());
    await step('archive sink', () => this.#sink?.close());
    await step('usage ticks', () => this.#usage.close());
    const at = new Date().toISOString();
    const writes = this.#services.writes;
    for (const performerId of this.#onAir) void writes.write('performer.offAir', { broadcastId: this.id, performerId, at });
    this.#onAir.clear();
    // In order after the segments' rows (one write-behind): once the end is recorded, the archive has every segment.
    if (!handOver) void writes.write('stage.status', { stageId: this.stageId, status: 'ended' });
    const ended = writes.write('broadcast.end', { broadcastId: this.id, reason, status, at });
    this.#recorded = ended;
    void ended.then((written) => {
      if (written) this.#services.archive?.finalizeSoon(this.id);
    });
    const level = status === 'complete' ? 'info' : 'error';
    this.#log[level]('off air', { reason, status, ...(problems.length > 0 ? { problems } : {}) });
    const ffmpeg = { restarts: this.mixer.ffmpeg.restarts, failure: this.mixer.ffmpeg.failure };
    this.#services.ended({ stageId: this.stageId, broadcastId: this.id, status, reason, problems, ffmpeg, at: new Date(at) });
    this.emit('@close', status, reason);
    this.removeAllListeners();
  }
}
