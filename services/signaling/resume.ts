// Resume tokens: what lets a performer whose connection was lost (a page reload, a network change, a media server
// replaced) continue as the same performer: same id, so the same track in the archive, the same row in the admin
// view, the same speaker on the timeline. A token is a bearer secret bound to one stage and one performer, issued
// anew at every join (the previous one stops working), and only good with the stage's performer key too.
import crypto from 'node:crypto';

const TOKEN_TTL_MS = 12 * 60 * 60_000;
const MAX_TOKENS = 50_000;

export class ResumeTokens {
  /** token → its performer; insertion order is issue order (the oldest are dropped past MAX_TOKENS). */
  readonly #tokens = new Map<string, { stageId: string; performerId: string; expiresAt: number }>();
  /** performer → their current token (so a new one retires the old). */
  readonly #byPerformer = new Map<string, string>();

  /** A new token for this performer on this stage; any earlier one of theirs stops working. */
  issue(stageId: string, performerId: string, now = Date.now()): string {
    const previous = this.#byPerformer.get(performerId);
    if (previous) this.#tokens.delete(previous);
    const token = crypto.randomBytes(18).toString('base64url');
    this.#tokens.set(token, { stageId, performerId, expiresAt: now + TOKEN_TTL_MS });
    this.#byPerformer.set(performerId, token);
    while (this.#tokens.size > MAX_TOKENS) {
      const [oldest, entry] = this.#tokens.entries().next().value!;
      this.#tokens.delete(oldest);
      if (this.#byPerformer.get(entry.performerId) === oldest) this.#byPerformer.delete(entry.performerId);
    }
    return token;
  }

  /** The performer a token resumes on this stage, or null (unknown, expired, or another stage's). Single use. */
  redeem(stageId: string, token: string, now = Date.now()): string | null {
    const entry = this.#tokens.get(token);
    if (!entry || entry.stageId !== stageId) return null;
    this.#tokens.delete(token);
    if (this.#byPerformer.get(entry.performerId) === token) this.#byPerformer.delete(entry.performerId);
    return entry.expiresAt > now ? entry.performerId : null;
  }

  /** The stage closed: its performers cannot be resumed any more. */
  forgetStage(stageId: string): void {
    for (const [token, entry] of this.#tokens) {
      if (entry.stageId !== stageId) continue;
      this.#tokens.delete(token);
      if (this.#byPerformer.get(entry.performerId) === token) this.#byPerformer.delete(entry.performerId);
    }
  }
}
