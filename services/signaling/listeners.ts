// The listener namespace (/listen): a listener subscribes to a stage's timeline (chapters, tracks, markers,
// comments, who is speaking) and may post comments, rate-limited per connection, per address and per stage.
import crypto from 'node:crypto';
import type { Server, Socket } from 'socket.io';
import type { Logger } from '../logger.ts';
import { RequestError } from '../sfu/errors.ts';
import {
  LISTEN_NAMESPACE,
  listenerRequestSchemas,
  type ListenerRequestName,
  type ListenerRequestPayload,
  type ListenerResponseData,
  type ListenerServerEvents,
  type TimelineEvent,
} from '../shared/timeline.ts';
import type { StageService } from '../stages.ts';
import type { TimelineService } from '../timeline/service.ts';
import { RateLimiter } from './rateLimit.ts';
import { handleRequest, refuseUnknown } from './requests.ts';

/** Comments: per connection 3 at once then one per 3 s; per address 10 then one per 2 s; per stage 30 then 5/s. */
const LIMITS = {
  socket: { capacity: 3, perSecond: 1 / 3 },
  address: { capacity: 10, perSecond: 0.5 },
  stage: { capacity: 30, perSecond: 5 },
};

const roomOf = (stageId: string) => `listen:${stageId}`;

export class ListenerSignaling {
  readonly #stages: StageService;
  readonly #timeline: TimelineService;
  readonly #log: Logger;
  readonly #bySocket = new RateLimiter(LIMITS.socket);
  readonly #byAddress = new RateLimiter(LIMITS.address);
  readonly #byStage = new RateLimiter(LIMITS.stage);
  readonly #subscribes = new RateLimiter({ capacity: 5, perSecond: 1 });
  readonly #onEvent: (stageId: string, event: TimelineEvent) => void;

  constructor(args: { io: Server; stages: StageService; timeline: TimelineService; log: Logger }) {
    this.#stages = args.stages;
    this.#timeline = args.timeline;
    this.#log = args.log.child({ component: 'listeners' });
    const nsp = args.io.of(LISTEN_NAMESPACE);
    nsp.on('connection', (socket) => this.#onConnection(socket));
    this.#onEvent = (stageId, event) => {
      nsp.to(roomOf(stageId)).emit('timelineEvent', { event });
    };
    this.#timeline.on('event', this.#onEvent);
  }

  #onConnection(socket: Socket<Record<string, never>, ListenerServerEvents>): void {
    let stageId: string | null = null;
    const listenerId = crypto.randomUUID();
    const address = socket.handshake.address;
    const handlers: { [E in ListenerRequestName]: (p: ListenerRequestPayload<E>) => Promise<ListenerResponseData[E]> } = {
      subscribe: async ({ stageId: id }) => {
        if (!this.#subscribes.take(socket.id)) throw new RequestError('RATE_LIMITED', 'too many subscribes; slow down');
        const view = await this.#stages.view(id);
        if (!view) throw new RequestError('NOT_FOUND', `no stage ${id}`);
        if (stageId) await socket.leave(roomOf(stageId));
        stageId = id;
        await socket.join(roomOf(id));
        const snap = await this.#timeline.snapshot(id);
        return { stage: { id: view.id, title: view.title, status: view.status }, ...snap };
      },
      comment: async (input) => {
        if (!stageId) throw new RequestError('NOT_JOINED', 'subscribe to a stage first');
        if (!this.#bySocket.take(socket.id) || !this.#byAddress.take(address) || !this.#byStage.take(stageId)) {
          throw new RequestError('RATE_LIMITED', 'you are commenting too fast; wait a few seconds');
        }
        return { event: this.#timeline.comment(stageId, input, listenerId) };
      },
    };
    for (const name of Object.keys(listenerRequestSchemas) as ListenerRequestName[]) {
      socket.on(name as never, (...args: unknown[]) => {
        void handleRequest(listenerRequestSchemas, name, args, handlers[name] as (p: unknown) => Promise<unknown>, this.#log);
      });
    }
    socket.onAny((event: unknown, ...args: unknown[]) => refuseUnknown(listenerRequestSchemas, event, args));
  }

  close(): void {
    this.#timeline.off('event', this.#onEvent);
  }
}
