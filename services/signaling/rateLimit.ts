/** Token buckets per key: `capacity` at once, refilled at `perSecond`. Idle full buckets are forgotten. */
export class RateLimiter {
  readonly #capacity: number;
  readonly #perSecond: number;
  readonly #buckets = new Map<string, { tokens: number; at: number }>();

  constructor(opts: { capacity: number; perSecond: number }) {
    this.#capacity = opts.capacity;
    this.#perSecond = opts.perSecond;
  }

  /** Takes a token for key; false when none is left. */
  take(key: string, now = performance.now()): boolean {
    const b = this.#buckets.get(key) ?? { tokens: this.#capacity, at: now };
    b.tokens = Math.min(this.#capacity, b.tokens + ((now - b.at) / 1000) * this.#perSecond);
    b.at = now;
    if (this.#buckets.size > 10_000) this.#sweep(now);
    if (b.tokens < 1) {
      this.#buckets.set(key, b);
      return false;
    }
    b.tokens -= 1;
    this.#buckets.set(key, b);
    return true;
  }

  #sweep(now: number): void {
    for (const [k, b] of this.#buckets) if (b.tokens + ((now - b.at) / 1000) * this.#perSecond >= this.#capacity) this.#buckets.delete(k);
  }
}
