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

export async function endOrphanedBroadcasts(db: Db, links: StageLinks): Promise<{ stages: number; sessions: number; calls: number }> {
  const stages = new StageRepo(db);
  const rows = await stages.listByStatus('live');
  for (const rec of rows) {
    await endPlaylist(path.join(links.hlsDir(rec.id), PLAYLIST_NAME));
    await stages.setStatus(rec.id, 'ended');
  }
  await new BroadcastRepo(db).closeAllOpen('server restarted');
  const sessions = await new PerformerSessionRepo(db).closeAllOpen('server restarted');
  // Calls are children of their broadcasts: what was open ends with them (reason server), billed as far as ticked.
  const calls = await new CallRepo(db).closeAllOpen();
  return { stages: rows.length, sessions, calls };
}
