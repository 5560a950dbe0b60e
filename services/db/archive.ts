// The archive's records: each broadcast's archive status and the durable upload queue (archive_objects).
// See sql/003_archive.sql and sql/006_fmp4_archive.sql. Plain parameterized SQL that PGlite and PostgreSQL both accept.
import type { Db } from './db.ts';
import { toDate, toDateOrNull } from './rows.ts';

type Queryable = Pick<Db, 'query'>;

export type ArchiveStatus = 'recording' | 'uploading' | 'archived' | 'failed';
/** `segment`: an fMP4 segment of the programme; `init`: an FFmpeg run's init section (a segment decodes behind it). */
export type ObjectKind = 'segment' | 'init' | 'playlist' | 'audio' | 'track' | 'manifest' | 'timeline' | 'chapters';
export type ObjectState = 'pending' | 'uploading' | 'uploaded' | 'failed';

export interface NewArchiveObject {
  broadcastId: string;
  key: string;
  kind: ObjectKind;
  localPath: string;
  contentType: string;
  size: number;
  sha256: string;
  seq?: number | null;
  performerId?: string | null;
  durationSeconds?: number | null;
  mediaStart?: number | null;
  programDateTime?: string | null;
  discontinuity?: boolean;
  /** Segments and init sections: the FFmpeg run (its index) they belong to. */
  run?: number | null;
}

export interface ArchiveObject extends Required<NewArchiveObject> {
  state: ObjectState;
  attempts: number;
  lastError: string | null;
  nextAttemptAt: Date;
  uploadedAt: Date | null;
  localDeletedAt: Date | null;
}

export interface Recording {
  id: string;
  stageId: string;
  startedAt: Date;
  endedAt: Date | null;
  endReason: string | null;
  endStatus: 'complete' | 'aborted' | 'failed' | null;
  archiveStatus: ArchiveStatus;
  archiveError: string | null;
  archivedAt: Date | null;
  durationSeconds: number | null;
  originAt: Date | null;
  hlsDir: string | null;
  spoolDir: string | null;
  keyPrefix: string | null;
  /** Finalization attempts that failed on their own (interruptions by a shutdown are not counted). */
  finalizeAttempts: number;
  /**
   * Its live playlist's first segment and FFmpeg run numbers: 0, or where it continued another broadcast's playlist
   * (a takeover, docs/cluster.md). Files below them in its folder are an earlier broadcast's.
   */
  hlsFirstMsn: number;
  hlsFirstRun: number;
}

interface ObjectRow {
  broadcast_id: string;
  key: string;
  kind: ObjectKind;
  local_path: string;
  content_type: string;
  size: string | number;
  sha256: string;
  seq: number | null;
  performer_id: string | null;
  duration_seconds: number | null;
  media_start: number | null;
  program_date_time: string | null;
  discontinuity: boolean;
  run: number | null;
  state: ObjectState;
  attempts: number;
  last_error: string | null;
  next_attempt_at: unknown;
  uploaded_at: unknown;
  local_deleted_at: unknown;
}

const OBJECT_COLUMNS = `broadcast_id, key, kind, local_path, content_type, size, sha256, seq, performer_id, duration_seconds,
  media_start, program_date_time, discontinuity, run, state, attempts, last_error, next_attempt_at, uploaded_at, local_deleted_at`;

function objectFromRow(r: ObjectRow): ArchiveObject {
  return {
    broadcastId: r.broadcast_id,
    key: r.key,
    kind: r.kind,
    localPath: r.local_path,
    contentType: r.content_type,
    size: Number(r.size),
    sha256: r.sha256,
    seq: r.seq,
    performerId: r.performer_id,
    durationSeconds: r.duration_seconds,
    mediaStart: r.media_start,
    programDateTime: r.program_date_time,
    discontinuity: r.discontinuity,
    run: r.run,
    state: r.state,
    attempts: r.attempts,
    lastError: r.last_error,
    nextAttemptAt: toDate(r.next_attempt_at),
    uploadedAt: toDateOrNull(r.uploaded_at),
    localDeletedAt: toDateOrNull(r.local_deleted_at),
  };
}

