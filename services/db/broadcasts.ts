// Broadcast sessions (a stage on air), the performers heard in each, and per-minute usage ticks.
// Plain parameterized SQL that both PGlite and PostgreSQL accept; like repositories.ts, the repositories take
// anything with query(): a Db or the tx of Db.transaction(). No statement here relies on catching a
// constraint violation, so they are all safe inside a transaction on PostgreSQL.
import type { Db } from './db.ts';
import { toDate, toDateOrNull } from './rows.ts';

type Queryable = Pick<Db, 'query'>;

/** How a broadcast ended: stopped on purpose, its stage lost (aborted), or its mix failed. */
export type BroadcastEndStatus = 'complete' | 'aborted' | 'failed';

export interface Broadcast {
  id: string;
  stageId: string;
  startedAt: Date;
  endedAt: Date | null;
  endReason: string | null;
  endStatus: BroadcastEndStatus | null;
}

export interface BroadcastPerformer {
  broadcastId: string;
  performerId: string;
  displayName: string;
  /** When the performer was first on air in this broadcast. */
  joinedAt: Date;
  /** null while the performer is on air. */
  leftAt: Date | null;
}

export interface UsageTick {
  broadcastId: string;
  stageId: string;
  /** null: the stage's own tick (stored as ''). */
  performerId: string | null;
  /** The minute (callers pass it truncated to the minute; stored as given). */
  minute: Date;
}

export interface UsageMinutes {
  /** Stage ticks: minutes on air, summed over stages. */
  stageMinutes: number;
  /** Performer ticks: performer-minutes on air. */
  performerMinutes: number;
}

/** start() refused: the stage already has an open broadcast, or the id is taken. */
export class BroadcastConflictError extends Error {
  constructor(
    message: string,
    readonly stageId: string,
    /** The stage's open broadcast, when that is the conflict. */
    readonly openBroadcastId: string | null,
  ) {
    super(message);
    this.name = 'BroadcastConflictError';
  }
}


interface BroadcastRow {
  id: string;
  stage_id: string;
  started_at: unknown;
  ended_at: unknown;
  end_reason: string | null;
  end_status: BroadcastEndStatus | null;
}

const BROADCAST_COLUMNS = 'id, stage_id, started_at, ended_at, end_reason, end_status';

function broadcastFromRow(r: BroadcastRow): Broadcast {
  return {
    id: r.id,
    stageId: r.stage_id,
    startedAt: toDate(r.started_at),
    endedAt: toDateOrNull(r.ended_at),
    endReason: r.end_reason,
    endStatus: r.end_status,
  };
}

interface PerformerRow {
  broadcast_id: string;
  performer_id: string;
  display_name: string;
  joined_at: unknown;
  left_at: unknown;
}

function performerFromRow(r: PerformerRow): BroadcastPerformer {
  return {
    broadcastId: r.broadcast_id,
    performerId: r.performer_id,
    displayName: r.display_name,
    joinedAt: toDate(r.joined_at),
    leftAt: toDateOrNull(r.left_at),
  };
}

export class BroadcastRepo {
  constructor(private readonly db: Queryable) {}

  /**
   * Opens a broadcast on the stage (started_at = now()).
   * Throws BroadcastConflictError if the stage already has an open broadcast or the id is taken;
   * a foreign-key error if there is no such stage.
   */
  async start(input: { id: string; stageId: string }): Promise<Broadcast> {
    // ON CONFLICT DO NOTHING (no target: every unique index, including the partial one-open-per-stage index,
    // is an arbiter) instead of catching 23505, so a failed start does not abort an enclosing transaction.
    const { rows } = await this.db.query<BroadcastRow>(
      `insert into broadcasts (id, stage_id) values ($1, $2) on conflict do nothing returning ${BROADCAST_COLUMNS}`,
      [input.id, input.stageId],
    );
    if (rows[0]) return broadcastFromRow(rows[0]);

    const open = await this.openForStage(input.stageId);
    if (open) {
      throw new BroadcastConflictError(
        `stage ${input.stageId} already has an open broadcast (${open.id}); end it before starting another`,
        input.stageId,
        open.id,
      );
    }
    if (await this.get(input.id)) {
      throw new BroadcastConflictError(`broadcast id ${input.id} already exists`, input.stageId, null);
    }
    // The conflicting broadcast ended between our insert and the look-up.
    throw new BroadcastConflictError(
      `could not start a broadcast on stage ${input.stageId}: a concurrent broadcast was open; retry`,
      input.stageId,
      null,
    );
  }

