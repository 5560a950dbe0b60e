// Cluster mode: resume tokens (services/signaling/resume.ts) in Redis, so that a performer whose stage moves to
// another node (its node died, or was drained) joins there as the same performer: same id, same track in the archive,
// the same performer's minutes. A token is `sr:resume:t:<token>` → its stage and performer, and each performer's
// current token `sr:resume:p:<performer>` (a new one retires the old), both expiring with the token. While Redis cannot
// be reached, this node's own memory stands in (a token issued then resumes on this node only).
import type { Redis } from 'ioredis';
import { LocalResumeStore, newResumeToken, RESUME_TOKEN_TTL_MS, type ResumeStore } from '../signaling/resume.ts';

const T = 'sr:resume:t:';
const P = 'sr:resume:p:';

// KEYS[1] the performer's key, KEYS[2] the new token's key; ARGV[1] the entry, ARGV[2] ttl ms, ARGV[3] the new token.
const ISSUE = `
local old = redis.call('GET', KEYS[1])
if old then redis.call('DEL', '${T}' .. old) end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[2])
return 1`;

// KEYS[1] the token's key; ARGV[1] the stage, ARGV[2] the token. Takes the token (single use) if it is this stage's.
const REDEEM = `
local v = redis.call('GET', KEYS[1])
if not v then return false end
local e = cjson.decode(v)
if e.stageId ~= ARGV[1] then return false end
redis.call('DEL', KEYS[1])
if redis.call('GET', '${P}' .. e.performerId) == ARGV[2] then redis.call('DEL', '${P}' .. e.performerId) end
return e.performerId`;

export class RedisResumeStore implements ResumeStore {
  readonly #redis: Redis;
  readonly #local = new LocalResumeStore();

  constructor(redis: Redis) {
    this.#redis = redis;
  }

  async issue(stageId: string, performerId: string): Promise<string> {
    const token = newResumeToken();
    try {
      await this.#redis.eval(ISSUE, 2, P + performerId, T + token, JSON.stringify({ stageId, performerId }), String(RESUME_TOKEN_TTL_MS), token);
      return token;
    } catch {
      return this.#local.issue(stageId, performerId);
    }
  }

  async redeem(stageId: string, token: string): Promise<string | null> {
    const here = await this.#local.redeem(stageId, token);
    if (here) return here;
    try {
      const id = await this.#redis.eval(REDEEM, 1, T + token, stageId, token);
      return typeof id === 'string' ? id : null;
    } catch {
      return null;
    }
  }

  /** A stage closing on this node may go on on another (handed over): its tokens stay in Redis until they expire. */
  stageClosed(stageId: string): void {
    this.#local.stageClosed(stageId);
  }
}
