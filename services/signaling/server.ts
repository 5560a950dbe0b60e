import crypto from 'node:crypto';
import type { Server as HttpServer } from 'node:http';
import type { types as ms } from 'mediasoup';
import { Server, type Namespace, type Socket } from 'socket.io';
import type { Admission } from '../admission.ts';
import type { CallDesk } from '../calls/desk.ts';
import type { OnAir } from '../broadcast/onAir.ts';
import { RequestError } from '../errors.ts';
import { DATA_HEADERS } from '../http/guards.ts';
import { clientAddress } from '../http/util.ts';
import { KeyedLimits, type SharedBuckets } from '../limits.ts';
import type { Logger } from '../logger.ts';
import type { Performer } from '../sfu/performer.ts';
import type { StageRegistry } from '../sfu/registry.ts';
import type { Stage } from '../sfu/stage.ts';
import type { RequestHandlers } from '../shared/contract.ts';
import { MAX_MESSAGE_BYTES, STAGE_NAMESPACE, stageContract, type StageClientEvents, type StageContract, type StageServerEvents } from '../shared/stage.ts';
import type { StageCatalog } from '../stages/catalog.ts';
import type { TimelineService } from '../timeline/service.ts';
import { serveRequests } from './requests.ts';
import { LocalResumeStore, type ResumeStore } from './resume.ts';

type StageSocket = Socket<StageClientEvents, StageServerEvents>;

/** What one connection has joined: its stage and performer, and the listeners it must remove on leave. */
interface Membership {
  stage: Stage;
  performer: Performer;
  detach: () => void;
}

/** Reasons a performer leaves that the connection itself caused; any other reason asks the page to rejoin. */
const SELF_REASONS = new Set(['left', 'disconnected']);
/** The performer continued on another connection (a resume): this one is told so, and not asked to rejoin. */
const RESUMED = 'resumed on another connection';

export class SignalingServer {
  readonly io: Server;
  readonly #nsp: Namespace<StageClientEvents, StageServerEvents>;
  readonly #registry: StageRegistry;
  readonly #stages: StageCatalog;
  readonly #onAir: OnAir;
  readonly #timeline: TimelineService;
  readonly #admission: Admission;
  readonly #log: Logger;
  /** Join attempts (right key or wrong) per client address and per stage. */
  readonly #joinLimits: KeyedLimits;
  readonly #resume: ResumeStore;
  readonly #onStageOpened = (stage: Stage) => stage.once('@close', () => this.#resume.stageClosed(stage.id));
  readonly #calls: CallDesk;
  readonly #onQueue = (stageId: string) => this.#nsp.to(roomOf(stageId)).emit('callQueue', { calls: this.#calls.queue(stageId) });
  #closed = false;
  readonly #otherNodes: (() => Promise<string[]>) | null;

  constructor(args: {
    httpServer: HttpServer;
    registry: StageRegistry;
    stages: StageCatalog;
    onAir: OnAir;
    timeline: TimelineService;
    admission: Admission;
    calls: CallDesk;
    log: Logger;
    joinsPerMinute?: number;
    /** Cluster mode: the other live nodes' URLs, for the pages to try if this node stops answering. */
    otherNodes?: (() => Promise<string[]>) | null;
    /** Cluster mode: the join limits' buckets, shared by every node. */
    sharedLimits?: SharedBuckets | null;
    /** Cluster mode: resume tokens every node can redeem (a performer moving with their stage stays the same). */
    resumeTokens?: ResumeStore | null;
  }) {
    this.#resume = args.resumeTokens ?? new LocalResumeStore();
    this.#otherNodes = args.otherNodes ?? null;
    this.#calls = args.calls;
    this.#calls.on('queue', this.#onQueue);
    this.#registry = args.registry;
    this.#stages = args.stages;
    this.#onAir = args.onAir;
    this.#timeline = args.timeline;
    this.#admission = args.admission;
    this.#log = args.log.child({ component: 'signaling' });
    this.#joinLimits = new KeyedLimits(args.joinsPerMinute ?? 30, 2, args.sharedLimits ? { buckets: args.sharedLimits, name: 'join' } : null);
    // maxHttpBufferSize caps WebSocket messages and HTTP long-polling bodies alike (a larger POST gets 413).
    // A connection that vanished without closing (a network switch) is noticed within 20 s, not Socket.IO's default 45 s:
    // until then its performer holds a seat and a mix slot.
    this.io = new Server(args.httpServer, { maxHttpBufferSize: MAX_MESSAGE_BYTES, serveClient: false, pingInterval: 10_000, pingTimeout: 10_000 });
    this.io.engine.on('headers', (headers: Record<string, string>) => Object.assign(headers, DATA_HEADERS));
    this.#nsp = this.io.of(STAGE_NAMESPACE);
    this.#nsp.on('connection', (socket) => this.#onConnection(socket));
    this.#registry.on('stageOpened', this.#onStageOpened);
  }