interface RecordingRow {
  id: string;
  stage_id: string;
  started_at: unknown;
  ended_at: unknown;
  end_reason: string | null;
  end_status: Recording['endStatus'];
  archive_status: ArchiveStatus;
  archive_error: string | null;
  archived_at: unknown;
  duration_seconds: number | null;
  origin_at: unknown;
  hls_dir: string | null;
  spool_dir: string | null;
  key_prefix: string | null;
  finalize_attempts: number;
  hls_first_msn: number | null;
  hls_first_run: number | null;
}

const RECORDING_COLUMNS = `id, stage_id, started_at, ended_at, end_reason, end_status, archive_status, archive_error, archived_at,
  duration_seconds, origin_at, hls_dir, spool_dir, key_prefix, finalize_attempts, hls_first_msn, hls_first_run`;

function recordingFromRow(r: RecordingRow): Recording {
  return {
    id: r.id,
    stageId: r.stage_id,
    startedAt: toDate(r.started_at),
    endedAt: toDateOrNull(r.ended_at),
    endReason: r.end_reason,
    endStatus: r.end_status,
    archiveStatus: r.archive_status,
    archiveError: r.archive_error,
    archivedAt: toDateOrNull(r.archived_at),
    durationSeconds: r.duration_seconds,
    originAt: toDateOrNull(r.origin_at),
    hlsDir: r.hls_dir,
    spoolDir: r.spool_dir,
    keyPrefix: r.key_prefix,
    finalizeAttempts: r.finalize_attempts,
    hlsFirstMsn: r.hls_first_msn ?? 0,
    hlsFirstRun: r.hls_first_run ?? 0,
  };
}

export interface QueueStats {
  pending: number;
  uploading: number;
  uploaded: number;
  failed: number;
  /** Pending objects waiting out a backoff after a failed attempt. */
  backingOff: number;
}

/** Broadcasts (as `b`) recorded by the node $N, or any when $N is null (a single node). */
const ON_NODE = (n: number) => `($${n}::text is null or b.node_id = $${n}::text)`;

export class ArchiveRepo {
  /**
   * `nodeId`: cluster mode, this node's id. The queue's work (finalizing, uploading, deleting local files) is then only
   * this node's broadcasts: their files are on its disk. Null: every broadcast (a single node, or reads).
   */
  constructor(
    private readonly db: Queryable,
    private readonly nodeId: string | null = null,
  ) {}

  /** Where and when the broadcast is being recorded (set as it goes on air), and by which node. */
  async beginRecording(id: string, r: { hlsDir: string; spoolDir: string; keyPrefix: string; originAt: Date }): Promise<void> {
    await this.db.query(
      `update broadcasts set hls_dir = $2, spool_dir = $3, key_prefix = $4, origin_at = $5::timestamptz, archive_status = 'recording',
         node_id = $6
       where id = $1`,
      [id, r.hlsDir, r.spoolDir, r.keyPrefix, r.originAt, this.nodeId],
    );
  }

  async recording(id: string): Promise<Recording | null> {
    const { rows } = await this.db.query<RecordingRow>(`select ${RECORDING_COLUMNS} from broadcasts where id = $1`, [id]);
    return rows[0] ? recordingFromRow(rows[0]) : null;
  }

  /** The stage's recordings, newest first. */
  async recordingsForStage(stageId: string): Promise<Recording[]> {
    const { rows } = await this.db.query<RecordingRow>(
      `select ${RECORDING_COLUMNS} from broadcasts where stage_id = $1 order by started_at desc, id desc`,
      [stageId],
    );
    return rows.map(recordingFromRow);
  }

  /** Ended broadcasts whose archive is not finalized yet (just ended, interrupted by a stop, or to be retried). */
  async awaitingFinalization(): Promise<Recording[]> {
    const { rows } = await this.db.query<RecordingRow>(
      `select ${RECORDING_COLUMNS} from broadcasts b where archive_status = 'recording' and ended_at is not null and ${ON_NODE(1)}
       order by started_at`,
      [this.nodeId],
    );
    return rows.map(recordingFromRow);
  }

