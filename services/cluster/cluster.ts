// Cluster mode (docs/cluster.md): several nodes share one Redis, one PostgreSQL and one archive store. Redis holds the
// live facts, each with an expiry so that a dead node's facts go by themselves:
// - the node registry: each node's heartbeat (its address, load and drain state) under sr:node:<id>, gone when the
//   node misses its heartbeats for NODE_TTL_MS, and the set sr:nodes of every id seen;
// - stage ownership: sr:stage:<id>:owner holds the id of the one node whose router and mix serve the stage, as a lease
//   the owner renews. A stage is placed on the least-loaded live node the first time it needs media, atomically (SET
//   NX): whichever node answers the request, every node then sends the stage's clients to that owner.
// A node that can no longer renew a lease (another node holds it) gives the stage up at once (`lost`). A node that
// cannot reach Redis cannot know whether it alone is cut off (a partition: the others will take its stages once its
// leases expire) or Redis is away for everyone: it keeps serving for FENCE_MS after its last confirmed renewal, then
// gives its stages up (`lost`, holder unknown) before their leases can expire, so that a stage is never served by two
// nodes. A Redis restart shorter than that stops nothing: once Redis is back (empty) each owner writes its leases again
// before anyone else can place those stages.
import crypto from 'node:crypto';
import { EventEmitter } from 'node:events';
import { Redis } from 'ioredis';
import { RequestError, WrongNodeError } from '../errors.ts';
import type { SharedBuckets } from '../limits.ts';
import type { Logger } from '../logger.ts';
import { RedisBuckets } from './limits.ts';
import { RedisResumeStore } from './resume.ts';
import type { ResumeStore } from '../signaling/resume.ts';

/** A node writes its heartbeat this often. */
export const HEARTBEAT_MS = 1000;
/** A node whose heartbeat is older than this is gone: its key expires. */
export const NODE_TTL_MS = 5000;
/** A stage's lease lasts this long unless renewed. */
export const LEASE_MS = 8000;
/** The owner renews its leases this often. */
export const LEASE_RENEW_MS = 1000;
/**
 * An owner that has had no renewal of a lease confirmed for this long (counted from when it sent the last one that
 * succeeded, so never later than the lease's expiry in Redis) gives the stage up: it is cut off from Redis, and the
 * lease may expire in 4 s, after which another node may take the stage. The margin covers the owner's own timers
 * running late and the time its broadcast takes to close (0.1-2.6 s measured on a loaded machine: FFmpeg finishes its
 * last segment). A Redis outage shorter than about FENCE_MS - LEASE_RENEW_MS - RECONNECT_MS (2.7 s) stops nothing.
 */
export const FENCE_MS = LEASE_MS - 4000;
/** How often the owner checks its leases' age against FENCE_MS. */
const FENCE_CHECK_MS = 200;
/** While Redis is away the connection is tried again this often. */
const RECONNECT_MS = 250;

const KEY = {
  nodes: 'sr:nodes',
  node: (id: string) => `sr:node:${id}`,
  owned: (id: string) => `sr:node:${id}:stages`,
  owner: (stageId: string) => `sr:stage:${stageId}:owner`,
};

/** What a node tells the others about itself: what placement weighs, and what the admin view shows. */
export interface NodeLoad {
  /** Stages whose media this node serves (open routers). */
  stages: number;
  /** Of those, stages on air (a mix running). */
  onAir: number;
  performers: number;
  /** mediasoup workers alive. */
  workers: number;
  /** This node takes no new stages (shutting down). */
  draining: boolean;
}

export interface NodeInfo {
  id: string;
  /** The base URL clients and other nodes reach it at. */
  url: string;
  load: NodeLoad;
  /** Stages placed on it (leases it holds, or was given and has not yet taken up). */
  owned: number;
  startedAt: string;
  /** Its last heartbeat. */
  seenAt: string;
}

interface Heartbeat {
  id: string;
  url: string;
  load: NodeLoad;
  startedAt: string;
  seenAt: string;
}

// KEYS[1] owner key, KEYS[2] the candidate's owned set; ARGV[1] candidate id, ARGV[2] lease ms, ARGV[3] stage id.
// Places the stage on the candidate unless someone holds it; returns the holder.
const PLACE = `
local cur = redis.call('GET', KEYS[1])
if cur then return cur end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
return ARGV[1]`;

