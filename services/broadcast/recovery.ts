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
 * `servedElsewhere` (cluster mode): whether another live node serves the stage now. Those stages are on air there, not
 * orphaned, and are left alone, with their sessions and calls; what is left open is ended, stage by stage.
 */
export async function endOrphanedBroadcasts(
  db: Db,
  links: StageLinks,
  servedElsewhere: ((stageId: string) => Promise<boolean>) | null = null,
): Promise<{ stages: number; sessions: number; calls: number }> {
  const stages = new StageRepo(db);
  const rows = [];
  for (const rec of await stages.listByStatus('live')) if (!(await servedElsewhere?.(rec.id))) rows.push(rec);
  for (const rec of rows) {
    await endPlaylist(path.join(links.hlsDir(rec.id), PLAYLIST_NAME));
    await stages.setStatus(rec.id, 'ended');
  }
  // A single node ends everything left open; a node of a cluster only what belongs to the stages it ended.
  const scope = servedElsewhere ? rows.map((r) => r.id) : null;
  if (scope?.length === 0) return { stages: 0, sessions: 0, calls: 0 };
  await new BroadcastRepo(db).closeAllOpen('server restarted', scope);
  const sessions = await new PerformerSessionRepo(db).closeAllOpen('server restarted', scope);
  // Calls are children of their broadcasts: what was open ends with them (reason server), billed as far as ticked.
  const calls = await new CallRepo(db).closeAllOpen(scope);
  return { stages: rows.length, sessions, calls };
}
