// What went wrong lately, in short sentences, for /healthz and the admin view: broadcasts that did not end by a stop
// (their mix failed, their media server was lost), kept for an hour.
import type { BroadcastEnded } from '../broadcast/services.ts';

const KEEP_MS = 60 * 60_000;
const MAX_KEPT = 100;

export class RecentProblems {
  readonly #items: { at: number; text: string }[] = [];

  /** A broadcast ended: remembered unless it was a plain stop. */
  broadcastEnded(e: BroadcastEnded): void {
    if (e.status === 'complete' && e.problems.length === 0) return;
    const what = e.status === 'failed' ? 'failed' : e.status === 'aborted' ? 'was aborted' : 'ended with problems';
    const extra = e.problems.length > 0 ? ` (${e.problems.join('; ')})` : '';
    this.note(`stage ${e.stageId}: broadcast ${e.broadcastId} ${what}: ${e.reason}${extra}`, e.at.getTime());
  }

  note(text: string, at = Date.now()): void {
    this.#items.push({ at, text: text.slice(0, 500) });
    if (this.#items.length > MAX_KEPT) this.#items.shift();
  }

  /** The problems of the last hour, oldest first. */
  list(now = Date.now()): string[] {
    while (this.#items.length > 0 && now - this.#items[0]!.at > KEEP_MS) this.#items.shift();
    return this.#items.map((i) => i.text);
  }
}
