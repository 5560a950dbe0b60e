// Whether the service takes new work. Draining (graceful shutdown) is decided here once: new stages, broadcasts and
// joins are refused with UNAVAILABLE, /healthz answers 503 `draining`, and no media worker is respawned.
import { EventEmitter } from 'node:events';
import type { Logger } from './logger.ts';
import { RequestError } from './errors.ts';

export class Admission extends EventEmitter<{ draining: [] }> {
  #draining = false;
  readonly #log: Logger;

  constructor(log: Logger) {
    super();
    this.#log = log.child({ component: 'admission' });
  }

  get draining(): boolean {
    return this.#draining;
  }

  /** From now on new work is refused. Idempotent. */
  drain(): void {
    if (this.#draining) return;
    this.#draining = true;
    this.#log.info('draining: new stages, broadcasts and joins are refused');
    this.emit('draining');
  }

  /** Throws UNAVAILABLE while draining. */
  assertAccepting(): void {
    if (this.#draining) throw new RequestError('UNAVAILABLE', 'the server is shutting down');
  }
}
