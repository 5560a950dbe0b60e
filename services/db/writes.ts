// The database writes that must outlive a database outage and a crash, by kind: each is journaled on local disk and
// run through the write-behind (services/db/writeBehind.ts), in order. Data is plain JSON (dates as ISO strings), so
// a journal written by one run replays in the next. Every executor is idempotent: a replay may repeat a write that
// committed just before a crash, and must not change anything the second time.
import type { Db } from './db.ts';
import { ArchiveRepo, type NewArchiveObject } from './archive.ts';
import { CallRepo, type CallRecord } from './calls.ts';
import type { CallEvent, CallEventType } from '../shared/calls.ts';
import { BroadcastRepo, type BroadcastEndStatus, UsageRepo } from './broadcasts.ts';
import { PerformerSessionRepo, StageRepo, type StageStatus } from './repositories.ts';
import { LeaseRepo, type LeaseEndReason } from './leases.ts';
import { TimelineRepo, type StoredEvent } from './timeline.ts';

type Queryable = Pick<Db, 'query'>;

/** A timeline event as journaled: StoredEvent with its date as an ISO string. */
export type StoredEventJson = Omit<StoredEvent, 'at'> & { at: string };

export interface WriteKinds {
  /** A chapter, track, marker, comment or speaking interval (an upsert by id: a speaking interval gets its end). */
  'timeline.event': StoredEventJson;
  'performer.onAir': { broadcastId: string; performerId: string; displayName: string; at: string };
  'performer.offAir': { broadcastId: string; performerId: string; at: string };
  'session.open': { id: string; performerId: string; stageId: string; displayName: string; at: string };
  'session.close': { id: string; reason: string; at: string };
  'usage.ticks': { ticks: { broadcastId: string; stageId: string; performerId: string | null; minute: string }[] };
  /**
   * A finished segment's upload row, or its FFmpeg run's init section's (its description: size, sha256, run, programme
   * position).
   */
  'archive.object': NewArchiveObject;
  'stage.status': { stageId: string; status: StageStatus };
  'broadcast.end': { broadcastId: string; reason: string; status: BroadcastEndStatus; at: string };
  /** Cluster mode: this node took a stage's lease (a holding), or stopped holding it. */
  'lease.taken': { id: string; stageId: string; nodeId: string; at: string };
  'lease.ended': { id: string; reason: LeaseEndReason; at: string };
  /** A call's state (absolute values) and the event that brought it there. */
  'call.record': { call: CallRecord; event: { seq: number; type: CallEventType; at: string; data: CallEvent['data'] } | null };
}

export type WriteKind = keyof WriteKinds;

export type WriteExecutors = { [K in WriteKind]: (db: Queryable, data: WriteKinds[K]) => Promise<unknown> };

export const WRITE_EXECUTORS: WriteExecutors = {
  'timeline.event': (db, e) => new TimelineRepo(db).insert([{ ...e, at: new Date(e.at) }]),
  'performer.onAir': (db, d) => new BroadcastRepo(db).performerOnAir(d),
  'performer.offAir': (db, d) => new BroadcastRepo(db).performerOffAir(d.broadcastId, d.performerId, d.at),
  'session.open': (db, d) => new PerformerSessionRepo(db).open(d),
  'session.close': (db, d) => new PerformerSessionRepo(db).close(d.id, d.reason, d.at),
  'usage.ticks': (db, d) => new UsageRepo(db).recordTicks(d.ticks.map((t) => ({ ...t, minute: new Date(t.minute) }))),
  'archive.object': (db, o) => new ArchiveRepo(db).enqueue(o),
  'stage.status': (db, d) => new StageRepo(db).setStatus(d.stageId, d.status),
  'broadcast.end': (db, d) => new BroadcastRepo(db).end(d.broadcastId, d.reason, d.status, d.at),
  'call.record': (db, d) => new CallRepo(db).record(d.call, d.event),
  'lease.taken': (db, d) => new LeaseRepo(db).taken(d),
  'lease.ended': (db, d) => new LeaseRepo(db).ended(d),
};

export function toStoredEventJson(e: StoredEvent): StoredEventJson {
  return { ...e, at: e.at.toISOString() };
}
