// Small typed repositories over plain parameterized SQL that both PGlite and PostgreSQL accept.
// They take anything with query(): a Db or the tx of Db.transaction().
import type { Db } from './db.ts';
import { toDate, toDateOrNull } from './rows.ts';

type Queryable = Pick<Db, 'query'>;

export type StageStatus = 'idle' | 'live' | 'ended';

export interface Stage {
  id: string;
  title: string;
  performerKeyHash: string;
  status: StageStatus;
  createdAt: Date;
  startedAt: Date | null;
  endedAt: Date | null;
}

export interface PerformerSession {
  /** One per connection. */
  id: string;
  /** The performer: several sessions share it when the performer resumed after a reconnect. */
  performerId: string;
  stageId: string;
  displayName: string;
  joinedAt: Date;
  leftAt: Date | null;
  leaveReason: string | null;
}


interface StageRow {
  id: string;
  title: string;
  performer_key_hash: string;
  status: StageStatus;
  created_at: unknown;
  started_at: unknown;
  ended_at: unknown;
}

const STAGE_COLUMNS = 'id, title, performer_key_hash, status, created_at, started_at, ended_at';

function stageFromRow(r: StageRow): Stage {
  return {
    id: r.id,
    title: r.title,
    performerKeyHash: r.performer_key_hash,
    status: r.status,
    createdAt: toDate(r.created_at),
    startedAt: toDateOrNull(r.started_at),
    endedAt: toDateOrNull(r.ended_at),
  };
}

export class StageRepo {
  constructor(private readonly db: Queryable) {}

  async create(input: { id: string; title: string; performerKeyHash: string }): Promise<Stage> {
    const { rows } = await this.db.query<StageRow>(
      `insert into stages (id, title, performer_key_hash) values ($1, $2, $3) returning ${STAGE_COLUMNS}`,
      [input.id, input.title, input.performerKeyHash],
    );
    return stageFromRow(rows[0]!);
  }

  async get(id: string): Promise<Stage | null> {
    const { rows } = await this.db.query<StageRow>(`select ${STAGE_COLUMNS} from stages where id = $1`, [id]);
    return rows[0] ? stageFromRow(rows[0]) : null;
  }

  /** The newest stages first, at most `limit`. */
  async list(limit: number): Promise<Stage[]> {
    const { rows } = await this.db.query<StageRow>(`select ${STAGE_COLUMNS} from stages order by created_at desc, id limit $1`, [limit]);
    return rows.map(stageFromRow);
  }

  async listByStatus(status: StageStatus): Promise<Stage[]> {
    const { rows } = await this.db.query<StageRow>(`select ${STAGE_COLUMNS} from stages where status = $1 order by created_at`, [status]);
    return rows.map(stageFromRow);
  }

  /**
   * Sets the status. Going 'live' stamps started_at, going 'ended' stamps ended_at (each only the first time).
   * Returns the updated stage, or null when there is no such stage. Transition rules are the caller's business.
   */
  async setStatus(id: string, status: StageStatus): Promise<Stage | null> {
    const { rows } = await this.db.query<StageRow>(
      `update stages set
         status = $2::text,
         started_at = case when $2::text = 'live' then coalesce(started_at, now()) else started_at end,
         ended_at = case when $2::text = 'ended' then coalesce(ended_at, now()) else ended_at end
       where id = $1
       returning ${STAGE_COLUMNS}`,
      [id, status],
    );
    return rows[0] ? stageFromRow(rows[0]) : null;
  }
}

interface SessionRow {
  id: string;
  performer_id: string;
  stage_id: string;
  display_name: string;
  joined_at: unknown;
  left_at: unknown;
  leave_reason: string | null;
}

const SESSION_COLUMNS = 'id, performer_id, stage_id, display_name, joined_at, left_at, leave_reason';

function sessionFromRow(r: SessionRow): PerformerSession {
  return {
    id: r.id,
    performerId: r.performer_id,
    stageId: r.stage_id,
    displayName: r.display_name,
    joinedAt: toDate(r.joined_at),
    leftAt: toDateOrNull(r.left_at),
    leaveReason: r.leave_reason,
  };
}

export class PerformerSessionRepo {
  constructor(private readonly db: Queryable) {}

  /**
   * Records a performer's session opening. `at` is when the performer joined (a write held through a database outage
   * lands later; default now); `performerId` defaults to the session id. Idempotent: the same session again changes
   * nothing (a journal replay may repeat it).
   */
  async open(input: { id: string; performerId?: string; stageId: string; displayName: string; at?: Date | string }): Promise<void> {
    await this.db.query(
      `insert into performer_sessions (id, performer_id, stage_id, display_name, joined_at)
       values ($1, $2, $3, $4, coalesce($5::timestamptz, now())) on conflict (id) do nothing`,
      [input.id, input.performerId ?? input.id, input.stageId, input.displayName, input.at ?? null],
    );
  }

  /** Marks the session left now, unless it already was. Returns true if this call closed it. */
  async close(id: string, reason: string, at?: Date | string): Promise<boolean> {
    const { rowCount } = await this.db.query(
      'update performer_sessions set left_at = coalesce($3::timestamptz, now()), leave_reason = $2 where id = $1 and left_at is null',
      [id, reason, at ?? null],
    );
    return rowCount > 0;
  }

  async get(id: string): Promise<PerformerSession | null> {
    const { rows } = await this.db.query<SessionRow>(`select ${SESSION_COLUMNS} from performer_sessions where id = $1`, [id]);
    return rows[0] ? sessionFromRow(rows[0]) : null;
  }

  /** Sessions of the stage that have not left, oldest first. */
  async listOpen(stageId: string): Promise<PerformerSession[]> {
    const { rows } = await this.db.query<SessionRow>(
      `select ${SESSION_COLUMNS} from performer_sessions where stage_id = $1 and left_at is null order by joined_at, id`,
      [stageId],
    );
    return rows.map(sessionFromRow);
  }

  /** Closes every session still open (at start-up, after a crash). Returns how many it closed. */
  async closeAllOpen(reason: string, stageIds: readonly string[] | null = null, exceptSessions: readonly string[] = []): Promise<number> {
    const { rowCount } = await this.db.query(
      `update performer_sessions set left_at = now(), leave_reason = $1
       where left_at is null and ($2::text[] is null or stage_id = any($2::text[])) and not (id = any($3::text[]))`,
      [reason, stageIds, exceptSessions],
    );
    return rowCount;
  }
}
