// Resume tokens: what lets a performer whose connection was lost (a page reload, a network change, a media server
// replaced) continue as the same performer: same id, so the same track in the archive, the same row in the admin
// view, the same speaker on the timeline. A token is a bearer secret bound to one stage and one performer, issued
// anew at every join (the previous one stops working), and only good with the stage's performer key too.
// Cluster mode keeps them in Redis (services/cluster/resume.ts), so that a performer who moves with their stage to
// another node continues there as the same performer.
import crypto from 'node:crypto';

/** Where the signaling server keeps resume tokens. */
export interface ResumeStore {
  /** A new token for this performer on this stage; any earlier one of theirs stops working. */
  issue(stageId: string, performerId: string): Promise<string>;
  /** The performer a token resumes on this stage, or null (unknown, expired, or another stage's). Single use. */
  redeem(stageId: string, token: string): Promise<string | null>;
  /** The stage closed on this node. */
  stageClosed(stageId: string): void;
}

const MAX_TOKENS = 50_000;

/** A new resume token: 18 random bytes, base64url (a bearer secret). */
export const newResumeToken = (): string => crypto.randomBytes(18).toString('base64url');

/** One node's tokens, in memory: a stage that closes here takes its performers' tokens with it. */
export class LocalResumeStore implements ResumeStore {
  readonly tokens = new ResumeTokens();
  async issue(stageId: string, performerId: string): Promise<string> {
    return this.tokens.issue(stageId, performerId);
  }
  async redeem(stageId: string, token: string): Promise<string | null> {
    return this.tokens.redeem(stageId, token);
  }
  stageClosed(stageId: string): void {
    this.tokens.forgetStage(stageId);
  }
}

export const RESUME_TOKEN_TTL_MS = 12 * 60 * 60_000;

export class ResumeTokens {
  /** token → its performer; insertion order is issue order (the oldest are dropped past MAX_TOKENS). */
  readonly #tokens = new Map<string, { stageId: string; performerId: string; expiresAt: number }>();
  /** performer → their current token (so a new one retires the old). */
  readonly #byPerformer = new Map<string, string>();

  /** A new token for this performer on this stage; any earlier one of theirs stops working. */
  issue(stageId: string, performerId: string, now = Date.now()): string {
    const previous = this.#byPerformer.get(performerId);
    if (previous) this.#tokens.delete(previous);
    const token = newResumeToken();
    this.#tokens.set(token, { stageId, performerId, expiresAt: now + RESUME_TOKEN_TTL_MS });
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