  /**
   * Queues an object. The same key with the same content changes nothing (an upload done stays done); new content
   * for a key (a file rebuilt after a restart) is queued again from scratch.
   */
  async enqueue(o: NewArchiveObject): Promise<void> {
    await this.db.query(
      `insert into archive_objects (broadcast_id, key, kind, local_path, content_type, size, sha256, seq, performer_id,
         duration_seconds, media_start, program_date_time, discontinuity, run)
       values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
       on conflict (broadcast_id, key) do update set
         local_path = excluded.local_path, content_type = excluded.content_type, size = excluded.size,
         sha256 = excluded.sha256, seq = excluded.seq, performer_id = excluded.performer_id,
         duration_seconds = excluded.duration_seconds, media_start = excluded.media_start,
         program_date_time = excluded.program_date_time, discontinuity = excluded.discontinuity, run = excluded.run,
         state = 'pending', attempts = 0, last_error = null, next_attempt_at = now(), lease_until = null,
         uploaded_at = null, local_deleted_at = null
       where archive_objects.sha256 <> excluded.sha256 or archive_objects.state = 'failed'`,
      [o.broadcastId, o.key, o.kind, o.localPath, o.contentType, o.size, o.sha256, o.seq ?? null, o.performerId ?? null,
        o.durationSeconds ?? null, o.mediaStart ?? null, o.programDateTime ?? null, o.discontinuity ?? false, o.run ?? null],
    );
  }

  async objects(broadcastId: string, kind?: ObjectKind): Promise<ArchiveObject[]> {
    const { rows } = await this.db.query<ObjectRow>(
      `select ${OBJECT_COLUMNS} from archive_objects where broadcast_id = $1 and ($2::text is null or kind = $2::text)
       order by kind, seq nulls last, key`,
      [broadcastId, kind ?? null],
    );
    return rows.map(objectFromRow);
  }

  /**
   * Hands out up to `limit` objects due for upload, marking them uploading with a lease. A manifest waits until
   * every other object of its broadcast is uploaded: its presence in the store means the archive is complete.
   */
  async claimDue(limit: number, leaseSeconds: number): Promise<ArchiveObject[]> {
    const { rows } = await this.db.query<ObjectRow>(
      `update archive_objects a set state = 'uploading', attempts = a.attempts + 1,
         lease_until = now() + make_interval(secs => $2::double precision)
       from (
         select o.broadcast_id, o.key from archive_objects o
         where o.state = 'pending' and o.next_attempt_at <= now()
           and exists (select 1 from broadcasts b where b.id = o.broadcast_id and ${ON_NODE(3)})
           and (o.kind <> 'manifest' or not exists (
             select 1 from archive_objects x where x.broadcast_id = o.broadcast_id and x.kind <> 'manifest' and x.state <> 'uploaded'))
         order by o.next_attempt_at, o.created_at, o.seq nulls last
         limit $1
         for update skip locked
       ) due
       where a.broadcast_id = due.broadcast_id and a.key = due.key
       returning ${OBJECT_COLUMNS.split(',').map((c) => `a.${c.trim()}`).join(', ')}`,
      [limit, leaseSeconds, this.nodeId],
    );
    return rows.map(objectFromRow);
  }

  async markUploaded(broadcastId: string, key: string, sha256: string): Promise<boolean> {
    const { rows } = await this.db.query(
      `update archive_objects set state = 'uploaded', uploaded_at = now(), lease_until = null, last_error = null
       where broadcast_id = $1 and key = $2 and state = 'uploading' and sha256 = $3 returning key`,
      [broadcastId, key, sha256],
    );
    return rows.length > 0;
  }

  async markRetry(broadcastId: string, key: string, error: string, delaySeconds: number): Promise<void> {
    await this.db.query(
      `update archive_objects set state = 'pending', last_error = $3, lease_until = null,
         next_attempt_at = now() + make_interval(secs => $4::double precision)
       where broadcast_id = $1 and key = $2 and state = 'uploading'`,
      [broadcastId, key, error.slice(0, 2000), delaySeconds],
    );
  }

  async markFailed(broadcastId: string, key: string, error: string): Promise<void> {
    await this.db.query(
      `update archive_objects set state = 'failed', last_error = $3, lease_until = null where broadcast_id = $1 and key = $2`,
      [broadcastId, key, error.slice(0, 2000)],
    );
  }

