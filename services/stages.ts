import crypto from 'node:crypto';
import type { Db } from './db/db.ts';
import { PerformerSessionRepo, StageRepo } from './db/repositories.ts';
import type { Logger } from './logger.ts';
import { RequestError } from './sfu/errors.ts';
import type { StageRegistry } from './sfu/registry.ts';
import type { Stage } from './sfu/stage.ts';
import type { PerformerInfo, StageStatus } from './shared/protocol.ts';

export interface StageUrls {
  performerUrl: string;
  listenUrl: string;
  hlsUrl: string;
}

export interface StageView {
  id: string;
  title: string;
  status: StageStatus;
  performers: PerformerInfo[];
  hlsUrl: string;
  listenUrl: string;
  startedAt: string | null;
  endedAt: string | null;
}

export function hashKey(key: string): string {
  return crypto.createHash('sha256').update(key, 'utf8').digest('hex');
}

/** Constant-time comparison of a presented key against the stored hash. */
export function keyMatches(presented: string, storedHash: string): boolean {
  const a = Buffer.from(hashKey(presented), 'hex');
  const b = Buffer.from(storedHash, 'hex');
  return a.length === b.length && crypto.timingSafeEqual(a, b);
}

/** Stage records (PostgreSQL) joined with their live media (the registry). */
export class StageService {
  readonly #stages: StageRepo;
  readonly #sessions: PerformerSessionRepo;
  readonly #registry: StageRegistry;
  readonly #log: Logger;
  readonly #baseUrl: () => string;
  readonly #hlsBase: () => string;

  constructor(args: { db: Db; registry: StageRegistry; log: Logger; baseUrl: () => string; publicHlsBaseUrl: string | null }) {
    this.#stages = new StageRepo(args.db);
    this.#sessions = new PerformerSessionRepo(args.db);
    this.#registry = args.registry;
    this.#log = args.log.child({ component: 'stages' });
    this.#baseUrl = args.baseUrl;
    this.#hlsBase = () => args.publicHlsBaseUrl ?? `${args.baseUrl()}/live`;
    this.#registry.on('stageOpened', (stage) => this.#recordSessions(stage));
  }

  urls(id: string, performerKey?: string): StageUrls {
    const base = this.#baseUrl();
    return {
      performerUrl: `${base}/stage/${encodeURIComponent(id)}${performerKey ? `?key=${encodeURIComponent(performerKey)}` : ''}`,
      listenUrl: `${base}/listen/${encodeURIComponent(id)}`,
      hlsUrl: `${this.#hlsBase()}/${encodeURIComponent(id)}/index.m3u8`,
    };
  }

  async create(title: string): Promise<{ id: string; title: string; status: StageStatus; performerKey: string } & StageUrls> {
    const id = crypto.randomBytes(9).toString('base64url');
    // 192 random bits; only its hash is stored.
    const performerKey = crypto.randomBytes(24).toString('base64url');
    await this.#stages.create({ id, title, performerKeyHash: hashKey(performerKey) });
    this.#log.info('stage created', { stageId: id });
    return { id, title, status: 'idle', performerKey, ...this.urls(id, performerKey) };
  }

  async view(id: string): Promise<StageView | null> {
    const rec = await this.#stages.get(id);
    if (!rec) return null;
    const { hlsUrl, listenUrl } = this.urls(id);
    return {
      id: rec.id,
      title: rec.title,
      status: rec.status as StageStatus,
      performers: this.#registry.get(id)?.performers.map((p) => p.info()) ?? [],
      hlsUrl,
      listenUrl,
      startedAt: rec.startedAt?.toISOString() ?? null,
      endedAt: rec.endedAt?.toISOString() ?? null,
    };
  }

  /** Checks a performer key. Unknown stages and wrong keys are told apart: the stage id is not a secret. */
  async authorize(id: string, key: string): Promise<{ id: string; title: string; status: StageStatus }> {
    const rec = await this.#stages.get(id);
    if (!rec) throw new RequestError('NOT_FOUND', `no stage ${id}`);
    if (!keyMatches(key, rec.performerKeyHash)) throw new RequestError('UNAUTHORIZED', 'wrong performer key for this stage');
    if (rec.status === 'ended') throw new RequestError('INVALID_STATE', 'this stage has ended');
    return { id: rec.id, title: rec.title, status: rec.status as StageStatus };
  }

  #recordSessions(stage: Stage): void {
    // A leave may come before the join's insert finished; closing waits for it.
    const opening = new Map<string, Promise<void>>();
    stage.on('performerJoined', (p) => {
      const done = this.#sessions.open({ id: p.id, stageId: stage.id, displayName: p.displayName }).catch((err: unknown) => {
        this.#log.error('could not record performer session', { stageId: stage.id, performerId: p.id, error: String(err) });
      });
      opening.set(p.id, done);
    });
    stage.on('performerLeft', (performerId, reason) => {
      const opened = opening.get(performerId) ?? Promise.resolve();
      opening.delete(performerId);
      opened
        .then(() => this.#sessions.close(performerId, reason))
        .catch((err: unknown) => {
          this.#log.error('could not close performer session', { stageId: stage.id, performerId, error: String(err) });
        });
    });
  }
}
