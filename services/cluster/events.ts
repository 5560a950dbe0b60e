// Cross-node events (docs/cluster.md). The Socket.IO namespaces whose clients may sit on any node, /listen and /admin,
// are joined across nodes by Socket.IO's Redis streams adapter (@socket.io/redis-streams-adapter): a broadcast to a
// room (a stage's timeline events and on-air status) reaches that room's sockets on every node, through a Redis stream
// that outlives a Redis connection's breaks (each node reads on from the last entry it saw). The performers' namespace
// keeps Socket.IO's in-memory adapter: a stage's performers are all on its owner, and their levels (5 a second per
// stage) would only load Redis.
//
// Requests between nodes (a listener's comment posted on a node that does not serve the stage, an admin view asking
// every node for its workers and stages) are server-side events over the same adapter: ask() publishes a question
// with an id, the nodes that can answer publish their answer with that id, and the asker takes what came within its
// own time limit (the adapter's own acknowledgements wait a fixed 5 s for every node it has seen, a dead one included).
import crypto from 'node:crypto';
import { createAdapter } from '@socket.io/redis-streams-adapter';
import { Redis } from 'ioredis';
import type { Namespace } from 'socket.io';
import type { Logger } from '../logger.ts';

/** While Redis is away the bus's connections are tried again this often. */
const RECONNECT_MS = 250;
/** How long one blocking read of the stream waits (also how long a closing bus may take to let go of it). */
const READ_BLOCK_MS = 1000;
/** How long a closing bus waits for Redis to answer its QUIT. */
const QUIT_WAIT_MS = 1000;

interface Question {
  id: string;
  payload: unknown;
}

interface Answer {
  id: string;
  from: string;
  reply: unknown;
}

/** What the namespaces of a cluster node need of the cluster: the bus, this node's id and how many others are live. */
export interface ClusterLink {
  bus: ClusterBus;
  nodeId: string;
  /** How many other live nodes there are now. */
  otherNodes: () => Promise<number>;
  /** The live node that serves the stage (null: none). */
  owner: (stageId: string) => Promise<{ id: string; url: string } | null>;
}

type Pending = { replies: unknown[]; enough: (n: number) => boolean; done: () => void };

export class ClusterBus {
  readonly #redis: Redis;
  /** The adapter's own connections (a stream reader, a subscriber): duplicates of #redis, closed with the bus. */
  readonly #duplicates: Redis[] = [];
  readonly #factory: ReturnType<typeof createAdapter>;
  readonly #nodeId: string;
  readonly #log: Logger;
  readonly #pending = new Map<string, Pending>();
  readonly #listening = new Set<string>();
  /** The adapters attach() gave namespaces: closed with the bus (the Socket.IO server's own close leaves them). */
  readonly #adapters: Namespace['adapter'][] = [];
  #closed = false;

  private constructor(redis: Redis, nodeId: string, log: Logger) {
    this.#redis = redis;
    this.#nodeId = nodeId;
    this.#log = log.child({ component: 'cluster-bus' });
    // The adapter publishes its ephemeral messages (server-side events) without handling a failure: a rejected
    // PUBLISH (Redis away for 5 s, or the bus closing) would be an unhandled rejection, which ends a Node process.
    const publish = redis.publish.bind(redis) as (...a: unknown[]) => Promise<number>;
    (redis as unknown as { publish: (...a: unknown[]) => Promise<number> }).publish = (...args: unknown[]) => {
      const p = publish(...args);
      p.catch(() => undefined);
      return p;
    };
    // Its own connections (duplicates) connect by themselves, not through a connect() whose failure nobody handles.
    redis.options.lazyConnect = false;
    const duplicate = redis.duplicate.bind(redis);
    redis.duplicate = (...args: Parameters<Redis['duplicate']>) => {
      const d = duplicate(...args);
      this.#duplicates.push(d);
      return d;
    };
    this.#factory = createAdapter(redis, { streamName: 'sr:sio', channelPrefix: 'sr:sio', blockTimeInMs: READ_BLOCK_MS, onlyPlaintext: true });
  }

