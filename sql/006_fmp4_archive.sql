-- The programme is fragmented MP4 (Low-Latency HLS): a segment decodes only behind its FFmpeg run's init section
-- (init_<run>.mp4, one per run: 0, then +1 per crash-restart). Each run's init section is archived as an object of its
-- own (kind 'init', seq = the run), and every segment and init section records its run, so that finalization puts
-- each segment behind the right init section (the VOD playlist's EXT-X-MAP, the .m4a remux) even when a run left no
-- segment (FFmpeg died before its first fragment) or the sink missed some.

-- The column's inline check of sql/003 (PostgreSQL named it <table>_<column>_check).
alter table archive_objects drop constraint archive_objects_kind_check;
alter table archive_objects add constraint archive_objects_kind_check
  check (kind in ('segment', 'init', 'playlist', 'audio', 'track', 'manifest', 'timeline', 'chapters'));

-- Segments and init sections: the FFmpeg run (its index) they belong to. Null for the other kinds.
alter table archive_objects add column run integer;
