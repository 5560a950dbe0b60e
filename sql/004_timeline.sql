-- The timeline of each broadcast: chapters, tracks, markers, comments, and who spoke when, on its programme clock.

create table timeline_events (
  id text primary key,
  broadcast_id text not null references broadcasts (id) on delete cascade,
  stage_id text not null,
  type text not null check (type in ('chapter', 'track', 'marker', 'comment', 'speaking')),
  -- UTC wall clock of the moment the event refers to.
  at timestamptz not null,
  -- Seconds on the programme clock since the broadcast's first sample.
  media_time double precision not null,
  -- speaking: the end of the interval (null while it lasts).
  end_media_time double precision,
  -- Who posted it: 'performer', 'admin', 'listener' or 'server' (speaking).
  author_kind text not null,
  author_id text,
  -- title, artist, label, text, name, performerId, displayName (plain text).
  data jsonb not null default '{}',
  created_at timestamptz not null default now()
);

create index timeline_events_broadcast_idx on timeline_events (broadcast_id, media_time);
