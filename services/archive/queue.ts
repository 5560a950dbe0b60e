// The durable upload queue: archive_objects rows in PostgreSQL, uploaded by a small in-process pump with retries and
// backoff, swept by node-cron. Nothing is forgotten on a restart or an S3 outage: the rows stay until confirmed.
import crypto from 'node:crypto';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { partUri, SEGMENT_FILE_RE } from '../../pipelines/hls/liveWriter.ts';
import cron, { type ScheduledTask } from 'node-cron';
import type { ArchiveObject, ArchiveRepo, QueueStats } from '../db/archive.ts';
import type { Logger } from '../logger.ts';
import type { ObjectStore } from './store.ts';
import { isDbUnavailable } from '../db/writeBehind.ts';

export interface UploadQueueOptions {
  repo: ArchiveRepo;
  store: ObjectStore;
  log: Logger;
  /** Uploads at once. */
  concurrency: number;
  /** First retry after this, doubling per attempt (with jitter) up to retryMaxSeconds. */
  retryBaseSeconds: number;
  retryMaxSeconds: number;
  /** An object that failed this many times is marked failed (and so is its broadcast's archive). */
  maxAttempts: number;
  /** Uploaded local files are deleted this long after their broadcast is archived. */
  retentionSeconds: number;
  /** Cron expression of the sweep (6 fields: seconds first). */
  sweepSchedule: string;
  /** An upload still running after this is presumed lost and handed out again. */
  leaseSeconds?: number;
}

type QueueEvents = {
  uploaded: [object: ArchiveObject];
  retry: [object: ArchiveObject, error: string];
  failed: [object: ArchiveObject, error: string];
  archived: [broadcastId: string];
  /** A periodic sweep ran (other periodic archive work hangs off it: finalizations due again). */
  swept: [];
};

const RETRY_LOG_MS = 10_000;

/** What a shutdown's flush achieved: objects uploaded during it, objects still pending or uploading. */
export interface FlushResult {
  uploaded: number;
  left: number;
  waitedMs: number;
  complete: boolean;
}

export async function sha256File(file: string): Promise<{ sha256: string; size: number }> {
  const hash = crypto.createHash('sha256');
  let size = 0;
  for await (const chunk of fs.createReadStream(file)) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { sha256: hash.digest('hex'), size };
}

export class UploadQueue extends EventEmitter<QueueEvents> {
  readonly #o: Required<UploadQueueOptions>;
  readonly #log: Logger;
  readonly #active = new Set<Promise<void>>();
  #task: ScheduledTask | null = null;
  #pumping: Promise<void> | null = null;
  #again = false;
  #sweeping: Promise<void> | null = null;
  #lastDbWarn = 0;
  /**
   * Uploads whose outcome could not be recorded (the database went away meanwhile): still `uploading` under their
   * lease. Handed back as due at the first sweep that reaches the database, not when the lease runs out.
   */
  readonly #unrecorded = new Map<string, { broadcastId: string; key: string; error: string }>();
  #closed = false;
  /** Retries are logged as a warning at most every RETRY_LOG_MS (an outage fails every upload), otherwise at debug. */
  #lastRetryWarnAt = 0;
  #retriesSinceWarn = 0;
  /** Counters since start, for metrics. */
  readonly counters = { uploaded: 0, retries: 0, failed: 0 };

  constructor(opts: UploadQueueOptions) {
    super();
    this.#o = { leaseSeconds: 600, ...opts };
    this.#log = opts.log.child({ component: 'upload-queue' });
    if (!cron.validate(this.#o.sweepSchedule)) throw new Error(`invalid sweep schedule: ${this.#o.sweepSchedule}`);
  }

  /** At start-up nothing is in flight: uploads a crash interrupted are handed out again. Then the sweep starts. */
  async start(): Promise<void> {
    const released = await this.#o.repo.releaseLeases(true);
    if (released > 0) this.#log.info('uploads interrupted by a restart are queued again', { count: released });
    this.#task = cron.schedule(this.#o.sweepSchedule, () => void this.sweep(), { name: 'archive-sweep', noOverlap: true });
    this.kick();
  }

  stats(): Promise<QueueStats> {
    return this.#o.repo.stats();
  }

  /** Looks for due uploads now. */
  kick(): void {
    if (this.#closed) return;
    if (this.#pumping) {
      this.#again = true;
      return;
    }
    this.#pumping = this.#pump()
      .catch((err: unknown) => {
        this.#log.error('upload pump failed; the sweep retries', { error: String(err) });
      })
      .finally(() => {
        this.#pumping = null;
        if (this.#again) {
          this.#again = false;
          this.kick();
        }
      });
  }

  async #pump(): Promise<void> {
    while (!this.#closed) {
      const free = this.#o.concurrency - this.#active.size;
      if (free <= 0) return;
      const due = await this.#o.repo.claimDue(free, this.#o.leaseSeconds);
      if (due.length === 0) return;
      for (const obj of due) {
        const p: Promise<void> = this.#upload(obj).finally(() => {
          this.#active.delete(p);
          this.kick();
        });
        this.#active.add(p);
      }
    }
  }

