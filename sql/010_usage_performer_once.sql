-- Usage: a performer's on-air minute on a stage is counted once, whichever broadcast ticked it, as the stage's own
-- minute is (008): across a takeover a performer who moves with the stage keeps their id (their resume token is in
-- Redis), and the broadcast that died and the one that continues it may both tick that minute. Of duplicates from
-- before, one row is kept (the lowest broadcast id). This one index covers the stage's minute (performer_id '') too.
delete from usage_ticks u using usage_ticks v
  where u.stage_id = v.stage_id and u.performer_id = v.performer_id and u.minute = v.minute
    and u.broadcast_id > v.broadcast_id;
create unique index usage_ticks_stage_performer_minute_once on usage_ticks (stage_id, performer_id, minute);
drop index usage_ticks_stage_minute_once;