  static async open(redisUrl: string, nodeId: string, log: Logger): Promise<ClusterBus> {
    // Its own connections, apart from the leases' (whose commands must fail fast): a blocking read must not be cut
    // by a command timeout, and what is published while Redis restarts waits for it (up to 20 tries).
    const redis = new Redis(redisUrl, { lazyConnect: true, retryStrategy: () => RECONNECT_MS, connectTimeout: 3000 });
    redis.on('error', () => undefined); // the cluster's heartbeat reports Redis outages
    await redis.connect();
    return new ClusterBus(redis, nodeId, log);
  }

  /** Joins the namespace across nodes: its broadcasts reach its sockets on every node. Before any client connects. */
  attach(nsp: Namespace): void {
    const local = nsp.adapter;
    // What Namespace does with the server's adapter, for this namespace alone.
    const adapter = (this.#factory as unknown as (n: Namespace) => Namespace['adapter'])(nsp);
    nsp.adapter = adapter;
    this.#adapters.push(adapter);
    local.close();
    void Promise.resolve(adapter.init()).catch(() => undefined);
  }

  /**
   * Answers `topic` questions asked on the namespace by other nodes: `answer` returns the reply, or null when this node
   * has none (it does not serve the stage asked about). A throw is logged and answered with nothing.
   */
  serve(nsp: Namespace, topic: string, answer: (payload: unknown) => Promise<unknown> | unknown): void {
    const on = nsp.on.bind(nsp) as unknown as (ev: string, fn: (q: Question) => void) => void;
    on(`${topic}:ask`, (q: Question) => {
      if (this.#closed || typeof q?.id !== 'string') return;
      void (async () => {
        try {
          const reply = await answer(q.payload);
          if (reply === null || reply === undefined || this.#closed) return;
          nsp.serverSideEmit(`${topic}:answer`, { id: q.id, from: this.#nodeId, reply } satisfies Answer);
        } catch (err) {
          this.#log.warn('could not answer another node', { topic, error: err instanceof Error ? err.message : String(err) });
        }
      })();
    });
  }

  /**
   * Asks the other nodes on the namespace; resolves with the replies that came within `timeoutMs`, or as soon as
   * `enough(replies so far)` holds.
   */
  ask(nsp: Namespace, topic: string, payload: unknown, opts: { timeoutMs: number; enough: (count: number) => boolean }): Promise<unknown[]> {
    if (this.#closed) return Promise.resolve([]);
    this.#listen(nsp, topic);
    const id = crypto.randomUUID();
    return new Promise((resolve) => {
      const p: Pending = {
        replies: [],
        enough: opts.enough,
        done: () => {
          clearTimeout(timer);
          this.#pending.delete(id);
          resolve(p.replies);
        },
      };
      const timer = setTimeout(() => p.done(), opts.timeoutMs);
      this.#pending.set(id, p);
      nsp.serverSideEmit(`${topic}:ask`, { id, payload } satisfies Question);
    });
  }

  #listen(nsp: Namespace, topic: string): void {
    const key = `${nsp.name}#${topic}`;
    if (this.#listening.has(key)) return;
    this.#listening.add(key);
    const on = nsp.on.bind(nsp) as unknown as (ev: string, fn: (a: Answer) => void) => void;
    on(`${topic}:answer`, (a: Answer) => {
      const p = typeof a?.id === 'string' ? this.#pending.get(a.id) : undefined;
      if (!p) return;
      p.replies.push(a.reply);
      if (p.enough(p.replies.length)) p.done();
    });
  }

  /** After the Socket.IO server closed (its adapters published their goodbyes): lets go of every connection. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const p of [...this.#pending.values()]) p.done();
    // Each says goodbye to the other nodes (they stop counting this one) and, the last one, stops the stream's reader.
    for (const a of this.#adapters) a.close();
    for (const d of this.#duplicates) d.disconnect();
    // A polite QUIT, but never waited for long: a connection cut off from Redis would wait for its answer forever.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.#redis.quit().catch(() => undefined), new Promise((r) => (timer = setTimeout(r, QUIT_WAIT_MS)))]);
    clearTimeout(timer);
    this.#redis.disconnect();
  }
}
