-- Cluster mode (docs/cluster.md): the history of stage ownership. A row is one holding of a stage's lease by one node,
-- from when the node took it (its first claim) to when it stopped holding it: released (the stage closed there), lost
-- (another node held it), fenced (cut off from Redis, the node gave it up before it could expire), withdrawn (the node
-- left the cluster, shutting down), expired (the node died: closed when another node takes the stage), or restarted
-- (the node started again). Redis holds the live lease; this is the record.
create table stage_leases (
  id text primary key,
  stage_id text not null references stages (id) on delete cascade,
  node_id text not null,
  taken_at timestamptz not null,
  ended_at timestamptz,
  end_reason text check (end_reason in ('released', 'lost', 'fenced', 'withdrawn', 'expired', 'restarted'))
);
create index stage_leases_stage on stage_leases (stage_id, taken_at);
create index stage_leases_open on stage_leases (node_id) where ended_at is null;
