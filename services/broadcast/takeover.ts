// Cluster mode (docs/cluster.md): a stage whose node died is taken over by another node, which ends the broadcast the
// dead node left open (aborted: its archive is completed by that node when it is back, from its own disk) and starts a
// new one that continues its live playlist at the same address: segment numbers and init sections go on from where the
// database says the other stopped, after an EXT-X-DISCONTINUITY.
import { BroadcastRepo } from '../db/broadcasts.ts';
import { CallRepo } from '../db/calls.ts';
import type { Db } from '../db/db.ts';
import { PerformerSessionRepo } from '../db/repositories.ts';

/** Where the continuing playlist starts (pipelines/mixer/mixer.ts MixerOptions.continues). */
export interface HlsContinuation {
  msn: number;
  run: number;
  /** The discontinuity number of the other playlist's last segment (the new first segment's is one more). */
  discontinuitySequence: number;
}

/**
 * Segment numbers skipped after the last one the database knows of: the dead node's last few listings may not have
 * reached the database (its journal holds them), and players may have fetched them. A skipped number is a jump for a
 * player; a reused one would be different audio under a name it has cached.
 */
export const MSN_MARGIN = 3;

interface OpenRow {
  id: string;
  node_id: string | null;
  hls_first_msn: number | null;
  hls_first_run: number | null;
  hls_first_cc: number | null;
  last_msn: number | null;
  last_run: number | null;
  runs: number;
}

/**
 * The stage's latest broadcast (open, or ended by a node that handed the stage over as it shut down) and the node
 * that recorded it (null: recorded without a cluster).
 */
export async function latestBroadcastNode(db: Db, stageId: string): Promise<{ broadcastId: string; nodeId: string | null; open: boolean } | null> {
  const { rows } = await db.query<{ id: string; node_id: string | null; open: boolean }>(
    'select id, node_id, ended_at is null as open from broadcasts where stage_id = $1 order by started_at desc, id desc limit 1',
    [stageId],
  );
  return rows[0] ? { broadcastId: rows[0].id, nodeId: rows[0].node_id, open: rows[0].open } : null;
}

/**
 * Says where a broadcast continuing the stage's latest one starts its playlist, and ends that broadcast if it is still
 * open (aborted, with `reason`) with its performer sessions and calls. Null: the stage never had a broadcast.
 */
export async function interruptForTakeover(
  db: Db,
  stageId: string,
  reason: string,
  /**
   * Sessions of performers already on the stage here (they joined before the takeover, perhaps with the same performer
   * id as on the dead node): they stay open; the dead node's are closed.
   */
  keepSessions: readonly string[] = [],
): Promise<{ ended: string; continues: HlsContinuation } | null> {
  const { rows } = await db.query<OpenRow & { open: boolean }>(
    `select b.id, b.node_id, b.hls_first_msn, b.hls_first_run, b.hls_first_cc, b.ended_at is null as open,
       (select max(o.seq) from archive_objects o where o.broadcast_id = b.id and o.kind = 'segment') as last_msn,
       (select max(o.run) from archive_objects o where o.broadcast_id = b.id and o.run is not null) as last_run,
       (select count(distinct o.run)::int from archive_objects o where o.broadcast_id = b.id and o.kind = 'segment') as runs
     from broadcasts b where b.stage_id = $1 order by b.started_at desc, b.id desc limit 1`,
    [stageId],
  );
  const old = rows[0];
  if (!old) return null;
  const firstMsn = old.hls_first_msn ?? 0;
  const firstRun = old.hls_first_run ?? 0;
  const lastMsn = old.last_msn ?? firstMsn - 1;
  const lastRun = Math.max(old.last_run ?? firstRun, firstRun);
  const lastCc = (old.hls_first_cc ?? 0) + Math.max(0, Number(old.runs) - 1);
  if (old.open) await new BroadcastRepo(db).end(old.id, reason, 'aborted');
  // Whatever the node that had the stage left open (it died, or handed it over without closing them: a restart), but
  // the sessions of performers already here. No call is open here yet: calls need the broadcast this one starts.
  await new PerformerSessionRepo(db).closeAllOpen(reason, [stageId], keepSessions);
  await new CallRepo(db).closeAllOpen([stageId]);
  // A run the dead node started but the database never heard of would reuse an init name: one more is skipped too.
  return { ended: old.id, continues: { msn: lastMsn + 1 + MSN_MARGIN, run: lastRun + 2, discontinuitySequence: lastCc } };
}

/** Records where a continuing broadcast's playlist starts (the next takeover counts from it). */
export async function recordContinuation(db: Db, broadcastId: string, c: HlsContinuation): Promise<void> {
  await db.query('update broadcasts set hls_first_msn = $2, hls_first_run = $3, hls_first_cc = $4 where id = $1', [broadcastId, c.msn, c.run, c.discontinuitySequence + 1]);
}