  /**
   * Ends the broadcast with reason and status (at `at`, default now), if it is open; performers still present get
   * left_at = ended_at. Returns the ended broadcast, or null when it does not exist or had already ended (then nothing
   * changes: a repeat is harmless).
   */
  async end(id: string, reason: string, status: BroadcastEndStatus = 'complete', at?: Date | string): Promise<Broadcast | null> {
    const { rows } = await this.db.query<BroadcastRow>(
      `with ended as (
         update broadcasts set ended_at = coalesce($4::timestamptz, now()), end_reason = $2::text, end_status = $3::text
         where id = $1 and ended_at is null
         returning ${BROADCAST_COLUMNS}
       ), left_performers as (
         update broadcast_performers bp set left_at = ended.ended_at
         from ended
         where bp.broadcast_id = ended.id and bp.left_at is null
       )
       select ${BROADCAST_COLUMNS} from ended`,
      [id, reason, status, at ?? null],
    );
    return rows[0] ? broadcastFromRow(rows[0]) : null;
  }

  async get(id: string): Promise<Broadcast | null> {
    const { rows } = await this.db.query<BroadcastRow>(`select ${BROADCAST_COLUMNS} from broadcasts where id = $1`, [id]);
    return rows[0] ? broadcastFromRow(rows[0]) : null;
  }

  /** The stage's open broadcast, if any. */
  async openForStage(stageId: string): Promise<Broadcast | null> {
    const { rows } = await this.db.query<BroadcastRow>(
      `select ${BROADCAST_COLUMNS} from broadcasts where stage_id = $1 and ended_at is null`,
      [stageId],
    );
    return rows[0] ? broadcastFromRow(rows[0]) : null;
  }

  /** The stage's broadcasts, newest first. */
  async listForStage(stageId: string): Promise<Broadcast[]> {
    const { rows } = await this.db.query<BroadcastRow>(
      `select ${BROADCAST_COLUMNS} from broadcasts where stage_id = $1 order by started_at desc, id desc`,
      [stageId],
    );
    return rows.map(broadcastFromRow);
  }

  /**
   * Records a performer on air in an open broadcast (joined_at = at, default now()).
   * Already present: nothing changes (joined_at and display name stay the first ones). Back after
   * performerOffAir(): present again (left_at cleared), joined_at kept. Returns true if a row was inserted or
   * reopened; false for a duplicate, or when the broadcast is not open (unknown or ended: nothing recorded).
   */
  async performerOnAir(input: { broadcastId: string; performerId: string; displayName: string; at?: Date | string }): Promise<boolean> {
    const { rows } = await this.db.query<{ performer_id: string }>(
      `insert into broadcast_performers (broadcast_id, performer_id, display_name, joined_at)
       select b.id, $2::text, $3::text, coalesce($4::timestamptz, now())
       from broadcasts b where b.id = $1 and b.ended_at is null
       on conflict (broadcast_id, performer_id) do update set left_at = null
         where broadcast_performers.left_at is not null
       returning performer_id`,
      [input.broadcastId, input.performerId, input.displayName, input.at ?? null],
    );
    return rows.length > 0;
  }

  /** Marks a present performer off air (left_at = at, default now()). Returns true if this call did it. */
  async performerOffAir(broadcastId: string, performerId: string, at?: Date | string): Promise<boolean> {
    const { rows } = await this.db.query<{ performer_id: string }>(
      `update broadcast_performers set left_at = coalesce($3::timestamptz, now())
       where broadcast_id = $1 and performer_id = $2 and left_at is null
       returning performer_id`,
      [broadcastId, performerId, at ?? null],
    );
    return rows.length > 0;
  }

  /** The broadcast's performers, in order of first time on air. */
  async listPerformers(broadcastId: string): Promise<BroadcastPerformer[]> {
    const { rows } = await this.db.query<PerformerRow>(
      `select broadcast_id, performer_id, display_name, joined_at, left_at from broadcast_performers
       where broadcast_id = $1 order by joined_at, performer_id`,
      [broadcastId],
    );
    return rows.map(performerFromRow);
  }

