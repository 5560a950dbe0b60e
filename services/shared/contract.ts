// How a Socket.IO namespace's contract is written once (zod schemas) and its TypeScript types derived: the server
// validates requests with the schemas, and the server, the pages and the tests share the derived event maps.
// The browser imports only types from here.
import type { z } from 'zod';
import type { Ack } from './errors.ts';

export interface NamespaceContract {
  readonly name: string;
  /** Client → server requests: each is acked with an {@link Ack} of its response. */
  readonly requests: Readonly<Record<string, { readonly request: z.ZodType; readonly response: z.ZodType }>>;
  /** Server → client notifications (no ack). */
  readonly events: Readonly<Record<string, z.ZodType>>;
}

/** Keeps the literal types of a contract (so names and schemas stay precise) while checking its shape. */
export function defineNamespace<const C extends NamespaceContract>(contract: C): C {
  return contract;
}

export type RequestName<C extends NamespaceContract> = keyof C['requests'] & string;
/** What a client sends (the schema's input). */
export type RequestPayload<C extends NamespaceContract, E extends RequestName<C>> = z.input<C['requests'][E]['request']>;
/** What a handler receives, after validation (the schema's output). */
export type ParsedRequest<C extends NamespaceContract, E extends RequestName<C>> = z.output<C['requests'][E]['request']>;
export type ResponseData<C extends NamespaceContract, E extends RequestName<C>> = z.output<C['requests'][E]['response']>;
export type EventName<C extends NamespaceContract> = keyof C['events'] & string;
export type EventPayload<C extends NamespaceContract, E extends EventName<C>> = z.output<C['events'][E]>;

/** Socket.IO's client → server event map. */
export type ClientToServerEvents<C extends NamespaceContract> = {
  [E in RequestName<C>]: (payload: RequestPayload<C, E>, ack: (res: Ack<ResponseData<C, E>>) => void) => void;
};

/** Socket.IO's server → client event map. */
export type ServerToClientEvents<C extends NamespaceContract> = {
  [E in EventName<C>]: (payload: EventPayload<C, E>) => void;
};

/** A server's handlers: one per request, given the validated payload. */
export type RequestHandlers<C extends NamespaceContract> = {
  [E in RequestName<C>]: (payload: ParsedRequest<C, E>) => Promise<ResponseData<C, E>>;
};