  /** Uploads whose lease ran out (or all of them, at start-up: nothing is in flight then) are handed out again. */
  async releaseLeases(all: boolean): Promise<number> {
    const { rows } = await this.db.query(
      `update archive_objects set state = 'pending', lease_until = null, next_attempt_at = now()
       where state = 'uploading' and ($1::boolean or lease_until < now())
         and exists (select 1 from broadcasts b where b.id = archive_objects.broadcast_id and ${ON_NODE(2)}) returning key`,
      [all, this.nodeId],
    );
    return rows.length;
  }

  /** The store answers again: objects waiting out a backoff are due now. */
  async endBackoff(): Promise<number> {
    const { rows } = await this.db.query(
      `update archive_objects set next_attempt_at = now() where state = 'pending' and next_attempt_at > now()
         and exists (select 1 from broadcasts b where b.id = archive_objects.broadcast_id and ${ON_NODE(1)}) returning key`,
      [this.nodeId],
    );
    return rows.length;
  }

  async stats(): Promise<QueueStats> {
    const { rows } = await this.db.query<{ state: ObjectState; n: number; backing_off: number }>(
      `select state, count(*)::int as n, count(*) filter (where next_attempt_at > now() and attempts > 0)::int as backing_off
       from archive_objects group by state`,
    );
    const s: QueueStats = { pending: 0, uploading: 0, uploaded: 0, failed: 0, backingOff: 0 };
    for (const r of rows) {
      s[r.state] = r.n;
      s.backingOff += r.backing_off;
    }
    return s;
  }

  /** The archive is finalized: every object is queued; it is archived once they are all uploaded. */
  async markFinalized(id: string, durationSeconds: number): Promise<void> {
    await this.db.query(
      `update broadcasts set archive_status = 'uploading', duration_seconds = $2, archive_error = null
       where id = $1 and archive_status in ('recording', 'uploading')`,
      [id, durationSeconds],
    );
  }

  /** uploading -> archived when every object (a manifest among them) is uploaded. Returns true if this call did it. */
  async completeIfDone(id: string): Promise<boolean> {
    const { rows } = await this.db.query(
      `update broadcasts set archive_status = 'archived', archived_at = now()
       where id = $1 and archive_status = 'uploading'
         and exists (select 1 from archive_objects where broadcast_id = $1 and kind = 'manifest')
         and not exists (select 1 from archive_objects where broadcast_id = $1 and state <> 'uploaded')
       returning id`,
      [id],
    );
    return rows.length > 0;
  }

  /**
   * A finalization attempt failed on its own: counts it, and marks the archive failed once `maxAttempts` have failed.
   * Returns true when the archive is now failed.
   */
  async finalizeFailed(id: string, reason: string, maxAttempts: number): Promise<boolean> {
    const { rows } = await this.db.query<{ archive_status: ArchiveStatus }>(
      `update broadcasts set finalize_attempts = finalize_attempts + 1, archive_error = $2,
         archive_status = case when finalize_attempts + 1 >= $3 then 'failed' else archive_status end
       where id = $1 and archive_status = 'recording' returning archive_status`,
      [id, reason.slice(0, 2000), maxAttempts],
    );
    return rows[0]?.archive_status === 'failed';
  }

  async fail(id: string, reason: string): Promise<void> {
    await this.db.query(`update broadcasts set archive_status = 'failed', archive_error = $2 where id = $1 and archive_status <> 'archived'`, [
      id,
      reason.slice(0, 2000),
    ]);
  }

  /** Uploaded local files past the retention, of archived broadcasts only (never one a rebuild may still need). */
  async deletable(retentionSeconds: number, limit: number): Promise<ArchiveObject[]> {
    const { rows } = await this.db.query<ObjectRow>(
      `select ${OBJECT_COLUMNS.split(',').map((c) => `o.${c.trim()}`).join(', ')} from archive_objects o
       join broadcasts b on b.id = o.broadcast_id
       where o.state = 'uploaded' and o.local_deleted_at is null and b.archive_status = 'archived' and ${ON_NODE(3)}
         and o.uploaded_at <= now() - make_interval(secs => $1::double precision)
       order by o.uploaded_at limit $2`,
      [retentionSeconds, limit, this.nodeId],
    );
    return rows.map(objectFromRow);
  }

  async markLocalDeleted(broadcastId: string, key: string): Promise<void> {
    await this.db.query(`update archive_objects set local_deleted_at = now() where broadcast_id = $1 and key = $2`, [broadcastId, key]);
  }
}