  async #upload(obj: ArchiveObject): Promise<void> {
    const repo = this.#o.repo;
    try {
      let local: { sha256: string; size: number };
      try {
        local = await sha256File(obj.localPath);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
          await this.#fail(obj, `the local file is gone: ${obj.localPath}`);
          return;
        }
        throw err;
      }
      if (local.sha256 !== obj.sha256) {
        await this.#fail(obj, `the local file changed after it was queued (sha256 ${local.sha256} != ${obj.sha256})`);
        return;
      }
      const t0 = performance.now();
      const stored = await this.#o.store.putFile(obj.key, obj.localPath, obj.contentType);
      if (stored.size !== obj.size) throw new Error(`stored size ${stored.size} != ${obj.size}`);
      await repo.markUploaded(obj.broadcastId, obj.key, obj.sha256);
      this.counters.uploaded++;
      this.#log.debug('uploaded', { key: obj.key, bytes: obj.size, ms: Math.round(performance.now() - t0) });
      this.emit('uploaded', obj);
      // One upload went through: the store is back, so nothing needs to wait out its backoff any longer.
      if (obj.attempts > 1) await repo.endBackoff();
      if (await repo.completeIfDone(obj.broadcastId)) {
        this.#log.info('broadcast archived', { broadcastId: obj.broadcastId });
        this.emit('archived', obj.broadcastId);
      }
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      if (obj.attempts >= this.#o.maxAttempts) {
        await this.#fail(obj, `gave up after ${obj.attempts} attempts: ${message}`).catch(() => undefined);
        return;
      }
      const exp = Math.min(this.#o.retryMaxSeconds, this.#o.retryBaseSeconds * 2 ** Math.min(30, obj.attempts - 1));
      const delay = exp * (0.5 + Math.random() * 0.5);
      this.counters.retries++;
      this.#retriesSinceWarn++;
      const fields = { key: obj.key, attempt: obj.attempts, retryInSeconds: Number(delay.toFixed(2)), error: message };
      if (Date.now() - this.#lastRetryWarnAt >= RETRY_LOG_MS) {
        this.#log.warn('upload failed; will retry', { ...fields, failuresSinceLastWarning: this.#retriesSinceWarn });
        this.#lastRetryWarnAt = Date.now();
        this.#retriesSinceWarn = 0;
      } else {
        this.#log.debug('upload failed; will retry', fields);
      }
      await repo.markRetry(obj.broadcastId, obj.key, message, delay).catch((e: unknown) => {
        // The next sweep that reaches the database hands the row out again.
        this.#unrecorded.set(`${obj.broadcastId}\n${obj.key}`, { broadcastId: obj.broadcastId, key: obj.key, error: message });
        this.#log.error('could not record a failed upload; it is retried once the database answers', { key: obj.key, error: String(e) });
      });
      this.emit('retry', obj, message);
    }
  }

  async #fail(obj: ArchiveObject, reason: string): Promise<void> {
    this.counters.failed++;
    this.#log.error('upload failed for good', { key: obj.key, reason });
    await this.#o.repo.markFailed(obj.broadcastId, obj.key, reason);
    await this.#o.repo.fail(obj.broadcastId, `${obj.key}: ${reason}`);
    this.emit('failed', obj, reason);
  }

  /**
   * The periodic sweep: expired leases are handed out again; while uploads are backing off, the store is probed and,
   * if it answers, they are due at once; due uploads start; local files past their retention are deleted.
   */
  sweep(): Promise<void> {
    this.#sweeping ??= this.#sweep().finally(() => (this.#sweeping = null));
    return this.#sweeping;
  }

  async #sweep(): Promise<void> {
    if (this.#closed) return;
    const repo = this.#o.repo;
    try {
      await repo.releaseLeases(false);
      for (const [id, u] of this.#unrecorded) {
        await repo.markRetry(u.broadcastId, u.key, u.error, 0);
        this.#unrecorded.delete(id);
      }
      const stats = await repo.stats();
      if (stats.backingOff > 0) {
        try {
          await this.#o.store.init();
          const n = await repo.endBackoff();
          if (n > 0) this.#log.info('the store answers again; retrying now', { count: n });
        } catch {
          // Still down: the backoff stands.
        }
      }
      this.kick();
      await this.#cleanup();
      this.emit('swept');
    } catch (err) {
      if (!isDbUnavailable(err)) this.#log.error('archive sweep failed', { error: String(err) });
      else if (Date.now() - this.#lastDbWarn > 30_000) {
        // Uploads wait for the database; segments' rows are held (journaled) by the write-behind meanwhile.
        this.#lastDbWarn = Date.now();
        this.#log.warn('archive sweep: the database is unreachable; uploads resume when it is back', { error: String(err) });
      }
    }
  }

  async #cleanup(): Promise<void> {
    const repo = this.#o.repo;
    for (const obj of await repo.deletable(this.#o.retentionSeconds, 500)) {
      try {
        await fsp.rm(obj.localPath, { force: true });
        await removeParts(obj.localPath);
        await repo.markLocalDeleted(obj.broadcastId, obj.key);
      } catch (err) {
        this.#log.warn('could not delete an uploaded local file', { path: obj.localPath, error: String(err) });
      }
    }
  }

  /** Waits until nothing is pending or uploading, or the timeout. Returns true if the queue drained. */
  async drain(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const s = await this.#o.repo.stats();
      if (s.pending === 0 && s.uploading === 0) return true;
      if (Date.now() >= deadline || this.#closed) return false;
      this.kick();
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /**
   * Keeps uploading until none of these broadcasts' objects is pending or uploading, `deadline` (epoch ms) passes or
   * `signal` aborts. While uploads back off, the store is probed every second so that a store that comes back within
   * the wait is used at once. Returns what was uploaded meanwhile and what is left (it stays queued in the database).
   */
  async flush(broadcastIds: readonly string[], opts: { deadline: number; signal?: AbortSignal }): Promise<FlushResult> {
    const ids = new Set(broadcastIds);
    const t0 = Date.now();
    let uploaded = 0;
    let wake: (() => void) | null = null;
    const onUploaded = (obj: ArchiveObject) => {
      if (ids.has(obj.broadcastId)) uploaded++;
    };
    const onAbort = () => wake?.();
    this.on('uploaded', onUploaded);
    opts.signal?.addEventListener('abort', onAbort);
    let left = 0;
    let lastProbe = 0;
    try {
      for (;;) {
        left = 0;
        let backingOff = false;
        for (const id of ids) {
          for (const o of await this.#o.repo.objects(id)) {
            if (o.state !== 'pending' && o.state !== 'uploading') continue;
            left++;
            if (o.state === 'pending' && o.attempts > 0) backingOff = true;
          }
        }
        if (left === 0 || this.#closed || opts.signal?.aborted || Date.now() >= opts.deadline) break;
        if (backingOff && Date.now() - lastProbe >= 1000) {
          lastProbe = Date.now();
          try {
            await this.#o.store.init();
            await this.#o.repo.endBackoff();
          } catch {
            // Still unreachable: the backoff stands.
          }
        }
        this.kick();
        await new Promise<void>((resolve) => {
          const t = setTimeout(done, Math.max(0, Math.min(200, opts.deadline - Date.now())));
          function done() {
            clearTimeout(t);
            wake = null;
            resolve();
          }
          wake = done;
        });
      }
    } finally {
      this.off('uploaded', onUploaded);
      opts.signal?.removeEventListener('abort', onAbort);
    }
    return { uploaded, left, waitedMs: Date.now() - t0, complete: left === 0 };
  }

  /**
   * Stops the sweep and waits for uploads in flight (what is left stays queued for the next start). Idempotent.
   * With `waitMs`, uploads still running after it are abandoned (a store that hangs must not hold up a shutdown):
   * their rows stay leased, and the next start hands them out again.
   */
  async close(opts: { waitMs?: number } = {}): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#task?.destroy();
    this.#task = null;
    await this.#pumping;
    await this.#sweeping;
    const inFlight = Promise.allSettled([...this.#active]);
    if (opts.waitMs === undefined) {
      await inFlight;
      return;
    }
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([inFlight.then(() => false), new Promise<boolean>((r) => (timer = setTimeout(() => r(true), opts.waitMs)))]);
    clearTimeout(timer);
    if (timedOut) this.#log.warn('uploads still running at shutdown are abandoned; the next start retries them', { count: this.#active.size });
  }
}

/**
 * The LL-HLS parts of a live segment (part_<msn>_<i>.m4s beside seg_<msn>.m4s), numbered from 0 without gaps: they go
 * with it. The live writer deletes the parts of segments that leave its window; the last window's stay until here.
 */
async function removeParts(segmentPath: string): Promise<void> {
  const m = SEGMENT_FILE_RE.exec(path.basename(segmentPath));
  if (!m) return;
  for (let i = 0; ; i++) {
    try {
      await fsp.unlink(path.join(path.dirname(segmentPath), partUri(Number(m[1]), i)));
    } catch {
      return;
    }
  }
}