// KEYS[1] owner key, KEYS[2] own owned set; ARGV[1] own id, ARGV[2] lease ms, ARGV[3] stage id.
// 1: renewed; 2: the key was gone (Redis restarted, or it expired unseen) and is ours again; 0: another node holds it.
const RENEW = `
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if not cur then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  redis.call('SADD', KEYS[2], ARGV[3])
  return 2
end
return 0`;

// KEYS[1] owner key, KEYS[2] own owned set; ARGV[1] own id, ARGV[2] stage id. Lets go of a lease only if it is ours.
const RELEASE = `
redis.call('SREM', KEYS[2], ARGV[2])
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

/** Why a node stopped holding a lease (stage_leases.end_reason). */
export type LeaseEnd = 'released' | 'lost' | 'fenced' | 'withdrawn';

type ClusterEvents = {
  lost: [stageId: string, holder: string];
  /** This node now holds the stage's lease (a new holding, `leaseId`). */
  held: [stageId: string, leaseId: string];
  /** This node no longer holds it. */
  leaseEnded: [stageId: string, leaseId: string, reason: LeaseEnd];
};

export interface ClusterArgs {
  redisUrl: string;
  nodeId: string;
  /** This node's load now (asked at every heartbeat). */
  load: () => NodeLoad;
  log: Logger;
}

export class Cluster extends EventEmitter<ClusterEvents> {
  readonly nodeId: string;
  /** This node's base URL for clients and other nodes (set by announce()). */
  publicUrl = '';
  readonly #redis: Redis;
  readonly #load: () => NodeLoad;
  readonly #log: Logger;
  readonly #startedAt = new Date().toISOString();
  /** Stages this node serves, whose leases it renews. */
  readonly #held = new Set<string>();
  /** For each held stage, when this node sent the last renewal (or claim) of its lease that Redis confirmed. */
  readonly #confirmed = new Map<string, number>();
  /** For each held stage, the id of this holding (stage_leases.id). */
  readonly #holding = new Map<string, string>();
  #fence: NodeJS.Timeout | undefined;
  #heartbeat: NodeJS.Timeout | undefined;
  #renewal: NodeJS.Timeout | undefined;
  #redisDown = false;
  #closed = false;

  private constructor(args: ClusterArgs, redis: Redis) {
    super();
    this.nodeId = args.nodeId;
    this.#redis = redis;
    this.#load = args.load;
    this.#log = args.log.child({ node: args.nodeId });
  }

  /**
   * Connects to Redis and clears what an earlier run of this node left placed on it. The node takes part (heartbeat,
   * placement) from announce() on.
   */
  static async open(args: ClusterArgs): Promise<Cluster> {
    const redis = new Redis(args.redisUrl, {
      // Fail fast while Redis is away: a lease renewal or a placement must not wait in a queue for minutes.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      commandTimeout: 2000,
      connectTimeout: 3000,
      lazyConnect: true,
      retryStrategy: () => RECONNECT_MS,
    });
    redis.on('error', () => undefined); // reported through the heartbeat's failures, once per outage
    try {
      await redis.connect();
    } catch (err) {
      redis.disconnect();
      throw new Error(`cannot reach Redis at ${redactUrl(args.redisUrl)}: ${String(err instanceof Error ? err.message : err)}`);
    }
    const c = new Cluster(args, redis);
    c.#readySince = performance.now();
    redis.on('ready', () => {
      c.#readySince = performance.now();
      void c.#renew(); // back after an outage: write the leases again before their fence runs out
    });
    redis.on('close', () => (c.#readySince = null));
    // This node is starting: nothing is on it yet (stages an earlier run of it was given are placed anew).
    const stale = await redis.smembers(KEY.owned(c.nodeId));
    for (const stageId of stale) await redis.eval(RELEASE, 2, KEY.owner(stageId), KEY.owned(c.nodeId), c.nodeId, stageId);
    await redis.del(KEY.owned(c.nodeId));
    c.#renewal = setInterval(() => void c.#renew(), LEASE_RENEW_MS);
    c.#fence = setInterval(() => c.#checkFence(), FENCE_CHECK_MS);
    c.#redisLabel = redactUrl(args.redisUrl);
    return c;
  }

  #redisLabel = '';
  /** Since when the connection to Redis has been up (null while it is down). */
  #readySince: number | null = null;

  /** How long the connection to Redis has been up without a break (0 while it is down). */
  get redisUpMs(): number {
    return this.#readySince === null ? 0 : performance.now() - this.#readySince;
  }

  /** Rate-limit buckets every node shares (in this node's Redis connection). */
  get buckets(): SharedBuckets {
    return (this.#buckets ??= new RedisBuckets(this.#redis));
  }

  #buckets: SharedBuckets | null = null;

  /** Performers' resume tokens, every node's (in this node's Redis connection). */
  get resumeTokens(): ResumeStore {
    return (this.#resume ??= new RedisResumeStore(this.#redis));
  }

  #resume: ResumeStore | null = null;

  /** The id of the node whose lease the stage has, live or not (null: none). */
  holder(stageId: string): Promise<string | null> {
    return unavailableWithoutRedis(() => this.#redis.get(KEY.owner(stageId)));
  }

  /** The node listens at `publicUrl`: it starts beating, and so can be given stages. */
  async announce(publicUrl: string): Promise<void> {
    if (this.#closed || this.#heartbeat) return;
    this.publicUrl = publicUrl.replace(/\/+$/, '');
    await this.#beat();
    this.#heartbeat = setInterval(() => void this.#beat(), HEARTBEAT_MS);
    this.#log.info('cluster node up', { url: this.publicUrl, redis: this.#redisLabel });
  }

  /** Writes the heartbeat now (the load changed in a way the others must know at once: draining). */
  beatNow(): Promise<void> {
    return this.#beat();
  }

  async #beat(): Promise<void> {
    if (this.#closed || this.#withdrawn || !this.publicUrl) return;
    const hb: Heartbeat = { id: this.nodeId, url: this.publicUrl, load: this.#load(), startedAt: this.#startedAt, seenAt: new Date().toISOString() };
    try {
      await this.#redis.multi().set(KEY.node(this.nodeId), JSON.stringify(hb), 'PX', NODE_TTL_MS).sadd(KEY.nodes, this.nodeId).exec();
      if (this.#redisDown) {
        this.#redisDown = false;
        this.#log.info('Redis is back');
        // A restarted Redis lost the leases: write ours again before another node places those stages.
        void this.#renew();
      }
    } catch (err) {
      if (!this.#redisDown) {
        this.#log.warn(`Redis unreachable: stages served here keep going for ${FENCE_MS / 1000} s after their last renewal; no new stage can be placed`, {
          error: String(err),
        });
      }
      this.#redisDown = true;
    }
  }

  #renewing = false;

  async #renew(): Promise<void> {
    if (this.#closed || this.#withdrawn || this.#renewing) return;
    this.#renewing = true;
    try {
      await Promise.all([...this.#held].map((stageId) => this.#renewOne(stageId)));
      await this.#forgetUnclaimed();
    } finally {
      this.#renewing = false;
    }
  }

  /** Renews one lease; a lease another node holds is given up at once. Never throws. */
  async #renewOne(stageId: string): Promise<void> {
    let r: number;
    let sentAt: number;
    try {
      ({ r, sentAt } = await this.#sendRenewal(stageId));
    } catch {
      return; // Redis away: the fence gives the stage up if this lasts
    }
    if (!this.#held.has(stageId)) return; // let go meanwhile (closed, or fenced)
    if (r === 0) {
      this.#drop(stageId, 'lost');
      const holder = (await this.#redis.get(KEY.owner(stageId)).catch(() => null)) ?? 'unknown';
      this.#log.warn('lost the lease of a stage to another node: giving it up', { stageId, holder });
      this.emit('lost', stageId, holder);
      return;
    }
    if (r === 2) this.#log.info('wrote the lease of a stage again (Redis had lost it)', { stageId });
    if (sentAt > (this.#confirmed.get(stageId) ?? -Infinity)) this.#confirmed.set(stageId, sentAt);
  }

  /**
   * Extends this node's lease of a stage (RENEW): r is 0 when another node holds it, 1 when extended, 2 when written
   * again (Redis had lost it). sentAt is when the renewal left, from which the fence counts once it is confirmed.
   */
  async #sendRenewal(stageId: string): Promise<{ r: number; sentAt: number }> {
    const sentAt = performance.now();
    const r = await this.#redis.eval(RENEW, 2, KEY.owner(stageId), KEY.owned(this.nodeId), this.nodeId, String(LEASE_MS), stageId);
    return { r: Number(r), sentAt };
  }

  /**
   * Stages placed here that never came (the request that placed them failed): their leases expired; they no longer
   * weigh on this node's placement count.
   */
  async #forgetUnclaimed(): Promise<void> {
    try {
      const placed = await this.#redis.smembers(KEY.owned(this.nodeId));
      const gone = [];
      for (const stageId of placed) if (!this.#held.has(stageId) && (await this.#redis.get(KEY.owner(stageId))) !== this.nodeId) gone.push(stageId);
      if (gone.length > 0) await this.#redis.srem(KEY.owned(this.nodeId), ...gone);
    } catch {
      // Redis away
    }
  }

  /** Gives up every held stage whose lease this node has not seen renewed for FENCE_MS (cut off from Redis). */
  #checkFence(): void {
    const now = performance.now();
    for (const stageId of [...this.#held]) {
      const age = now - (this.#confirmed.get(stageId) ?? now);
      if (age < FENCE_MS) continue;
      this.#drop(stageId, 'fenced');
      this.#log.error('cut off from Redis: giving a stage up before its lease can expire, so that no other node serves it at the same time', {
        stageId,
        sinceRenewalMs: Math.round(age),
      });
      this.emit('lost', stageId, 'unknown');
    }
  }

  #drop(stageId: string, reason: LeaseEnd): void {
    this.#held.delete(stageId);
    this.#confirmed.delete(stageId);
    const leaseId = this.#holding.get(stageId);
    this.#holding.delete(stageId);
    if (leaseId) this.emit('leaseEnded', stageId, leaseId, reason);
  }

  /** The live nodes, this one included, least loaded first. */
  async nodes(): Promise<NodeInfo[]> {
    const ids = await this.#redis.smembers(KEY.nodes);
    if (ids.length === 0) return [];
    const [beats, counts] = await Promise.all([this.#redis.mget(ids.map(KEY.node)), Promise.all(ids.map((id) => this.#redis.scard(KEY.owned(id))))]);
    const out: NodeInfo[] = [];
    const gone: string[] = [];
    ids.forEach((id, i) => {
      const raw = beats[i];
      if (!raw) return void gone.push(id);
      try {
        const hb = JSON.parse(raw) as Heartbeat;
        out.push({ id: hb.id, url: hb.url, load: hb.load, owned: counts[i] ?? 0, startedAt: hb.startedAt, seenAt: hb.seenAt });
      } catch {
        gone.push(id);
      }
    });
    // Nodes gone for good leave the set (a node coming back adds itself again).
    if (gone.length > 0) await this.#redis.srem(KEY.nodes, ...gone).catch(() => undefined);
    return out.sort(byLoad);
  }

  /** The other live nodes, draining ones included (they still answer the cluster's questions), least loaded first. */
  async others(): Promise<NodeInfo[]> {
    return (await this.nodes()).filter((n) => n.id !== this.nodeId);
  }

  /** The live node that owns the stage, or null when nobody does (or its owner is gone). */
  owner(stageId: string): Promise<NodeInfo | null> {
    return unavailableWithoutRedis(async () => {
      const holder = await this.#redis.get(KEY.owner(stageId));
      if (!holder) return null;
      return (await this.nodes()).find((n) => n.id === holder) ?? null;
    });
  }

  /**
   * The node that serves the stage: its owner, or, when it has none, the least-loaded live node that takes new stages,
   * which is then given the stage's lease (atomically: two nodes placing at once agree on one).
   */
  place(stageId: string): Promise<NodeInfo> {
    return unavailableWithoutRedis(() => this.#place(stageId));
  }

  async #place(stageId: string): Promise<NodeInfo> {
    const nodes = await this.nodes();
    const holder = await this.#redis.get(KEY.owner(stageId));
    const owner = holder ? nodes.find((n) => n.id === holder) : undefined;
    if (owner) return owner;
    // Held by a node that is gone: its lease expires by itself within LEASE_MS; until then nobody else may serve it.
    if (holder) throw new WrongNodeUnavailable(holder);
    const candidates = nodes.filter((n) => !n.load.draining);
    const chosen = candidates[0] ?? nodes.find((n) => n.id === this.nodeId);
    if (!chosen) throw new Error('no live node to place the stage on');
    const got = String(await this.#redis.eval(PLACE, 2, KEY.owner(stageId), KEY.owned(chosen.id), chosen.id, String(LEASE_MS), stageId));
    if (got !== chosen.id) return (await this.owner(stageId)) ?? Promise.reject(new WrongNodeUnavailable(got));
    this.#log.info('placed a stage', { stageId, on: chosen.id, owned: chosen.owned + 1 });
    return { ...chosen, owned: chosen.owned + 1 };
  }

  /**
   * Before this node opens a stage's media: the stage is placed (if it was not) and must be placed here. Throws
   * WrongNodeError with the owner's URL otherwise. From here on this node renews the lease until release().
   */
  async claim(stageId: string): Promise<void> {
    if (this.#closed || this.#withdrawn) throw new RequestError('UNAVAILABLE', 'this node is leaving the cluster', 2);
    const owner = await this.place(stageId);
    if (owner.id !== this.nodeId) throw new WrongNodeError(owner.url, owner.id);
    // The lease may have been written a while ago (placed here by another node): renew it now, so that its fence
    // counts from a renewal this node has seen.
    const { r, sentAt } = await unavailableWithoutRedis(() => this.#sendRenewal(stageId));
    if (r === 0) {
      const now = await this.owner(stageId);
      if (now) throw new WrongNodeError(now.url, now.id);
      throw new WrongNodeUnavailable(String(await this.holder(stageId)));
    }
    this.#held.add(stageId);
    this.#confirmed.set(stageId, sentAt);
    if (!this.#holding.has(stageId)) {
      const leaseId = crypto.randomUUID();
      this.#holding.set(stageId, leaseId);
      this.emit('held', stageId, leaseId);
    }
  }

  /** The stage's media closed here: its lease is let go (if still ours), so it can be placed anew. */
  release(stageId: string): void {
    if (!this.#held.has(stageId) || this.#closed) return;
    this.#drop(stageId, 'released');
    this.#redis.eval(RELEASE, 2, KEY.owner(stageId), KEY.owned(this.nodeId), this.nodeId, stageId).catch(() => undefined);
  }

  /**
   * The node leaves the cluster before it shuts down (its stages were handed over): no more heartbeats, its registry
   * entry and leases are removed at once, so the others take its stages now rather than once its keys expire.
   */
  async withdraw(): Promise<void> {
    if (this.#closed || this.#withdrawn) return;
    this.#withdrawn = true;
    clearInterval(this.#heartbeat);
    clearInterval(this.#renewal);
    clearInterval(this.#fence);
    const held = [...this.#held];
    for (const stageId of held) this.#drop(stageId, 'withdrawn');
    try {
      for (const stageId of held) await this.#redis.eval(RELEASE, 2, KEY.owner(stageId), KEY.owned(this.nodeId), this.nodeId, stageId);
      await this.#redis.multi().del(KEY.node(this.nodeId)).del(KEY.owned(this.nodeId)).srem(KEY.nodes, this.nodeId).exec();
      this.#log.info('left the cluster');
    } catch (err) {
      this.#log.warn('could not leave the cluster cleanly (its keys expire by themselves)', { error: String(err) });
    }
  }

  #withdrawn = false;

  holds(stageId: string): boolean {
    return this.#held.has(stageId);
  }

  /** Stages whose leases this node holds. */
  get held(): string[] {
    return [...this.#held];
  }

  /** Stops the heartbeat and renewals, lets go of this node's leases and its registry entry (withdraw()), and disconnects. */
  async close(): Promise<void> {
    if (this.#closed) return;
    await this.withdraw();
    this.#closed = true;
    this.removeAllListeners();
    await this.#redis.quit().catch(() => this.#redis.disconnect());
  }
}

/** The stage's owner is gone and its lease has not expired yet: the client retries shortly (UNAVAILABLE, Retry-After). */
export class WrongNodeUnavailable extends RequestError {
  constructor(readonly holder: string) {
    super('UNAVAILABLE', `the node serving this stage (${holder}) stopped answering; it moves to another node within ${LEASE_MS / 1000} s`, 2);
    this.name = 'WrongNodeUnavailable';
  }
}

/** Redis unreachable: nothing can be placed or looked up now; the client retries (UNAVAILABLE, Retry-After 2). */
async function unavailableWithoutRedis<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof RequestError) throw err;
    throw new RequestError('UNAVAILABLE', `the cluster's Redis cannot be reached: ${err instanceof Error ? err.message : String(err)}`, 2);
  }
}

function byLoad(a: NodeInfo, b: NodeInfo): number {
  return a.owned - b.owned || a.load.performers - b.load.performers || a.id.localeCompare(b.id);
}

function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'redis://?';
  }
}
