// Validating, running and acking one Socket.IO request, for every namespace: the payload is parsed with the
// contract's schema (services/shared/*), the handler runs, and the ack is { ok, data } or { ok: false, error }.
// Nothing a client sends can throw out of here.
import { isDbUnavailable } from '../db/writeBehind.ts';
import { RequestError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { NamespaceContract } from '../shared/contract.ts';
import type { Ack, ErrorBody } from '../shared/errors.ts';

export async function handleRequest(
  contract: NamespaceContract,
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
  const parsed = contract.requests[name]!.request.safeParse(args[0]);
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

/** Registers every request of the contract on a socket, and refuses events that are not among them. */
export function serveRequests(
  socket: { on(event: string, fn: (...args: unknown[]) => void): unknown; onAny(fn: (event: unknown, ...args: unknown[]) => void): unknown },
  contract: NamespaceContract,
  handlers: Record<string, (payload: never) => Promise<unknown>>,
  log: Logger,
): void {
  for (const name of Object.keys(contract.requests)) {
    const handler = handlers[name] as (payload: unknown) => Promise<unknown>;
    socket.on(name, (...args: unknown[]) => void handleRequest(contract, name, args, handler, log));
  }
  socket.onAny((event: unknown, ...args: unknown[]) => refuseUnknown(contract, event, args));
}

/** Refuses events that are not requests of this namespace, with an error ack when the client asked for one. */
export function refuseUnknown(contract: NamespaceContract, event: unknown, args: unknown[]): void {
  if (typeof event === 'string' && Object.hasOwn(contract.requests, event)) return;
  const ack = args.at(-1);
  if (typeof ack === 'function') {
    (ack as (r: Ack<never>) => void)({ ok: false, error: { code: 'BAD_REQUEST', message: `unknown event ${String(event).slice(0, 64)}` } });
  }
}

export function toErrorBody(err: unknown, request: string, log: Logger): ErrorBody {
  if (err instanceof RequestError) return err.body;
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
