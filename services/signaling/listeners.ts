// The listener namespace (/listen): a listener subscribes to a stage's timeline (chapters, tracks, markers,
// comments, who is speaking) and its on-air status, and may post comments, rate-limited per connection, per address
// and per stage. The contract is services/shared/listen.ts.
import crypto from 'node:crypto';
import type { types as ms } from 'mediasoup';
import type { Server, Socket } from 'socket.io';
import type { CallDesk } from '../calls/desk.ts';
import type { Performer } from '../sfu/performer.ts';
import type { CallView } from '../shared/calls.ts';
import type { ClusterLink } from '../cluster/events.ts';
import { RequestError, WrongNodeError } from '../errors.ts';
import { clientAddress } from '../http/util.ts';
import { RateLimiter } from '../limits.ts';
import type { Logger } from '../logger.ts';
import type { StageRegistry } from '../sfu/registry.ts';
import type { Stage } from '../sfu/stage.ts';
import type { RequestHandlers } from '../shared/contract.ts';
import { LISTEN_NAMESPACE, listenContract, type ListenClientEvents, type ListenContract, type ListenServerEvents } from '../shared/listen.ts';
import type { TimelineEvent } from '../shared/timeline.ts';
import type { StageCatalog } from '../stages/catalog.ts';
import type { TimelineService } from '../timeline/service.ts';
import { serveRequests } from './requests.ts';

/** Comments: per connection 3 at once then one per 3 s; per address 10 then one per 2 s; per stage 30 then 5/s. */
const LIMITS = {
  socket: { capacity: 3, perSecond: 1 / 3 },
  address: { capacity: 10, perSecond: 0.5 },
  stage: { capacity: 30, perSecond: 5 },
};

const roomOf = (stageId: string) => `listen:${stageId}`;

/** Cluster mode: how long a comment posted on a node that does not serve the stage waits for the owner's answer. */
const RELAY_TIMEOUT_MS = 3000;

/** A comment passed to the stage's owner (cluster mode), and its answer. */
interface RelayedComment {
  stageId: string;
  listenerId: string;
  input: { text: string; name: string; playingDate?: string };
}
type RelayAnswer = { event: TimelineEvent } | { error: { code: RequestError['code']; message: string; retryAfterSeconds?: number } };

type ListenSocket = Socket<ListenClientEvents, ListenServerEvents>;

export class ListenerSignaling {
  readonly #stages: StageCatalog;
  readonly #registry: StageRegistry;
  readonly #timeline: TimelineService;
  readonly #log: Logger;
  readonly #bySocket = new RateLimiter(LIMITS.socket);
  readonly #byAddress = new RateLimiter(LIMITS.address);
  readonly #byStage = new RateLimiter(LIMITS.stage);
  readonly #subscribes = new RateLimiter({ capacity: 5, perSecond: 1 });
  readonly #onEvent: (stageId: string, event: TimelineEvent) => void;
  readonly #onStageOpened: (stage: Stage) => void;
  readonly #calls: CallDesk;
  /** Connections by listener id: a call's changes go to its caller's connection. */
  readonly #sockets = new Map<string, ListenSocket>();
  /** What each caller on air is bound to (the stage's performer events), and its undo. */
  readonly #onCall = new Map<string, () => void>();
  readonly #onCallChanged = (listenerId: string, call: CallView) => this.#callChanged(listenerId, call);

  readonly #otherNodes: (() => Promise<string[]>) | null;
  readonly #cluster: ClusterLink | null;
  readonly #nsp: Server['sockets'];

  constructor(args: {
    io: Server;
    stages: StageCatalog;
    registry: StageRegistry;
    timeline: TimelineService;
    calls: CallDesk;
    log: Logger;
    /** Cluster mode: the other live nodes' URLs, for the page to try if this node stops answering. */
    otherNodes?: (() => Promise<string[]>) | null;
    /** Cluster mode: the namespace is joined across nodes, and comments reach the stage's owner (services/cluster/events.ts). */
    cluster?: ClusterLink | null;
  }) {
    this.#otherNodes = args.otherNodes ?? null;
    this.#cluster = args.cluster ?? null;
    this.#calls = args.calls;
    this.#calls.on('changed', this.#onCallChanged);
    this.#stages = args.stages;
    this.#registry = args.registry;
    this.#timeline = args.timeline;
    this.#log = args.log.child({ component: 'listeners' });
    const nsp = args.io.of(LISTEN_NAMESPACE);
    this.#nsp = nsp;
    if (this.#cluster) {
      this.#cluster.bus.attach(nsp);
      this.#cluster.bus.serve(nsp, 'comment', (payload) => this.#answerComment(payload));
    }
    nsp.on('connection', (socket: Socket<ListenClientEvents, ListenServerEvents>) => this.#onConnection(socket));
    this.#onEvent = (stageId, event) => {
      nsp.to(roomOf(stageId)).emit('timelineEvent', { event });
    };
    this.#timeline.on('event', this.#onEvent);
    // Listeners hear when the stage goes on and off air (their page starts or ends the player). A broadcast handed
    // over to another node (cluster mode) is not the show's end: that node says `live` when it continues.
    this.#onStageOpened = (stage) =>
      stage.on('onAirChanged', (live, handedOver) => {
        if (!live && handedOver) return;
        nsp.to(roomOf(stage.id)).emit('stageStatus', { status: live ? 'live' : 'ended' });
      });
    this.#registry.on('stageOpened', this.#onStageOpened);
  }

