// Small pieces every REST router shares.
import type { NextFunction, Request, Response } from 'express';
import type { z } from 'zod';
import { RequestError } from '../errors.ts';

type AsyncHandler = (req: Request, res: Response) => Promise<void>;

/** An async route handler whose rejections reach Express's error handler. */
export const wrap = (fn: AsyncHandler) => (req: Request, res: Response, next: NextFunction) => {
  fn(req, res).catch(next);
};

/** Parses value with schema, or throws a BAD_REQUEST naming what was invalid (`body`, `query`, `stage id`...). */
export function parseWith<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const r = schema.safeParse(value);
  if (!r.success) {
    const issue = r.error.issues[0];
    const where = issue && issue.path.length > 0 ? `${issue.path.join('.')}: ` : '';
    throw new RequestError('BAD_REQUEST', `invalid ${what}: ${where}${issue?.message ?? 'bad value'}`);
  }
  return r.data;
}

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|::ffff:127\.\d+\.\d+\.\d+)$/;

/**
 * The client's address as Express's `trust proxy: 'loopback'` sees it: X-Forwarded-For is believed only as far as the
 * hops are loopback (a local reverse proxy), read from the right.
 */
export function clientAddress(direct: string, forwardedFor: string | string[] | undefined): string {
  const hops = (Array.isArray(forwardedFor) ? forwardedFor.join(',') : forwardedFor ?? '')
    .split(',')
    .map((h) => h.trim())
    .filter((h) => h.length > 0 && h.length <= 64);
  let addr = direct;
  while (LOOPBACK.test(addr) && hops.length > 0) addr = hops.pop()!;
  return addr.startsWith('::ffff:') ? addr.slice(7) : addr;
}
