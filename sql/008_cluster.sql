-- Cluster mode (docs/cluster.md): the node that records a broadcast keeps its live HLS and its spool on its own disk,
-- so it alone finalizes and uploads that broadcast's archive. Null: recorded by a single node (no REDIS_URL), whose
-- one process handles every archive.
alter table broadcasts add column node_id text;
create index broadcasts_node_archive on broadcasts (node_id) where archive_status in ('recording', 'uploading');
