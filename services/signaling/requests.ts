// Validating, running and acking one Socket.IO request: shared by the performer (/stage) and listener (/listen)
// namespaces. Nothing a client sends can throw out of here.
import type { z } from 'zod';
import type { Logger } from '../logger.ts';
import { RequestError } from '../sfu/errors.ts';
import type { Ack, ErrorBody } from '../shared/protocol.ts';
import { isDbUnavailable } from '../db/writeBehind.ts';

export async function handleRequest(
  schemas: Record<string, z.ZodType>,
  name: string,
  args: unknown[],
  handler: (payload: unknown) => Promise<unknown>,
  log: Logger,
): Promise<void> {
  const ack = args.length > 0 && typeof args[args.length - 1] === 'function' ? (args.pop() as (r: Ack<unknown>) => void) : null;
  if (!ack) {
    log.debug('request without ack ignored', { event: name });
    return;
  }
  if (args.length !== 1) {
    ack({ ok: false, error: { code: 'BAD_REQUEST', message: `${name} takes exactly one payload object` } });
    return;
  }
  const parsed = schemas[name]!.safeParse(args[0]);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue && issue.path.length > 0 ? `${issue.path.join('.')}: ` : '';
    ack({ ok: false, error: { code: 'BAD_REQUEST', message: `invalid ${name}: ${where}${issue?.message ?? 'bad payload'}` } });
    return;
  }
  try {
    ack({ ok: true, data: await handler(parsed.data) });
  } catch (err) {
    ack({ ok: false, error: toErrorBody(err, name, log) });
  }
}

/** Refuses events that are not requests of this namespace, with an error ack when the client asked for one. */
export function refuseUnknown(schemas: Record<string, unknown>, event: unknown, args: unknown[]): void {
  if (typeof event === 'string' && Object.hasOwn(schemas, event)) return;
  const ack = args.at(-1);
  if (typeof ack === 'function') {
    (ack as (r: Ack<never>) => void)({ ok: false, error: { code: 'BAD_REQUEST', message: `unknown event ${String(event).slice(0, 64)}` } });
  }
}

export function toErrorBody(err: unknown, request: string, log: Logger): ErrorBody {
  if (err instanceof RequestError) return { code: err.code, message: err.message };
  if (err instanceof TypeError) return { code: 'BAD_REQUEST', message: err.message };
  if (err instanceof Error && err.name === 'UnsupportedError') return { code: 'BAD_REQUEST', message: err.message };
  if (err instanceof Error && err.name === 'InvalidStateError') return { code: 'INVALID_STATE', message: err.message };
  if (isDbUnavailable(err)) {
    log.warn('request failed: the database is unreachable', { request, error: String(err) });
    return { code: 'UNAVAILABLE', message: 'the database is unreachable; try again shortly' };
  }
  log.error('request failed', { request, error: err instanceof Error ? err.stack : String(err) });
  return { code: 'INTERNAL', message: 'internal error' };
}
