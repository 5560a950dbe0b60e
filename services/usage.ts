// Usage metering: a node-cron job that records, every minute, one usage tick per live stage and one per
// performer on air on it (usage_ticks; see sql/002_broadcasts.sql). Ticks are idempotent per
// (broadcast, performer, minute), so a repeated or overlapping run of the same minute adds nothing.
import cron, { type ScheduledTask } from 'node-cron';
import type { Db } from './db/db.ts';
import { UsageRepo, type UsageTick } from './db/broadcasts.ts';
import type { Logger } from './logger.ts';
import { isTransientDbError } from './db/writeBehind.ts';

/** One stage on air, as the stage registry sees it right now. */
export interface LiveSnapshot {
  stageId: string;
  broadcastId: string;
  /** Performers on air on the stage. */
  performerIds: string[];
}

export interface UsageMeterOptions {
  db: Pick<Db, 'query'>;
  log: Logger;
  /** The stages on air now. Called once per tick. */
  snapshot: () => LiveSnapshot[];
  /** Cron expression (5 fields, or 6 with seconds first). Default '* * * * *': every minute. */
  schedule?: string;
}

export const DEFAULT_USAGE_SCHEDULE = '* * * * *';

/** A run may start this late and still count (node-cron's default tolerance is 1 s; past it the run is skipped). */
const MISSED_EXECUTION_TOLERANCE_MS = 30_000;
/** Held ticks are retried this often while the database is unreachable. */
const RETRY_MS = 3_000;
const MAX_BACKLOG = 200_000;

/** `now` truncated to the start of its minute (UTC; epoch minutes, so the same in every time zone). */
export function minuteOf(now: Date): Date {
  return new Date(Math.floor(now.getTime() / 60_000) * 60_000);
}

export class UsageMeter {
  readonly #usage: UsageRepo;
  readonly #log: Logger;
  readonly #snapshot: () => LiveSnapshot[];
  readonly #schedule: string;
  #task: ScheduledTask | null = null;
  /** The scheduled tick in flight, if any (the overlap guard; close() waits for it). */
  #inFlight: Promise<void> | null = null;
  #closed = false;
  /** Ticks the database did not take yet (it was unreachable). */
  #backlog: UsageTick[] = [];
  #retryTimer: NodeJS.Timeout | null = null;

