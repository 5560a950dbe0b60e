-- Call-in: a listener asks to speak, a performer takes the call, the caller is on air, every started minute is billed.
-- One row per call (its current state, written as absolute values) and its events in order (call_request,
-- call_accepted / call_declined / call_cancelled / call_expired, call_connected, call_tick, call_end).

-- A stage's per-minute rate for calls, in the currency's minor unit (cents): null = calls are free.
alter table stages add column call_rate_minor integer check (call_rate_minor is null or call_rate_minor >= 0);
alter table stages add column call_currency text check (call_currency is null or call_currency ~ '^[A-Z]{3}$');
alter table stages add constraint stages_call_rate_check check ((call_rate_minor is null) = (call_currency is null));

create table calls (
  id text primary key,
  stage_id text not null references stages (id) on delete cascade,
  broadcast_id text references broadcasts (id) on delete set null,
  name text not null,
  topic text,
  status text not null check (status in ('waiting', 'accepted', 'on_air', 'declined', 'cancelled', 'expired', 'ended')),
  -- declined / cancelled / expired: why; ended: caller, host, network, broadcast_ended, stage_full, server.
  end_reason text,
  requested_at timestamptz not null,
  accepted_at timestamptz,
  connected_at timestamptz,
  ended_at timestamptz,
  -- Started minutes on air (one call_tick each).
  minutes integer not null default 0 check (minutes >= 0),
  -- The stage's rate when the call was taken, and the bill computed at call_end (minutes × rate).
  rate_minor integer,
  currency text,
  bill_minor bigint
);

create index calls_stage_idx on calls (stage_id, requested_at desc);

create table call_events (
  call_id text not null references calls (id) on delete cascade,
  seq integer not null,
  type text not null check (type in ('call_request', 'call_accepted', 'call_declined', 'call_cancelled', 'call_expired',
    'call_connected', 'call_tick', 'call_end')),
  at timestamptz not null,
  data jsonb not null default '{}',
  primary key (call_id, seq)
);

-- A call on air is an interval of the broadcast's timeline.
alter table timeline_events drop constraint timeline_events_type_check;
alter table timeline_events add constraint timeline_events_type_check
  check (type in ('chapter', 'track', 'marker', 'comment', 'speaking', 'call'));
