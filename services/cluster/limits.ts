// Cluster mode (docs/cluster.md): rate limits shared by every node, as token buckets in Redis (one Lua script per
// take: read, refill by Redis's own clock, take, write, expire once full again), so that a client spreading its
// requests over the nodes gets the single-node budget, not one per node.
import type { Redis } from 'ioredis';
import type { SharedBuckets } from '../limits.ts';

// KEYS[1] the bucket; ARGV[1] capacity, ARGV[2] tokens per second. Returns 0 (taken) or the whole seconds to wait.
const TAKE = `
local cap = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(b[1])
local at = tonumber(b[2])
if tokens == nil or at == nil then tokens = cap; at = now end
tokens = math.min(cap, tokens + math.max(0, now - at) / 1000 * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = math.max(1, math.ceil((1 - tokens) / rate)) end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((cap - tokens) / rate * 1000) + 1000)
return wait`;

export class RedisBuckets implements SharedBuckets {
  readonly #redis: Redis;

  constructor(redis: Redis) {
    this.#redis = redis;
  }

  async take(key: string, capacity: number, perSecond: number): Promise<number> {
    return Number(await this.#redis.eval(TAKE, 1, `sr:rl:${key}`, String(capacity), String(perSecond)));
  }
}
