import crypto from 'node:crypto';
import type { Server as HttpServer } from 'node:http';
import type { types as ms } from 'mediasoup';
import { Server, type Namespace, type Socket } from 'socket.io';
import type { Logger } from '../logger.ts';
import { RequestError } from '../sfu/errors.ts';
import type { Performer } from '../sfu/performer.ts';
import type { StageRegistry } from '../sfu/registry.ts';
import type { Stage } from '../sfu/stage.ts';
import {
  MAX_MESSAGE_BYTES,
  STAGE_NAMESPACE,
  requestSchemas,
  type ClientToServerEvents,
  type RequestName,
  type RequestPayload,
  type ResponseData,
  type ServerToClientEvents,
} from '../shared/protocol.ts';
import type { StageService } from '../stages.ts';
import { DATA_HEADERS } from '../http/guards.ts';
import { clientAddress } from '../http/util.ts';
import { KeyedLimits, RateLimiter } from './rateLimit.ts';
import { handleRequest, refuseUnknown } from './requests.ts';

type StageSocket = Socket<ClientToServerEvents, ServerToClientEvents>;

/** What one connection has joined: its stage and performer, and the listeners it must remove on leave. */
interface Membership {
  stage: Stage;
  performer: Performer;
  detach: () => void;
}

/** Reasons a performer leaves that the connection itself caused; any other reason asks the page to rejoin. */
const SELF_REASONS = new Set(['left', 'disconnected']);

export class SignalingServer {
  readonly io: Server;
  readonly #nsp: Namespace<ClientToServerEvents, ServerToClientEvents>;
  readonly #registry: StageRegistry;
  readonly #stages: StageService;
  readonly #log: Logger;
  /** Performers' timeline events per stage: 10 at once, then one every 0.5 s. */
  readonly #eventLimiter = new RateLimiter({ capacity: 10, perSecond: 2 });
  /** Join attempts (right key or wrong) per client address and per stage. */
  readonly #joinLimits: KeyedLimits;
  #closed = false;

  constructor(args: { httpServer: HttpServer; registry: StageRegistry; stages: StageService; log: Logger; joinsPerMinute?: number }) {
    this.#registry = args.registry;
    this.#stages = args.stages;
    this.#log = args.log.child({ component: 'signaling' });
    this.#joinLimits = new KeyedLimits(args.joinsPerMinute ?? 30);
    // maxHttpBufferSize caps WebSocket messages and HTTP long-polling bodies alike (a larger POST gets 413).
    // A connection that vanished without closing (a network switch) is noticed within 20 s, not Socket.IO's default 45 s:
    // until then its performer holds a seat and a mix slot.
    this.io = new Server(args.httpServer, { maxHttpBufferSize: MAX_MESSAGE_BYTES, serveClient: false, pingInterval: 10_000, pingTimeout: 10_000 });
    this.io.engine.on('headers', (headers: Record<string, string>) => Object.assign(headers, DATA_HEADERS));
    this.#nsp = this.io.of(STAGE_NAMESPACE);
    this.#nsp.on('connection', (socket) => this.#onConnection(socket));
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

    const handlers: { [E in RequestName]: (payload: RequestPayload<E>) => Promise<ResponseData[E]> } = {
      join: async ({ stageId, key, displayName }) => {
        this.#stages.assertAccepting();
        // Counted before the key is checked: guessing keys is slowed down as much as flooding joins.
        const wait = this.#joinLimits.take(address, stageId);
        if (wait > 0) {
          log.debug('join rate-limited', { stageId, address });
          throw new RequestError('RATE_LIMITED', `too many join attempts; retry in ${wait} s`);
        }
        if (membership) throw new RequestError('ALREADY_JOINED', 'this connection already joined a stage');
        const record = await this.#stages.authorize(stageId, key);
        const stage = await this.#registry.open(stageId);
        await stage.whenReady();
        if (membership) throw new RequestError('ALREADY_JOINED', 'this connection already joined a stage');
        if (socket.disconnected) throw new RequestError('INVALID_STATE', 'disconnected');
        const performer = stage.addPerformer(crypto.randomUUID(), displayName);
        membership = { stage, performer, detach: this.#bind(socket, stage, performer, () => (membership = null)) };
        await socket.join(roomOf(stageId));
        log.info('performer joined', { stageId, performerId: performer.id });
        return {
          performerId: performer.id,
          stage: { id: record.id, title: record.title, status: record.status },
          routerRtpCapabilities: stage.rtpCapabilities,
          performers: stage.performers.filter((p) => p !== performer).map((p) => p.info()),
        };
      },
      createTransport: async ({ direction }) => joined().performer.createTransport(direction),
      connectTransport: async ({ transportId, dtlsParameters }) => {
        await joined().performer.connectTransport(transportId, dtlsParameters as unknown as ms.DtlsParameters);
        return {};
      },
      produce: async ({ transportId, rtpParameters }) => {
        const producer = await joined().performer.produce(transportId, rtpParameters as unknown as ms.RtpParameters);
        return { producerId: producer.id };
      },
      consume: async ({ producerId, rtpCapabilities }) => {
        const { stage, performer } = joined();
        const found = stage.producer(producerId);
        if (!found) throw new RequestError('NOT_FOUND', `no producer ${producerId} on this stage`);
        const consumer = await performer.consume(found.producer, found.performerId, rtpCapabilities as unknown as ms.RtpCapabilities);
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
      startBroadcast: async () => ({ status: (await this.#stages.start(joined().stage.id)).view.status }),
      stopBroadcast: async () => ({ status: (await this.#stages.stop(joined().stage.id)).view.status }),
      postEvent: async (event) => {
        const { stage, performer } = joined();
        const timeline = this.#stages.timeline;
        if (!timeline) throw new RequestError('UNAVAILABLE', 'the timeline is not available');
        if (!this.#eventLimiter.take(stage.id)) throw new RequestError('RATE_LIMITED', 'too many events on this stage; slow down');
        return { event: timeline.post(stage.id, event, { kind: 'performer', performerId: performer.id, displayName: performer.displayName }) };
      },
    };

    for (const name of Object.keys(requestSchemas) as RequestName[]) {
      socket.on(name, (...args: unknown[]) => {
        void handleRequest(requestSchemas, name, args, handlers[name] as (p: unknown) => Promise<unknown>, log);
      });
    }
    socket.onAny((event: unknown, ...args: unknown[]) => refuseUnknown(requestSchemas, event, args));
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
      if (!SELF_REASONS.has(reason)) socket.emit('rejoin', { reason });
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
