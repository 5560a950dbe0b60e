// The timeline, app-wide: where REST and Socket.IO post events (through one budget per stage, so using both paths
// does not double it), the bus every broadcast's events go out on (listeners, admin), and snapshots of a stage's
// current or last broadcast. Each broadcast's own timeline (its clock, speaking, DATERANGE) is its child:
// services/broadcast/liveTimeline.ts.
import { EventEmitter } from 'node:events';
import { ArchiveRepo } from '../db/archive.ts';
import type { Db } from '../db/db.ts';
import { TimelineRepo } from '../db/timeline.ts';
import { RequestError } from '../errors.ts';
import { RateLimiter } from '../limits.ts';
import type { LiveTimeline } from '../broadcast/liveTimeline.ts';
import { expandEvent } from '../broadcast/liveTimeline.ts';
import type { StageRegistry } from '../sfu/registry.ts';
import { EVENT_BURST, EVENTS_PER_SECOND, type PerformerEvent, type TimelineEvent, type TimelineSnapshot } from '../shared/timeline.ts';

type TimelineEvents = { event: [stageId: string, event: TimelineEvent] };

export class TimelineService extends EventEmitter<TimelineEvents> {
  readonly repo: TimelineRepo;
  readonly #archive: ArchiveRepo;
  readonly #registry: StageRegistry;
  /** Performers' and admins' events per stage, REST and Socket.IO together. */
  readonly #budget = new RateLimiter({ capacity: EVENT_BURST, perSecond: EVENTS_PER_SECOND });

  constructor(args: { db: Db; registry: StageRegistry }) {
    super();
    this.repo = new TimelineRepo(args.db);
    this.#archive = new ArchiveRepo(args.db);
    this.#registry = args.registry;
  }

  /** A broadcast's event, as it happens: out to every onlooker. */
  publish(stageId: string, event: TimelineEvent): void {
    this.emit('event', stageId, event);
  }

  /** The stage's open broadcast on this node, or null when it is on air nowhere here (in a cluster: maybe elsewhere). */
  #open(stageId: string) {
    const broadcast = this.#registry.get(stageId)?.broadcast;
    return broadcast && !broadcast.closed ? broadcast : null;
  }

  /** Whether this node serves a broadcast of the stage: only here can its events be posted. */
  onAirHere(stageId: string): boolean {
    return this.#open(stageId) !== null;
  }

  #live(stageId: string): LiveTimeline {
    const broadcast = this.#open(stageId);
    if (!broadcast) throw new RequestError('INVALID_STATE', 'the stage is not on air: events belong to a broadcast');
    return broadcast.timeline;
  }

  /** A chapter, track or marker, at the poster's place on the programme clock. RATE_LIMITED past the stage's budget. */
  post(stageId: string, input: PerformerEvent, author: { kind: 'performer' | 'admin'; performerId?: string; displayName?: string }): TimelineEvent {
    const live = this.#live(stageId);
    this.#budget.takeOrThrow(stageId, 'too many events on this stage; slow down');
    return live.post(input, author);
  }

  /** A listener's comment (its limits are the /listen namespace's). */
  comment(stageId: string, input: { text: string; name: string; playingDate?: string | undefined }, listenerId: string): TimelineEvent {
    return this.#live(stageId).comment(input, listenerId);
  }

  /** The stage's current (or last) broadcast with its events, for a listener that subscribes. */
  async snapshot(stageId: string, limit = 500): Promise<TimelineSnapshot> {
    const broadcast = this.#open(stageId);
    if (broadcast) return broadcast.timeline.snapshot(this.repo, limit);
    const last = (await this.#archive.recordingsForStage(stageId))[0];
    if (!last) return { broadcastId: null, originDate: null, events: [] };
    const origin = last.originAt?.toISOString() ?? null;
    const events = await this.repo.list(last.id, limit);
    return { broadcastId: last.id, originDate: origin, events: events.flatMap((e) => expandEvent(e, origin)) };
  }
}
