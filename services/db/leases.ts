// The history of stage ownership in cluster mode (sql/009_stage_leases.sql): one row per holding of a stage's lease by
// a node. Redis holds the live lease (services/cluster/cluster.ts); these rows are the record.
import type { Db } from './db.ts';

type Queryable = Pick<Db, 'query'>;

export type LeaseEndReason = 'released' | 'lost' | 'fenced' | 'withdrawn' | 'expired' | 'restarted';

export interface LeaseRow {
  id: string;
  stageId: string;
  nodeId: string;
  takenAt: Date;
  endedAt: Date | null;
  endReason: LeaseEndReason | null;
}

export class LeaseRepo {
  constructor(private readonly db: Queryable) {}

  /**
   * A node took the stage's lease. Holdings of the stage by other nodes still open (their node died, or its own end has
   * not been written yet) end here, as `expired`: the lease cannot have two holders. Idempotent.
   */
  async taken(d: { id: string; stageId: string; nodeId: string; at: string }): Promise<void> {
    await this.db.query(
      `update stage_leases set ended_at = $3::timestamptz, end_reason = 'expired'
       where stage_id = $1 and ended_at is null and id <> $2 and taken_at <= $3::timestamptz`,
      [d.stageId, d.id, d.at],
    );
    await this.db.query(
      `insert into stage_leases (id, stage_id, node_id, taken_at) values ($1, $2, $3, $4::timestamptz) on conflict (id) do nothing`,
      [d.id, d.stageId, d.nodeId, d.at],
    );
  }

  /** The holding ended (unless its end is already recorded, e.g. as `expired` by the next holder). Idempotent. */
  async ended(d: { id: string; reason: LeaseEndReason; at: string }): Promise<void> {
    await this.db.query('update stage_leases set ended_at = $2::timestamptz, end_reason = $3 where id = $1 and ended_at is null', [d.id, d.at, d.reason]);
  }

  /** At a node's start: whatever its earlier run still held ended with that run. Returns how many. */
  async endOpenOf(nodeId: string): Promise<number> {
    const { rowCount } = await this.db.query(
      `update stage_leases set ended_at = now(), end_reason = 'restarted' where node_id = $1 and ended_at is null`,
      [nodeId],
    );
    return rowCount;
  }

  /** The stage's holdings, oldest first. */
  async ofStage(stageId: string): Promise<LeaseRow[]> {
    const { rows } = await this.db.query<{ id: string; stage_id: string; node_id: string; taken_at: Date; ended_at: Date | null; end_reason: LeaseEndReason | null }>(
      'select id, stage_id, node_id, taken_at, ended_at, end_reason from stage_leases where stage_id = $1 order by taken_at, id',
      [stageId],
    );
    return rows.map((r) => ({ id: r.id, stageId: r.stage_id, nodeId: r.node_id, takenAt: new Date(r.taken_at), endedAt: r.ended_at && new Date(r.ended_at), endReason: r.end_reason }));
  }
}
