-- Stages and the performer sessions on them.

create table stages (
  id text primary key,
  title text not null,
  performer_key_hash text not null,
  status text not null default 'idle' check (status in ('idle', 'live', 'ended')),
  created_at timestamptz not null default now(),
  started_at timestamptz,
  ended_at timestamptz
);

create table performer_sessions (
  id text primary key,
  stage_id text not null references stages (id) on delete cascade,
  display_name text not null,
  joined_at timestamptz not null default now(),
  left_at timestamptz,
  leave_reason text
);

create index performer_sessions_stage_id_idx on performer_sessions (stage_id);
