// Timeline events (sql/004_timeline.sql): chapters, tracks, markers, comments and speaking intervals of a broadcast.
import type { TimelineEventType } from '../shared/timeline.ts';
import type { Db } from './db.ts';
import { toDate } from './rows.ts';

type Queryable = Pick<Db, 'query'>;

export interface StoredEvent {
  id: string;
  broadcastId: string;
  stageId: string;
  type: TimelineEventType;
  at: Date;
  mediaTime: number;
  endMediaTime: number | null;
  authorKind: 'performer' | 'admin' | 'listener' | 'server';
  authorId: string | null;
  data: Record<string, string | boolean>;
}

interface Row {
  id: string;
  broadcast_id: string;
  stage_id: string;
  type: TimelineEventType;
  at: unknown;
  media_time: number;
  end_media_time: number | null;
  author_kind: StoredEvent['authorKind'];
  author_id: string | null;
  data: unknown;
}

const COLUMNS = 'id, broadcast_id, stage_id, type, at, media_time, end_media_time, author_kind, author_id, data';

function fromRow(r: Row): StoredEvent {
  return {
    id: r.id,
    broadcastId: r.broadcast_id,
    stageId: r.stage_id,
    type: r.type,
    at: toDate(r.at),
    mediaTime: r.media_time,
    endMediaTime: r.end_media_time,
    authorKind: r.author_kind,
    authorId: r.author_id,
    data: (typeof r.data === 'string' ? JSON.parse(r.data) : r.data) as StoredEvent['data'],
  };
}

export class TimelineRepo {
  constructor(private readonly db: Queryable) {}

  /** Inserts events (idempotent per id). */
  async insert(events: readonly StoredEvent[]): Promise<void> {
    for (const e of events) {
      await this.db.query(
        `insert into timeline_events (${COLUMNS}) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb)
         on conflict (id) do update set end_media_time = excluded.end_media_time`,
        [e.id, e.broadcastId, e.stageId, e.type, e.at, e.mediaTime, e.endMediaTime, e.authorKind, e.authorId, JSON.stringify(e.data)],
      );
    }
  }

  /** The broadcast's events in programme order (the latest `limit` when given). */
  async list(broadcastId: string, limit?: number): Promise<StoredEvent[]> {
    const { rows } = await this.db.query<Row>(
      limit === undefined
        ? `select ${COLUMNS} from timeline_events where broadcast_id = $1 order by media_time, created_at, id`
        : `select * from (select ${COLUMNS}, created_at from timeline_events where broadcast_id = $1
             order by media_time desc, created_at desc, id desc limit $2) t order by media_time, created_at, id`,
      limit === undefined ? [broadcastId] : [broadcastId, limit],
    );
    return rows.map(fromRow);
  }
}