  /**
   * Ends every open broadcast (at start-up: those left open by a crash) with reason, closing their present
   * performers like end(). Returns how many broadcasts it ended.
   */
  async closeAllOpen(reason: string, stageIds: readonly string[] | null = null): Promise<number> {
    return (await this.#closeOpen(reason, stageIds, null)).length;
  }

  /** Cluster mode: the broadcasts of these stages that this node left open (an earlier run), ended; their stages. */
  closeOpenOfNode(reason: string, nodeId: string, stageIds: readonly string[]): Promise<string[]> {
    return this.#closeOpen(reason, stageIds, nodeId);
  }

  /** Ends (aborted) the open broadcasts of these stages (all: null), of one node or any; returns their stages. */
  async #closeOpen(reason: string, stageIds: readonly string[] | null, nodeId: string | null): Promise<string[]> {
    const { rows } = await this.db.query<{ stage_id: string }>(
      `with ended as (
         update broadcasts set ended_at = now(), end_reason = $1::text, end_status = 'aborted'
         where ended_at is null and ($2::text[] is null or stage_id = any($2::text[])) and ($3::text is null or node_id = $3::text)
         returning id, stage_id, ended_at
       ), left_performers as (
         update broadcast_performers bp set left_at = ended.ended_at
         from ended
         where bp.broadcast_id = ended.id and bp.left_at is null
       )
       select stage_id from ended`,
      [reason, stageIds, nodeId],
    );
    return rows.map((r) => r.stage_id);
  }
}

interface TickRow {
  broadcast_id: string;
  stage_id: string;
  performer_id: string;
  minute: unknown;
}

/** Rows per INSERT statement: 4 parameters each, well under PostgreSQL's 65 535 bind parameters. */
const TICKS_PER_STATEMENT = 5_000;

export class UsageRepo {
  constructor(private readonly db: Queryable) {}

  /**
   * Records ticks in one multi-row insert (split only beyond 5 000 ticks), ignoring ticks already recorded.
   * Returns how many rows were inserted.
   */
  async recordTicks(ticks: readonly UsageTick[]): Promise<number> {
    let inserted = 0;
    for (let i = 0; i < ticks.length; i += TICKS_PER_STATEMENT) {
      const chunk = ticks.slice(i, i + TICKS_PER_STATEMENT);
      const params: unknown[] = [];
      const values = chunk.map((t) => {
        params.push(t.broadcastId, t.stageId, t.performerId ?? '', t.minute);
        const n = params.length;
        return `($${n - 3}::text, $${n - 2}::text, $${n - 1}::text, $${n}::timestamptz)`;
      });
      const { rows } = await this.db.query<{ one: number }>(
        `insert into usage_ticks (broadcast_id, stage_id, performer_id, minute) values ${values.join(', ')}
         on conflict do nothing returning 1 as one`,
        params,
      );
      inserted += rows.length;
    }
    return inserted;
  }

  /** The broadcast's ticks, by minute, the stage's own tick (performerId null) first within a minute. */
  async list(broadcastId: string): Promise<UsageTick[]> {
    const { rows } = await this.db.query<TickRow>(
      `select broadcast_id, stage_id, performer_id, minute from usage_ticks
       where broadcast_id = $1 order by minute, performer_id`,
      [broadcastId],
    );
    return rows.map((r) => ({
      broadcastId: r.broadcast_id,
      stageId: r.stage_id,
      performerId: r.performer_id === '' ? null : r.performer_id,
      minute: toDate(r.minute),
    }));
  }

  /** Counts stage and performer ticks, optionally for one stage and for minutes in [from, to). */
  async minutes(filter: { stageId?: string; from?: Date; to?: Date } = {}): Promise<UsageMinutes> {
    const { rows } = await this.db.query<{ stage_minutes: number; performer_minutes: number }>(
      `select
         count(*) filter (where performer_id = '')::int as stage_minutes,
         count(*) filter (where performer_id <> '')::int as performer_minutes
       from usage_ticks
       where ($1::text is null or stage_id = $1::text)
         and ($2::timestamptz is null or minute >= $2::timestamptz)
         and ($3::timestamptz is null or minute < $3::timestamptz)`,
      [filter.stageId ?? null, filter.from ?? null, filter.to ?? null],
    );
    return { stageMinutes: rows[0]?.stage_minutes ?? 0, performerMinutes: rows[0]?.performer_minutes ?? 0 };
  }
}
