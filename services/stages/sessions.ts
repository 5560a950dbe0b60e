// Performer sessions in the database: one row per connection a performer had on a stage (journaled writes, in order,
// so a session's close always follows its open, through an outage and a crash).
import type { Performer } from '../sfu/performer.ts';
import type { StageRegistry } from '../sfu/registry.ts';
import type { Stage } from '../sfu/stage.ts';
import type { Writes } from '../broadcast/services.ts';

export class SessionRecorder {
  readonly #registry: StageRegistry;
  readonly #writes: Writes;
  readonly #onStage = (stage: Stage) => this.#watch(stage);
  /** Open sessions by performer (the one whose close is still to be written). */
  readonly #open = new Map<string, string>();

  constructor(args: { registry: StageRegistry; writes: Writes }) {
    this.#registry = args.registry;
    this.#writes = args.writes;
    this.#registry.on('stageOpened', this.#onStage);
  }

  #watch(stage: Stage): void {
    stage.on('performerJoined', (p: Performer) => {
      this.#open.set(p.id, p.sessionId);
      void this.#writes.write('session.open', { id: p.sessionId, performerId: p.id, stageId: stage.id, displayName: p.displayName, at: new Date().toISOString() });
    });
    stage.on('performerLeft', (performerId, reason) => {
      const sessionId = this.#open.get(performerId);
      if (!sessionId) return;
      this.#open.delete(performerId);
      void this.#writes.write('session.close', { id: sessionId, reason, at: new Date().toISOString() });
    });
  }

  close(): void {
    this.#registry.off('stageOpened', this.#onStage);
  }
}