  #onConnection(socket: ListenSocket): void {
    let stageId: string | null = null;
    const listenerId = crypto.randomUUID();
    const address = clientAddress(socket.handshake.address, socket.handshake.headers['x-forwarded-for']);
    this.#sockets.set(listenerId, socket);
    const caller = (): Performer => this.#calls.callerOf(listenerId);
    const handlers: RequestHandlers<ListenContract> = {
      subscribe: async ({ stageId: id }) => {
        this.#subscribes.takeOrThrow(socket.id, 'too many subscribes; slow down');
        const rec = await this.#stages.record(id);
        if (!rec) throw new RequestError('NOT_FOUND', `no stage ${id}`);
        if (stageId && stageId !== id && this.#calls.callOf(listenerId)) throw new RequestError('INVALID_STATE', 'end your call before you change stages');
        if (stageId) await socket.leave(roomOf(stageId));
        stageId = id;
        await socket.join(roomOf(id));
        const snap = await this.#timeline.snapshot(id);
        return {
          stage: { id: rec.id, title: rec.title, status: rec.status },
          ...snap,
          ...(this.#otherNodes ? { nodes: await this.#otherNodes().catch(() => []) } : {}),
        };
      },
      comment: async (input) => {
        if (!stageId) throw new RequestError('NOT_JOINED', 'subscribe to a stage first');
        this.#bySocket.takeOrThrow(socket.id, 'you are commenting too fast');
        this.#byAddress.takeOrThrow(address, 'you are commenting too fast');
        if (this.#cluster && !this.#timeline.onAirHere(stageId)) return this.#relayComment({ stageId, listenerId, input: withoutUndefined(input) });
        this.#byStage.takeOrThrow(stageId, 'too many comments on this stage');
        return { event: this.#timeline.comment(stageId, input, listenerId) };
      },
      requestCall: async ({ name, topic }) => {
        if (!stageId) throw new RequestError('NOT_JOINED', 'subscribe to a stage first');
        const on = stageId;
        // Cluster mode: a call is taken where the stage's media is; the page moves there (WRONG_NODE, the owner's URL).
        if (this.#cluster && !this.#timeline.onAirHere(on)) {
          const owner = await this.#cluster.owner(on).catch(() => null);
          if (owner && owner.id !== this.#cluster.nodeId) throw new WrongNodeError(owner.url, owner.id);
        }
        return { call: await this.#calls.request({ stageId: on, listenerId, address, name, topic, stillThere: () => socket.connected && stageId === on }) };
      },
      endCall: async () => {
        this.#calls.cancel(listenerId, 'caller');
        return {};
      },
      createTransport: async ({ direction }) => caller().createTransport(direction),
      connectTransport: async ({ transportId, dtlsParameters }) => {
        await caller().connectTransport(transportId, dtlsParameters as ms.DtlsParameters);
        return {};
      },
      produce: async ({ transportId, rtpParameters }) => {
        const producer = await caller().produce(transportId, rtpParameters as ms.RtpParameters);
        this.#calls.produced(listenerId);
        return { producerId: producer.id };
      },
      consume: async ({ producerId, rtpCapabilities }) => {
        const performer = caller();
        const callStage = this.#calls.callStageOf(listenerId);
        const stage = callStage ? this.#registry.get(callStage) : undefined;
        const found = stage?.producer(producerId);
        if (!found) throw new RequestError('NOT_FOUND', `no producer ${producerId} on this stage`);
        const consumer = await performer.consume(found.producer, found.performerId, rtpCapabilities as ms.RtpCapabilities);
        return { consumerId: consumer.id, producerId, performerId: found.performerId, kind: 'audio', rtpParameters: consumer.rtpParameters };
      },
      resumeConsumer: async ({ consumerId }) => {
        await caller().resumeConsumer(consumerId);
        return {};
      },
    };
    serveRequests(socket, listenContract, handlers, this.#log);
    socket.on('disconnect', (reason) => {
      this.#sockets.delete(listenerId);
      // A page that said goodbye hung up; anything else lost its connection.
      this.#calls.listenerGone(listenerId, reason === 'client namespace disconnect' ? 'caller' : 'network');
      this.#onCall.get(listenerId)?.();
    });
  }

  /** Cluster mode: the comment goes to the node that serves the stage, which records it and broadcasts it. */
  async #relayComment(req: RelayedComment): Promise<{ event: TimelineEvent }> {
    const [answer] = (await this.#cluster!.bus.ask(this.#nsp, 'comment', req, { timeoutMs: RELAY_TIMEOUT_MS, enough: (n) => n >= 1 })) as RelayAnswer[];
    if (!answer) throw new RequestError('INVALID_STATE', 'the stage is not on air: events belong to a broadcast');
    if ('error' in answer) throw new RequestError(answer.error.code, answer.error.message, answer.error.retryAfterSeconds);
    return { event: answer.event };
  }

  /** Another node passed a listener's comment on (already checked against its contract and its sender's limits). */
  #answerComment(payload: unknown): RelayAnswer | null {
    const req = payload as RelayedComment;
    if (typeof req?.stageId !== 'string' || typeof req.listenerId !== 'string' || typeof req.input?.text !== 'string' || typeof req.input?.name !== 'string') return null;
    if (!this.#timeline.onAirHere(req.stageId)) return null;
    try {
      this.#byStage.takeOrThrow(req.stageId, 'too many comments on this stage');
      return { event: this.#timeline.comment(req.stageId, req.input, req.listenerId) };
    } catch (err) {
      if (!(err instanceof RequestError)) throw err;
      return { error: { code: err.code, message: err.message, ...(err.retryAfterSeconds !== undefined ? { retryAfterSeconds: err.retryAfterSeconds } : {}) } };
    }
  }

  /** A call changed: its caller hears it; an accepted call binds the caller to the stage's performers. */
  #callChanged(listenerId: string, call: CallView): void {
    const socket = this.#sockets.get(listenerId);
    const waiting = this.#calls.queue(call.stageId).filter((c) => c.status === 'waiting');
    const position = call.status === 'waiting' ? waiting.findIndex((c) => c.id === call.id) + 1 : null;
    socket?.emit('call', { call, position });
    if (call.status === 'waiting') return;
    if (call.status === 'accepted' && socket && !this.#onCall.has(listenerId)) {
      const stage = this.#registry.get(call.stageId);
      if (!stage) return;
      this.#onCall.set(listenerId, this.#bindCaller(socket, stage, call.id, listenerId));
      socket.emit('callAccepted', { call, routerRtpCapabilities: stage.rtpCapabilities, performers: stage.performers.filter((p) => p.id !== call.id).map((p) => p.info()) });
    }
    if (call.status !== 'accepted' && call.status !== 'on_air') this.#onCall.get(listenerId)?.();
    // Everyone still waiting on this stage moved up.
    for (const [i, w] of this.#calls.waitingOn(call.stageId).entries()) {
      this.#sockets.get(w.listenerId)?.emit('call', { call: w.call, position: i + 1 });
    }
  }

  /** While on air, the caller hears of the stage's performers as a performer does; returns the undo. */
  #bindCaller(socket: ListenSocket, stage: Stage, callId: string, listenerId: string): () => void {
    const onJoined = (p: Performer) => p.id !== callId && socket.emit('performerJoined', { performer: p.info() });
    const onUpdated = (p: Performer) => p.id !== callId && socket.emit('performerUpdated', { performer: p.info() });
    const onLeft = (performerId: string, reason: string) => performerId !== callId && socket.emit('performerLeft', { performerId, reason });
    stage.on('performerJoined', onJoined);
    stage.on('performerUpdated', onUpdated);
    stage.on('performerLeft', onLeft);
    return () => {
      stage.off('performerJoined', onJoined);
      stage.off('performerUpdated', onUpdated);
      stage.off('performerLeft', onLeft);
      this.#onCall.delete(listenerId);
    };
  }

  close(): void {
    this.#calls.off('changed', this.#onCallChanged);
    for (const undo of [...this.#onCall.values()]) undo();
    this.#timeline.off('event', this.#onEvent);
    this.#registry.off('stageOpened', this.#onStageOpened);
  }
}

function withoutUndefined(input: { text: string; name: string; playingDate?: string | undefined }): RelayedComment['input'] {
  return { text: input.text, name: input.name, ...(input.playingDate !== undefined ? { playingDate: input.playingDate } : {}) };
}