  constructor(opts: UsageMeterOptions) {
    this.#usage = new UsageRepo(opts.db);
    this.#log = opts.log.child({ component: 'usage' });
    this.#snapshot = opts.snapshot;
    this.#schedule = opts.schedule ?? DEFAULT_USAGE_SCHEDULE;
    if (!cron.validate(this.#schedule)) throw new Error(`invalid usage schedule (cron expression): ${this.#schedule}`);
  }

  /** Starts the cron job. Idempotent; throws after close(). */
  start(): void {
    if (this.#closed) throw new Error('usage meter is closed');
    if (this.#task) return;
    const log = this.#log;
    this.#task = cron.schedule(this.#schedule, (ctx) => this.#onSchedule(ctx.date), {
      name: 'usage-meter',
      // node-cron's overlap guard; #onSchedule keeps its own too (the run in flight is what close() waits for).
      noOverlap: true,
      missedExecutionTolerance: MISSED_EXECUTION_TOLERANCE_MS,
      logger: {
        info: (message) => log.info(message, { source: 'node-cron' }),
        warn: (message) => log.warn(message, { source: 'node-cron' }),
        error: (message, err) => {
          const e = message instanceof Error ? message : err;
          log.error(message instanceof Error ? message.message : message, { source: 'node-cron', err: e?.message });
        },
        debug: (message) => log.debug(message instanceof Error ? message.message : message, { source: 'node-cron' }),
      },
    });
    log.info('usage meter started', { schedule: this.#schedule });
  }

  /** The scheduled run: never overlaps a run in flight, never rejects (tick() has logged the error). */
  #onSchedule(slot: Date): Promise<void> {
    if (this.#closed) return Promise.resolve();
    if (this.#inFlight) {
      this.#log.warn('previous usage tick still running; skipping this one', { slot: slot.toISOString() });
      return Promise.resolve();
    }
    const run = this.tick(slot).then(
      () => {},
      () => {},
    );
    this.#inFlight = run.finally(() => {
      this.#inFlight = null;
    });
    return this.#inFlight;
  }

  /**
   * Records the ticks of now's minute (UTC): one per live stage in the snapshot, one per performer on it, together with
   * any ticks an earlier run could not write (the database was unreachable: they wait in memory and are retried every
   * few seconds, so an outage loses none). Returns the number of rows inserted (0 when that minute was already
   * recorded). Logs and rethrows errors.
   */
  async tick(now: Date = new Date()): Promise<number> {
    if (this.#closed) throw new Error('usage meter is closed');
    const minute = minuteOf(now);
    let ticks: UsageTick[];
    try {
      ticks = [];
      for (const live of this.#snapshot()) {
        ticks.push({ broadcastId: live.broadcastId, stageId: live.stageId, performerId: null, minute });
        for (const performerId of new Set(live.performerIds)) {
          ticks.push({ broadcastId: live.broadcastId, stageId: live.stageId, performerId, minute });
        }
      }
    } catch (err) {
      this.#log.error('usage snapshot failed', { minute: minute.toISOString(), err: errorText(err) });
      throw err;
    }
    return this.#write(ticks, minute);
  }

  /** Ticks waiting for the database. */
  get backlog(): number {
    return this.#backlog.length;
  }

  async #write(fresh: UsageTick[], minute: Date | null): Promise<number> {
    const ticks = [...this.#backlog, ...fresh];
    if (ticks.length === 0) return 0;
    try {
      const inserted = await this.#usage.recordTicks(ticks);
      if (this.#backlog.length > 0) this.#log.info('usage ticks held through a database outage are written', { ticks: this.#backlog.length });
      this.#backlog = [];
      this.#log.debug('usage tick recorded', { minute: minute?.toISOString(), ticks: ticks.length, inserted });
      return inserted;
    } catch (err) {
      if (isTransientDbError(err)) {
        // Newest kept if an outage outlasts the cap (a week of ticks for a handful of stages).
        const first = this.#backlog.length === 0;
        this.#backlog = ticks.slice(-MAX_BACKLOG);
        this.#armRetry();
        if (!first) throw err;
      }
      this.#log.error('recording usage ticks failed', { minute: minute?.toISOString(), ticks: ticks.length, held: this.#backlog.length, err: errorText(err) });
      throw err;
    }
  }

  #armRetry(): void {
    if (this.#retryTimer || this.#closed) return;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = null;
      if (this.#closed || this.#backlog.length === 0 || this.#inFlight) {
        if (this.#backlog.length > 0) this.#armRetry();
        return;
      }
      const run = this.#write([], null).then(
        () => {},
        () => {},
      );
      this.#inFlight = run.finally(() => {
        this.#inFlight = null;
      });
    }, RETRY_MS);
  }

  /**
   * Stops and discards the cron job (no timer left behind) and waits for a scheduled tick in flight.
   * Idempotent. tick() and start() throw afterwards.
   */
  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      if (this.#retryTimer) clearTimeout(this.#retryTimer);
      this.#retryTimer = null;
      const task = this.#task;
      this.#task = null;
      if (task) {
        // destroy() stops the timer and removes the task from node-cron's global registry.
        await task.destroy();
        this.#log.info('usage meter stopped');
      }
    }
    await this.#inFlight;
    if (this.#backlog.length > 0) {
      // One last try: the database may have come back since the last retry.
      await this.#usage.recordTicks(this.#backlog).then(
        () => (this.#backlog = []),
        (err: unknown) => this.#log.error('closing with usage ticks the database did not take', { ticks: this.#backlog.length, err: errorText(err) }),
      );
    }
  }
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
