-- The broadcast as one resource: how each broadcast ended, finalization as a durable, retried step, and performer
-- sessions per connection (a performer who reconnects with a resume token keeps one id over several sessions).

-- complete: stopped on purpose (a stop, a shutdown); aborted: its stage was lost (media server gone, nobody came
-- back); failed: the mix could not go on (FFmpeg kept crashing). Null while on air and for older broadcasts.
alter table broadcasts add column end_status text;
alter table broadcasts add constraint broadcasts_end_status_check
  check (end_status is null or end_status in ('complete', 'aborted', 'failed'));

-- Finalization (VOD playlist, audio file, tracks, manifest) is retried at the next sweep or start until it succeeds;
-- attempts that failed on their own (not interrupted by a shutdown) are counted, and past a few the archive fails.
alter table broadcasts add column finalize_attempts integer not null default 0;

alter table performer_sessions add column performer_id text;
update performer_sessions set performer_id = id;
alter table performer_sessions alter column performer_id set not null;
create index performer_sessions_performer_idx on performer_sessions (performer_id);