  #onConnection(socket: StageSocket): void {
    let membership: Membership | null = null;
    const log = this.#log.child({ socketId: socket.id });
    const address = clientAddress(socket.handshake.address, socket.handshake.headers['x-forwarded-for']);

    const leave = (reason: string) => {
      if (!membership) return;
      const m = membership;
      membership = null;
      m.detach();
      m.performer.close(reason);
      void socket.leave(roomOf(m.stage.id));
    };

    const joined = (): Membership => {
      if (!membership) throw new RequestError('NOT_JOINED', 'join a stage first');
      return membership;
    };
    /** Call-in actions: a performer of this stage only (checked here, whatever the page shows). */
    const host = (): Membership => {
      const m = joined();
      if (m.performer.role !== 'performer') throw new RequestError('UNAUTHORIZED', 'only a performer may take, mute or end calls');
      return m;
    };

    const handlers: RequestHandlers<StageContract> = {
      join: async ({ stageId, key, displayName, resume }) => {
        this.#admission.assertAccepting();
        // Counted before the key is checked: guessing keys is slowed down as much as flooding joins.
        const wait = await this.#joinLimits.takeShared(address, stageId);
        if (wait > 0) {
          log.debug('join rate-limited', { stageId, address });
          throw new RequestError('RATE_LIMITED', `too many join attempts; retry in ${wait} s`, wait);
        }
        if (membership) throw new RequestError('ALREADY_JOINED', 'this connection already joined a stage');
        const record = await this.#stages.authorize(stageId, key);
        const stage = await this.#registry.open(stageId);
        await stage.whenReady();
        if (membership) throw new RequestError('ALREADY_JOINED', 'this connection already joined a stage');
        if (socket.disconnected) throw new RequestError('INVALID_STATE', 'disconnected');
        // A resume continues the same performer: their earlier connection (if the server has not noticed it is gone
        // yet) gives way, and the new one takes its id, its track and its place on the timeline.
        const resumedId = resume ? await this.#resume.redeem(stageId, resume) : null;
        if (membership) throw new RequestError('ALREADY_JOINED', 'this connection already joined a stage');
        if (socket.disconnected) throw new RequestError('INVALID_STATE', 'disconnected');
        stage.performer(resumedId ?? '')?.close(RESUMED);
        const performer = stage.addPerformer(resumedId ?? crypto.randomUUID(), displayName);
        membership = { stage, performer, detach: this.#bind(socket, stage, performer, () => (membership = null)) };
        await socket.join(roomOf(stageId));
        // The call queue as it is now; every change follows (callQueue to the stage's room).
        queueMicrotask(() => socket.emit('callQueue', { calls: this.#calls.queue(stageId) }));
        log.info('performer joined', { stageId, performerId: performer.id, resumed: resumedId !== null });
        return {
          performerId: performer.id,
          resumeToken: await this.#resume.issue(stageId, performer.id),
          resumed: resumedId !== null,
          stage: record,
          routerRtpCapabilities: stage.rtpCapabilities,
          performers: stage.performers.filter((p) => p !== performer).map((p) => p.info()),
          ...(this.#otherNodes ? { nodes: await this.#otherNodes().catch(() => []) } : {}),
        };
      },
      createTransport: async ({ direction }) => joined().performer.createTransport(direction),
      connectTransport: async ({ transportId, dtlsParameters }) => {
        await joined().performer.connectTransport(transportId, dtlsParameters as ms.DtlsParameters);
        return {};
      },
      produce: async ({ transportId, rtpParameters }) => {
        const producer = await joined().performer.produce(transportId, rtpParameters as ms.RtpParameters);
        return { producerId: producer.id };
      },
      consume: async ({ producerId, rtpCapabilities }) => {
        const { stage, performer } = joined();
        const found = stage.producer(producerId);
        if (!found) throw new RequestError('NOT_FOUND', `no producer ${producerId} on this stage`);
        const consumer = await performer.consume(found.producer, found.performerId, rtpCapabilities as ms.RtpCapabilities);
        return {
          consumerId: consumer.id,
          producerId,
          performerId: found.performerId,
          kind: 'audio',
          rtpParameters: consumer.rtpParameters,
        };
      },
      resumeConsumer: async ({ consumerId }) => {
        await joined().performer.resumeConsumer(consumerId);
        return {};
      },
      setMuted: async ({ muted }) => {
        joined().performer.setMuted(muted);
        return {};
      },
      restartIce: async ({ transportId }) => ({ iceParameters: await joined().performer.restartIce(transportId) }),
      leave: async () => {
        joined();
        leave('left');
        return {};
      },
      startBroadcast: async () => ({ status: (await this.#onAir.start(joined().stage.id)).view.status }),
      stopBroadcast: async () => ({ status: (await this.#onAir.stop(joined().stage.id)).view.status }),
      postEvent: async (event) => {
        const { stage, performer } = joined();
        return { event: this.#timeline.post(stage.id, event, { kind: 'performer', performerId: performer.id, displayName: performer.displayName }) };
      },
      acceptCall: async ({ callId }) => {
        const { stage, performer } = host();
        return { call: this.#calls.accept(stage.id, callId, performer.id) };
      },
      declineCall: async ({ callId }) => {
        const { stage, performer } = host();
        return { call: this.#calls.decline(stage.id, callId, performer.id) };
      },
      muteCall: async ({ callId, muted }) => ({ call: await this.#calls.mute(host().stage.id, callId, muted) }),
      hangUpCall: async ({ callId }) => {
        const { stage, performer } = host();
        return { call: this.#calls.hangUp(stage.id, callId, performer.id) };
      },
    };

    serveRequests(socket, stageContract, handlers, log);
    socket.on('disconnect', (reason) => {
      log.debug('socket disconnected', { reason });
      leave('disconnected');
    });
  }

  /** Forwards the stage's and the performer's events to this socket; returns the undo. */
  #bind(socket: StageSocket, stage: Stage, performer: Performer, onDropped: () => void): () => void {
    const onJoined = (p: Performer) => {
      if (p !== performer) socket.emit('performerJoined', { performer: p.info() });
    };
    const onLeft = (performerId: string, reason: string) => {
      if (performerId !== performer.id) socket.emit('performerLeft', { performerId, reason });
    };
    const onUpdated = (p: Performer) => {
      if (p !== performer) socket.emit('performerUpdated', { performer: p.info() });
    };
    const onLevels = (levels: { performerId: string; volume: number }[]) => socket.volatile.emit('audioLevels', { levels });
    const onAir = (live: boolean) => socket.emit('stageStatus', { status: live ? 'live' : 'ended' });
    const onConsumerClosed = (consumerId: string, producerId: string) => socket.emit('consumerClosed', { consumerId, producerId });
    const onPerformerClosed = (reason: string) => {
      detach();
      onDropped();
      void socket.leave(roomOf(stage.id));
      if (reason === RESUMED) socket.emit('replaced', { reason });
      else if (!SELF_REASONS.has(reason)) socket.emit('rejoin', { reason });
    };
    stage.on('performerJoined', onJoined);
    stage.on('performerLeft', onLeft);
    stage.on('performerUpdated', onUpdated);
    stage.on('audioLevels', onLevels);
    stage.on('onAirChanged', onAir);
    performer.on('consumerClosed', onConsumerClosed);
    performer.once('@close', onPerformerClosed);
    const detach = () => {
      stage.off('performerJoined', onJoined);
      stage.off('performerLeft', onLeft);
      stage.off('performerUpdated', onUpdated);
      stage.off('audioLevels', onLevels);
      stage.off('onAirChanged', onAir);
      performer.off('consumerClosed', onConsumerClosed);
      performer.off('@close', onPerformerClosed);
    };
    return detach;
  }

  /** Idempotent. Disconnects every client and stops accepting new ones. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#registry.off('stageOpened', this.#onStageOpened);
    this.#calls.off('queue', this.#onQueue);
    this.#nsp.disconnectSockets(true);
    await new Promise<void>((resolve) => {
      // io.close() also closes the HTTP server it is attached to; the app closes that itself.
      this.io.engine.close();
      resolve();
    });
  }
}

function roomOf(stageId: string): string {
  return `stage:${stageId}`;
}
