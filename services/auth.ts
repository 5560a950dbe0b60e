// Secrets, in one place: performer keys (only their hash is stored) and the admin token, always compared in constant
// time, and how a Bearer token is read from a request.
import crypto from 'node:crypto';

/** 192 random bits, URL-safe: a new stage's performer key. */
export function newSecret(): string {
  return crypto.randomBytes(24).toString('base64url');
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

/** Constant-time comparison of a presented token with the expected one (hashed first, so lengths never leak). */
export function tokenMatches(presented: string, expected: string): boolean {
  const a = crypto.createHash('sha256').update(presented).digest();
  const b = crypto.createHash('sha256').update(expected).digest();
  return crypto.timingSafeEqual(a, b);
}

/** The token of an `Authorization: Bearer <token>` header, or null. */
export function bearerToken(authorization: string | undefined): string | null {
  return /^Bearer (.+)$/.exec(authorization ?? '')?.[1] ?? null;
}
