// Usage metering: a node-cron job that records, every minute, one usage tick per broadcast on air and one per
// performer on air in it (usage_ticks; see sql/002_broadcasts.sql). Each broadcast registers itself while it is on
// air (a child of the broadcast: it stops ticking the moment the broadcast closes, whatever closed it). Ticks go
// through the journaled write-behind, so a database outage or a crash loses none, and they are idempotent per
// (broadcast, performer, minute): a repeated or overlapping run of the same minute adds nothing.
import cron, { type ScheduledTask } from 'node-cron';
import type { UsageTicks, Writes } from './broadcast/services.ts';
import type { Logger } from './logger.ts';

/** One broadcast on air, as it registers itself. */
export interface UsageEntry {
  stageId: string;
  broadcastId: string;
  /** Performers on air in it now. Called once per tick. */
  performerIds: () => string[];
}

export interface UsageMeterOptions {
  writes: Writes;
  log: Logger;
  /** Cron expression (5 fields, or 6 with seconds first). Default '* * * * *': every minute. */
  schedule?: string;
}

export const DEFAULT_USAGE_SCHEDULE = '* * * * *';

/** A run may start this late and still count (node-cron's default tolerance is 1 s; past it the run is skipped). */
const MISSED_EXECUTION_TOLERANCE_MS = 30_000;

/** `now` truncated to the start of its minute (UTC; epoch minutes, so the same in every time zone). */
export function minuteOf(now: Date): Date {
  return new Date(Math.floor(now.getTime() / 60_000) * 60_000);
}

export class UsageMeter implements UsageTicks {
  readonly #writes: Writes;
  readonly #log: Logger;
  readonly #schedule: string;
  readonly #entries = new Set<UsageEntry>();
  #task: ScheduledTask | null = null;
  #closed = false;

  constructor(opts: UsageMeterOptions) {
    this.#writes = opts.writes;
    this.#log = opts.log.child({ component: 'usage' });
    this.#schedule = opts.schedule ?? DEFAULT_USAGE_SCHEDULE;
    if (!cron.validate(this.#schedule)) throw new Error(`invalid usage schedule (cron expression): ${this.#schedule}`);
  }

  /**
   * A broadcast went on air: it is ticked until the returned handle is closed (idempotent). `tickNow`: its stage was on
   * air in this minute already (a broadcast taken over from a node that died, docs/cluster.md): the minute is ticked at
   * once, so that a minute boundary that fell while the stage moved is not missed. The database keeps one on-air tick
   * per stage and minute, whichever broadcast wrote it.
   */
  register(entry: UsageEntry, opts: { tickNow?: boolean } = {}): { close(): void } {
    this.#entries.add(entry);
    if (opts.tickNow && !this.#closed) {
      const minute = minuteOf(new Date()).toISOString();
      const ticks = [{ broadcastId: entry.broadcastId, stageId: entry.stageId, performerId: null, minute }];
      void this.#writes.write('usage.ticks', { ticks });
    }
    return { close: () => void this.#entries.delete(entry) };
  }

  /** Broadcasts being ticked. */
  get registered(): number {
    return this.#entries.size;
  }

  /** Starts the cron job. Idempotent; throws after close(). */
  start(): void {
    if (this.#closed) throw new Error('usage meter is closed');
    if (this.#task) return;
    const log = this.#log;
    this.#task = cron.schedule(
      this.#schedule,
      (ctx) => {
        if (this.#closed) return;
        try {
          this.tick(ctx.date);
        } catch {
          // tick() has logged it.
        }
      },
      {
        name: 'usage-meter',
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
      },
    );
    log.info('usage meter started', { schedule: this.#schedule });
  }

  /**
   * Queues the ticks of now's minute (UTC): one per registered broadcast, one per performer on air in it. They are
   * journaled before this returns; `written` resolves once they are in the database (true), or false if the database
   * refused them. Throws (and logs) if a broadcast could not say who is on air.
   */
  tick(now: Date = new Date()): { queued: number; written: Promise<boolean> } {
    if (this.#closed) throw new Error('usage meter is closed');
    const minute = minuteOf(now).toISOString();
    const ticks: { broadcastId: string; stageId: string; performerId: string | null; minute: string }[] = [];
    try {
      for (const e of this.#entries) {
        ticks.push({ broadcastId: e.broadcastId, stageId: e.stageId, performerId: null, minute });
        for (const performerId of new Set(e.performerIds())) ticks.push({ broadcastId: e.broadcastId, stageId: e.stageId, performerId, minute });
      }
    } catch (err) {
      this.#log.error('usage snapshot failed', { minute, err: err instanceof Error ? err.message : String(err) });
      throw err;
    }
    if (ticks.length === 0) return { queued: 0, written: Promise.resolve(true) };
    const written = this.#writes.write('usage.ticks', { ticks });
    void written.then((ok) => {
      if (ok) this.#log.debug('usage tick recorded', { minute, ticks: ticks.length });
      else this.#log.error('recording usage ticks failed', { minute, ticks: ticks.length });
    });
    return { queued: ticks.length, written };
  }

  /** Stops and discards the cron job (no timer left behind). Idempotent. tick() and start() throw afterwards. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#entries.clear();
    const task = this.#task;
    this.#task = null;
    if (task) {
      // destroy() stops the timer and removes the task from node-cron's global registry.
      await task.destroy();
      this.#log.info('usage meter stopped');
    }
  }
}
