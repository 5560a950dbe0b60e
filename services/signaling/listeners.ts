// The listener namespace (/listen): a listener subscribes to a stage's timeline (chapters, tracks, markers,
// comments, who is speaking) and its on-air status, and may post comments, rate-limited per connection, per address
// and per stage. The contract is services/shared/listen.ts.
import crypto from 'node:crypto';
import type { Server, Socket } from 'socket.io';
import { RequestError } from '../errors.ts';
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

  constructor(args: { io: Server; stages: StageCatalog; registry: StageRegistry; timeline: TimelineService; log: Logger }) {
    this.#stages = args.stages;
    this.#registry = args.registry;
    this.#timeline = args.timeline;
    this.#log = args.log.child({ component: 'listeners' });
    const nsp = args.io.of(LISTEN_NAMESPACE);
    nsp.on('connection', (socket: Socket<ListenClientEvents, ListenServerEvents>) => this.#onConnection(socket));
    this.#onEvent = (stageId, event) => {
      nsp.to(roomOf(stageId)).emit('timelineEvent', { event });
    };
    this.#timeline.on('event', this.#onEvent);
    // Listeners hear when the stage goes on and off air (their page starts or ends the player).
    this.#onStageOpened = (stage) => stage.on('onAirChanged', (live) => nsp.to(roomOf(stage.id)).emit('stageStatus', { status: live ? 'live' : 'ended' }));
    this.#registry.on('stageOpened', this.#onStageOpened);
  }

  #onConnection(socket: Socket<ListenClientEvents, ListenServerEvents>): void {
    let stageId: string | null = null;
    const listenerId = crypto.randomUUID();
    const address = clientAddress(socket.handshake.address, socket.handshake.headers['x-forwarded-for']);
    const handlers: RequestHandlers<ListenContract> = {
      subscribe: async ({ stageId: id }) => {
        this.#subscribes.takeOrThrow(socket.id, 'too many subscribes; slow down');
        const rec = await this.#stages.record(id);
        if (!rec) throw new RequestError('NOT_FOUND', `no stage ${id}`);
        if (stageId) await socket.leave(roomOf(stageId));
        stageId = id;
        await socket.join(roomOf(id));
        const snap = await this.#timeline.snapshot(id);
        return { stage: { id: rec.id, title: rec.title, status: rec.status }, ...snap };
      },
      comment: async (input) => {
        if (!stageId) throw new RequestError('NOT_JOINED', 'subscribe to a stage first');
        this.#bySocket.takeOrThrow(socket.id, 'you are commenting too fast');
        this.#byAddress.takeOrThrow(address, 'you are commenting too fast');
        this.#byStage.takeOrThrow(stageId, 'too many comments on this stage');
        return { event: this.#timeline.comment(stageId, input, listenerId) };
      },
    };
    serveRequests(socket, listenContract, handlers, this.#log);
  }

  close(): void {
    this.#timeline.off('event', this.#onEvent);
    this.#registry.off('stageOpened', this.#onStageOpened);
  }
}
