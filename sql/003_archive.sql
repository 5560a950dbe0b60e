-- The archive of each broadcast: its status, and a durable upload queue with one row per object.
-- A broadcast's archive goes recording -> uploading -> archived, or failed with the reason.

alter table broadcasts add column archive_status text not null default 'recording';
alter table broadcasts add column archive_error text;
alter table broadcasts add column archived_at timestamptz;
-- Seconds of programme in the archive (the sum of its segments), set when the archive is finalized.
alter table broadcasts add column duration_seconds double precision;
-- Wall clock of the programme clock's zero (the first sample mixed): media times count from it.
alter table broadcasts add column origin_at timestamptz;
-- Where the broadcast was recorded on this host (the live HLS folder and the spool of tracks and derived files).
alter table broadcasts add column hls_dir text;
alter table broadcasts add column spool_dir text;
-- Object keys of this broadcast start with this prefix ('stages/<stage>/broadcasts/<broadcast>/').
alter table broadcasts add column key_prefix text;
alter table broadcasts add constraint broadcasts_archive_status_check
  check (archive_status in ('recording', 'uploading', 'archived', 'failed'));

-- Broadcasts recorded before archiving existed have nothing to archive.
update broadcasts set archive_status = 'failed', archive_error = 'recorded before archiving existed'
  where ended_at is not null;

create table archive_objects (
  broadcast_id text not null references broadcasts (id) on delete cascade,
  -- The object's key in the store.
  key text not null,
  kind text not null check (kind in ('segment', 'playlist', 'audio', 'track', 'manifest', 'timeline', 'chapters')),
  -- The local file uploaded.
  local_path text not null,
  content_type text not null,
  size bigint not null,
  sha256 text not null,
  -- Segments: their number; tracks: their performer.
  seq integer,
  performer_id text,
  duration_seconds double precision,
  -- Seconds on the programme clock where the object's audio starts (segments and tracks).
  media_start double precision,
  program_date_time text,
  discontinuity boolean not null default false,
  state text not null default 'pending' check (state in ('pending', 'uploading', 'uploaded', 'failed')),
  attempts integer not null default 0,
  last_error text,
  next_attempt_at timestamptz not null default now(),
  -- An upload in flight holds the row until then; past it, the sweep hands the row out again.
  lease_until timestamptz,
  uploaded_at timestamptz,
  local_deleted_at timestamptz,
  created_at timestamptz not null default now(),
  primary key (broadcast_id, key)
);

create index archive_objects_due_idx on archive_objects (next_attempt_at) where state = 'pending';
create index archive_objects_uploaded_idx on archive_objects (uploaded_at) where state = 'uploaded' and local_deleted_at is null;
create index broadcasts_archive_status_idx on broadcasts (archive_status) where archive_status in ('recording', 'uploading');
