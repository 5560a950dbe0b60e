// At start-up: broadcasts an earlier run left on air (it crashed, or was killed) are ended, and their playlists
// closed with ENDLIST, so players stop waiting. Their archives are then finalized like any other.
import path from 'node:path';
import { endPlaylist } from '../../pipelines/hls/playlist.ts';
import { PLAYLIST_NAME } from '../../pipelines/mixer/ffmpegArgs.ts';
import { BroadcastRepo } from '../db/broadcasts.ts';
import { CallRepo } from '../db/calls.ts';
import type { Db } from '../db/db.ts';
import { PerformerSessionRepo, StageRepo } from '../db/repositories.ts';
import type { StageLinks } from '../stages/links.ts';

/**
 * Single node: every stage left live is ended, with its open broadcast, sessions and calls, and its playlist closed.
 *
 * Cluster mode (`nodeId`: this node's id): only what this node's earlier run recorded is its business, and those shows
 * are not over: each broadcast it left open is ended (aborted, with its sessions and calls) while its stage stays
 * live, as a hand-over, so that the cluster's orphan sweep (services/cluster/orphans.ts) continues it on the
 * least-loaded node, this one included, at the same playlist address. Stages other nodes serve, or are taking over
 * at this moment, are left alone. A stage left live by a run without a cluster (no node recorded it) is ended as on
 * a single node.
 */
export async function endOrphanedBroadcasts(
  db: Db,
  links: StageLinks,
  nodeId: string | null = null,
): Promise<{ stages: number; handedOver: number; sessions: number; calls: number }> {
  const stages = new StageRepo(db);
  const live = (await stages.listByStatus('live')).map((r) => r.id);
  let ended = live;
  let handedOver: string[] = [];
  if (nodeId !== null && live.length > 0) {
    const { rows } = await db.query<{ stage_id: string; node_id: string | null }>(
      `select distinct on (stage_id) stage_id, node_id from broadcasts
       where stage_id = any($1::text[]) and ended_at is null order by stage_id, started_at desc`,
      [live],
    );
    ended = rows.filter((r) => r.node_id === null).map((r) => r.stage_id);
    // Only this node's own broadcasts, by node in the update itself: another node may be taking one of these stages
    // over at this moment (its new broadcast is not touched). Their sessions and calls are closed by the node that
    // continues the stage (services/broadcast/takeover.ts), which keeps those of its own performers.
    const mine = rows.filter((r) => r.node_id === nodeId).map((r) => r.stage_id);
    handedOver = await new BroadcastRepo(db).closeOpenOfNode('server restarted', nodeId, mine);
  }
  for (const id of ended) {
    await endPlaylist(path.join(links.hlsDir(id), PLAYLIST_NAME));
    await stages.setStatus(id, 'ended');
  }
  // A single node ends everything left open; a node of a cluster only what belongs to the stages it ended.
  const scope = nodeId !== null ? ended : null;
  if (scope?.length === 0) return { stages: 0, handedOver: handedOver.length, sessions: 0, calls: 0 };
  await new BroadcastRepo(db).closeAllOpen('server restarted', scope);
  const sessions = await new PerformerSessionRepo(db).closeAllOpen('server restarted', scope);
  // Calls are children of their broadcasts: what was open ends with them (reason server), billed as far as ticked.
  const calls = await new CallRepo(db).closeAllOpen(scope);
  return { stages: ended.length, handedOver: handedOver.length, sessions, calls };
}
