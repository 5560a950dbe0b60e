// The stages as records: creating one, reading what it is (its record joined with who is on it now), and checking a
// performer key. Going on and off air is services/broadcast/onAir.ts.
import crypto from 'node:crypto';
import type { Admission } from '../admission.ts';
import { hashKey, keyMatches, newSecret } from '../auth.ts';
import type { Db } from '../db/db.ts';
import { StageRepo, type Stage as StageRecord } from '../db/repositories.ts';
import { RequestError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { StageRegistry } from '../sfu/registry.ts';
import type { StageSummary } from '../shared/model.ts';
import { STAGE_LIST_MAX, type StageCreated, type StageList, type StageView } from '../shared/rest.ts';
import type { StageLinks } from './links.ts';

export class StageCatalog {
  readonly #repo: StageRepo;
  readonly #registry: StageRegistry;
  readonly #admission: Admission;
  readonly #log: Logger;
  readonly links: StageLinks;

  constructor(args: { db: Db; registry: StageRegistry; admission: Admission; links: StageLinks; log: Logger }) {
    this.#repo = new StageRepo(args.db);
    this.#registry = args.registry;
    this.#admission = args.admission;
    this.links = args.links;
    this.#log = args.log.child({ component: 'stages' });
  }

  async create(title: string): Promise<StageCreated> {
    this.#admission.assertAccepting();
    const id = crypto.randomBytes(9).toString('base64url');
    const performerKey = newSecret();
    await this.#repo.create({ id, title, performerKeyHash: hashKey(performerKey) });
    this.#log.info('stage created', { stageId: id });
    return { id, title, status: 'idle', performerKey, ...this.links.urls(id, performerKey) };
  }

  /** The stage's record, or null. */
  record(id: string): Promise<StageRecord | null> {
    return this.#repo.get(id);
  }

  async view(id: string): Promise<StageView | null> {
    const rec = await this.#repo.get(id);
    if (!rec) return null;
    return { ...this.#public(rec), performers: this.#registry.get(id)?.performers.map((p) => p.info()) ?? [] };
  }

  /** What the stage view and the admin's list share: the record's public fields and the public links. */
  #public(rec: StageRecord) {
    const { hlsUrl, listenUrl } = this.links.urls(rec.id);
    return {
      id: rec.id,
      title: rec.title,
      status: rec.status,
      hlsUrl,
      listenUrl,
      startedAt: rec.startedAt?.toISOString() ?? null,
      endedAt: rec.endedAt?.toISOString() ?? null,
    };
  }

  /** The newest stages first (the admin's list). */
  async list(): Promise<StageList> {
    const recs = await this.#repo.list(STAGE_LIST_MAX);
    return {
      stages: recs.map((rec) => ({
        ...this.#public(rec),
        performers: this.#registry.get(rec.id)?.performers.length ?? 0,
        createdAt: rec.createdAt.toISOString(),
      })),
    };
  }

  /** Checks a performer key. Unknown stages and wrong keys are told apart: the stage id is not a secret. */
  async checkKey(id: string, key: string): Promise<StageSummary> {
    const rec = await this.#repo.get(id);
    if (!rec) throw new RequestError('NOT_FOUND', `no stage ${id}`);
    if (!keyMatches(key, rec.performerKeyHash)) throw new RequestError('UNAUTHORIZED', 'wrong performer key for this stage');
    return { id: rec.id, title: rec.title, status: rec.status };
  }

  /** checkKey, and the stage must still be open to performers. */
  async authorize(id: string, key: string): Promise<StageSummary> {
    const rec = await this.checkKey(id, key);
    if (rec.status === 'ended') throw new RequestError('INVALID_STATE', 'this stage has ended');
    return rec;
  }
}
