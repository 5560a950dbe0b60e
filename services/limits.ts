// Rate limits, for REST and Socket.IO alike: token buckets per key. A budget that both paths draw on (the timeline's
// events, say) is one RateLimiter instance, so a client cannot double its rate by using both.
import { RequestError } from './errors.ts';

/**
 * Token buckets per key: `capacity` at once, refilled at `perSecond`. The map stays bounded: buckets that have refilled
 * (idle keys) are forgotten on a periodic sweep, and past `maxKeys` the least recently used keys are dropped (they start
 * again with a full bucket, which errs on the side of letting a request through).
 */
export class RateLimiter {
  readonly #capacity: number;
  readonly #perSecond: number;
  readonly #maxKeys: number;
  /** Insertion order is use order: a key is re-inserted on every take. */
  readonly #buckets = new Map<string, { tokens: number; at: number }>();
  /** How long an empty bucket takes to fill: idle buckets are swept once per this (at least a second apart). */
  readonly #refillMs: number;
  #lastSweep = 0;

  constructor(opts: { capacity: number; perSecond: number; maxKeys?: number }) {
    if (!(opts.capacity >= 1) || !(opts.perSecond > 0)) throw new TypeError('capacity must be >= 1 and perSecond > 0');
    this.#capacity = opts.capacity;
    this.#perSecond = opts.perSecond;
    this.#maxKeys = opts.maxKeys ?? 50_000;
    this.#refillMs = (opts.capacity / opts.perSecond) * 1000;
  }

  /** Keys currently tracked. */
  get size(): number {
    return this.#buckets.size;
  }

  #tokens(key: string, now: number): number {
    const b = this.#buckets.get(key);
    return b ? Math.min(this.#capacity, b.tokens + ((now - b.at) / 1000) * this.#perSecond) : this.#capacity;
  }

  /** Takes a token for key; false when none is left. */
  take(key: string, now = performance.now()): boolean {
    if (now - this.#lastSweep >= Math.max(1000, this.#refillMs)) this.#sweep(now);
    const tokens = this.#tokens(key, now);
    const ok = tokens >= 1;
    this.#buckets.delete(key);
    this.#buckets.set(key, { tokens: ok ? tokens - 1 : tokens, at: now });
    if (this.#buckets.size > this.#maxKeys) this.#buckets.delete(this.#buckets.keys().next().value!);
    return ok;
  }

  /** Takes a token for key, or throws RATE_LIMITED (with the seconds to wait) when none is left. */
  takeOrThrow(key: string, message: string, now = performance.now()): void {
    if (this.take(key, now)) return;
    const wait = this.retryAfterSeconds(key, now);
    throw new RequestError('RATE_LIMITED', `${message}; retry in ${wait} s`, wait);
  }

  /** Whole seconds until key has a token again (0 when it has one now). */
  retryAfterSeconds(key: string, now = performance.now()): number {
    const missing = 1 - this.#tokens(key, now);
    return missing <= 0 ? 0 : Math.max(1, Math.ceil(missing / this.#perSecond));
  }

  #sweep(now: number): void {
    this.#lastSweep = now;
    for (const [k, b] of this.#buckets) if (b.tokens + ((now - b.at) / 1000) * this.#perSecond >= this.#capacity) this.#buckets.delete(k);
  }
}

/**
 * Token buckets kept outside this process (cluster mode: Redis, services/cluster/limits.ts), so that every node draws
 * on the same budget. take() answers 0 when a token was taken, else the whole seconds to wait.
 */
export interface SharedBuckets {
  take(key: string, capacity: number, perSecond: number): Promise<number>;
}

/** Per client address and per stage together: the stage allows `stageFactor` times the address's rate. */
export class KeyedLimits {
  readonly byAddress: RateLimiter;
  readonly byStage: RateLimiter;
  readonly #perMinute: number;
  readonly #stageFactor: number;
  readonly #shared: { buckets: SharedBuckets; name: string } | null;

  /**
   * `shared` (cluster mode): the budget is the cluster's, in those buckets under `name`; while they cannot be reached,
   * this process's own buckets stand in.
   */
  constructor(perMinute: number, stageFactor = 2, shared: { buckets: SharedBuckets; name: string } | null = null) {
    this.#perMinute = perMinute;
    this.#stageFactor = stageFactor;
    this.#shared = shared;
    this.byAddress = new RateLimiter({ capacity: perMinute, perSecond: perMinute / 60 });
    this.byStage = new RateLimiter({ capacity: perMinute * stageFactor, perSecond: (perMinute * stageFactor) / 60 });
  }

  /** As take(), from the shared buckets when there are some (the cluster's budget), else this process's. */
  async takeShared(address: string, stageId: string | null): Promise<number> {
    const shared = this.#shared;
    if (!shared) return this.take(address, stageId);
    const perMinute = this.#perMinute;
    const stagePerMinute = perMinute * this.#stageFactor;
    try {
      const wait = await shared.buckets.take(`${shared.name}:a:${address}`, perMinute, perMinute / 60);
      if (wait > 0 || stageId === null) return wait;
      return await shared.buckets.take(`${shared.name}:s:${stageId}`, stagePerMinute, stagePerMinute / 60);
    } catch {
      return this.take(address, stageId);
    }
  }

  /**
   * Takes a token from the address's bucket, then (if given) the stage's. Returns 0 when allowed, else the seconds to
   * wait. An address that is over its limit does not use up the stage's tokens.
   */
  take(address: string, stageId: string | null, now = performance.now()): number {
    if (!this.byAddress.take(address, now)) return this.byAddress.retryAfterSeconds(address, now);
    if (stageId !== null && !this.byStage.take(stageId, now)) return this.byStage.retryAfterSeconds(stageId, now);
    return 0;
  }
}
