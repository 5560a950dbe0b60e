-- Cluster mode (docs/cluster.md): the node that records a broadcast keeps its live HLS and its spool on its own disk,
-- so it alone finalizes and uploads that broadcast's archive. Null: recorded by a single node (no REDIS_URL), whose
-- one process handles every archive.
alter table broadcasts add column node_id text;
create index broadcasts_node_archive on broadcasts (node_id) where archive_status in ('recording', 'uploading');

-- A broadcast taken over from a node that died continues the other's live playlist at the same address: its first
-- segment number, its first FFmpeg run (init section) number, and its first segment's discontinuity number. Null: a
-- broadcast that starts a playlist (0, 0, 0).
alter table broadcasts add column hls_first_msn integer;
alter table broadcasts add column hls_first_run integer;
alter table broadcasts add column hls_first_cc integer;

-- Usage: a stage's on-air minute (performer_id '') is counted once, whichever broadcast ticked it: across a takeover,
-- the broadcast that died and the one that continues it may both tick the same minute. Duplicates from before (none
-- are expected: one broadcast per stage at a time) keep the earliest broadcast's row.
delete from usage_ticks u using usage_ticks v
  where u.performer_id = '' and v.performer_id = '' and u.stage_id = v.stage_id and u.minute = v.minute
    and u.broadcast_id > v.broadcast_id;
create unique index usage_ticks_stage_minute_once on usage_ticks (stage_id, minute) where performer_id = '';
