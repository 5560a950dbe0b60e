// Going on and off air, as the API asks for it (REST and Socket.IO): one transition of a stage at a time, the stage's
// record checked first. The broadcast itself is the stage's child (services/broadcast/broadcast.ts).
import type { Admission } from '../admission.ts';
import { interruptForTakeover } from './takeover.ts';
import type { Db } from '../db/db.ts';
import { RequestError } from '../errors.ts';
import type { StageRegistry } from '../sfu/registry.ts';
import type { StageView } from '../shared/rest.ts';
import type { StageCatalog } from '../stages/catalog.ts';

/** How long a stop waits for its end to be in the database before answering anyway. */
const RECORD_WAIT_MS = 2_000;

export class OnAir {
  readonly #catalog: StageCatalog;
  readonly #registry: StageRegistry;
  readonly #admission: Admission;
  readonly #db: Db;
  /** Start/stop of one stage run one at a time. */
  readonly #transitions = new Map<string, Promise<unknown>>();

  constructor(args: { catalog: StageCatalog; registry: StageRegistry; admission: Admission; db: Db }) {
    this.#db = args.db;
    this.#catalog = args.catalog;
    this.#registry = args.registry;
    this.#admission = args.admission;
  }

  #serialized<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.#transitions.get(id) ?? Promise.resolve();
    const next = prev.catch(() => undefined).then(fn);
    this.#transitions.set(id, next);
    void next
      .finally(() => {
        if (this.#transitions.get(id) === next) this.#transitions.delete(id);
      })
      .catch(() => undefined);
    return next;
  }

  /**
   * Goes on air: the mix starts (with or without performers) and HLS appears. Starting a live stage again is a no-op
   * (`changed: false`); an ended stage cannot start again.
   */
  start(id: string): Promise<{ view: StageView; changed: boolean }> {
    return this.#serialized(id, async () => {
      this.#admission.assertAccepting();
      const rec = await this.#catalog.record(id);
      if (!rec) throw new RequestError('NOT_FOUND', `no stage ${id}`);
      if (rec.status === 'ended') throw new RequestError('INVALID_STATE', 'this stage has ended; create a new one');
      const stage = await this.#registry.open(id);
      const changed = !stage.onAir;
      await stage.startBroadcast();
      return { view: (await this.#catalog.view(id))!, changed };
    });
  }

  /** Goes off air: the playlist gets ENDLIST and the stage ends. Stopping an ended stage is a no-op. */
  stop(id: string, reason = 'stopped'): Promise<{ view: StageView; changed: boolean }> {
    return this.#serialized(id, async () => {
      const rec = await this.#catalog.record(id);
      if (!rec) throw new RequestError('NOT_FOUND', `no stage ${id}`);
      if (rec.status === 'ended') return { view: (await this.#catalog.view(id))!, changed: false };
      const stage = this.#registry.get(id);
      if (rec.status !== 'live' || !stage?.onAir) throw new RequestError('INVALID_STATE', 'this stage is not on air');
      const broadcast = stage.broadcast;
      await stage.stopBroadcast(reason, 'complete');
      // The end is recorded through the write-behind (journaled): normally at once; while the database is away the
      // answer still says what happened, and the record follows when it is back.
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([broadcast?.recorded, new Promise((r) => (timer = setTimeout(r, RECORD_WAIT_MS)))]);
      clearTimeout(timer);
      const view = (await this.#catalog.view(id))!;
      return { view: { ...view, status: 'ended', endedAt: view.endedAt ?? new Date().toISOString() }, changed: true };
    });
  }

  /**
   * Cluster mode: this node takes over a live stage whose node died (services/cluster/takeover.ts): the broadcast that
   * node left open is ended (aborted) and a new one continues its live playlist here. Does nothing when the stage is
   * no longer live in the database or already on air here.
   */
  takeOver(id: string, reason: string): Promise<boolean> {
    return this.#serialized(id, async () => {
      const rec = await this.#catalog.record(id);
      if (!rec || rec.status !== 'live' || this.#registry.get(id)?.onAir) return false;
      const stage = await this.#registry.open(id);
      if (stage.onAir) return false;
      const taken = await interruptForTakeover(this.#db, id, reason, stage.performers.map((p) => p.sessionId));
      await stage.startBroadcast({ continues: taken?.continues ?? null });
      return true;
    });
  }

  /** The broadcasts on air now (stage and broadcast ids). */
  live(): { stageId: string; broadcastId: string }[] {
    return this.#registry.stages.flatMap((s) => (s.broadcast ? [{ stageId: s.id, broadcastId: s.broadcast.id }] : []));
  }

  /** Ends every broadcast on air (graceful shutdown), each as a stop. */
  async stopAll(reason: string): Promise<void> {
    await Promise.all(this.live().map(({ stageId }) => this.stop(stageId, reason).catch(() => undefined)));
  }
}
