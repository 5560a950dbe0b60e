// The pages' one helper for acked Socket.IO requests, typed by a namespace's contract (services/shared/*): a wrong
// event name, payload or use of the answer fails `npm run typecheck`. Types only come from the contracts, so zod
// stays out of the browser bundles.
import type { Socket } from 'socket.io-client';
import type { ClientToServerEvents, NamespaceContract, RequestName, RequestPayload, ResponseData, ServerToClientEvents } from '../shared/contract.ts';
import type { Ack, ErrorBody } from '../shared/errors.ts';

/** A socket of one namespace, typed by its contract. */
export type ContractSocket<C extends NamespaceContract> = Socket<ServerToClientEvents<C>, ClientToServerEvents<C>>;

/** A request that failed on this side: not connected, the connection dropped, or no answer in time. */
export interface ClientFailure {
  code: 'DISCONNECTED' | 'TIMEOUT';
  message: string;
}

export type Outcome<T> = { ok: true; data: T } | { ok: false; error: ErrorBody | ClientFailure };

export type Request<C extends NamespaceContract> = <E extends RequestName<C>>(
  event: E,
  payload: RequestPayload<C, E>,
  timeoutMs?: number,
) => Promise<Outcome<ResponseData<C, E>>>;

/** The request function of a namespace: `request('join', {...})` answers the server's ack, or a client failure. */
export function requester<C extends NamespaceContract>(socket: () => ContractSocket<C> | null, defaultTimeoutMs: number): Request<C> {
  return (event, payload, timeoutMs = defaultTimeoutMs) =>
    new Promise((resolve) => {
      const s = socket();
      if (!s?.connected) {
        resolve({ ok: false, error: { code: 'DISCONNECTED', message: `${event}: not connected` } });
        return;
      }
      // The typed socket's emit cannot be called with a generic event name; the contract's types are this function's.
      const untyped: Socket = s;
      untyped.timeout(timeoutMs).emit(event, payload, (err: Error | null, res: Ack<ResponseData<C, typeof event>>) => {
        // Socket.IO fails pending acks at once when the connection drops.
        if (err) resolve({ ok: false, error: s.connected ? { code: 'TIMEOUT', message: `${event} timed out` } : { code: 'DISCONNECTED', message: `${event}: connection lost` } });
        else resolve(res);
      });
    });
}
