-- Broadcast sessions (a stage on air: the mixer running from start to stop), the performers heard in each,
-- and per-minute usage ticks.

create table broadcasts (
  id text primary key,
  stage_id text not null references stages (id) on delete cascade,
  started_at timestamptz not null default now(),
  ended_at timestamptz,
  end_reason text
);

create index broadcasts_stage_id_idx on broadcasts (stage_id);

-- A stage has at most one open broadcast.
create unique index broadcasts_one_open_per_stage on broadcasts (stage_id) where ended_at is null;

-- One row per performer per broadcast: joined_at = first time on air in it; left_at null while present.
create table broadcast_performers (
  broadcast_id text not null references broadcasts (id) on delete cascade,
  performer_id text not null,
  display_name text not null,
  joined_at timestamptz not null,
  left_at timestamptz,
  primary key (broadcast_id, performer_id)
);

-- One row per minute on air: performer_id = '' is the stage's own tick, else one per performer on air.
-- Inserted with ON CONFLICT DO NOTHING, so recording the same minute twice is harmless.
create table usage_ticks (
  broadcast_id text not null references broadcasts (id) on delete cascade,
  stage_id text not null,
  performer_id text not null default '',
  minute timestamptz not null,
  primary key (broadcast_id, performer_id, minute)
);

create index usage_ticks_stage_minute_idx on usage_ticks (stage_id, minute);
