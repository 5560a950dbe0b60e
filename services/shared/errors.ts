// The error contract, once: the codes every REST response and Socket.IO ack may carry, the HTTP status of each, and
// the shape of an error. REST, Socket.IO, OpenAPI and the pages all take them from here.
// The browser imports only types from here (`import type`), so zod stays out of its bundles.
import { z } from 'zod';

export const ERROR_CODES = [
  'BAD_REQUEST',
  'UNAUTHORIZED',
  'NOT_FOUND',
  'STAGE_FULL',
  'QUEUE_FULL',
  'NOT_JOINED',
  'ALREADY_JOINED',
  'INVALID_STATE',
  'RATE_LIMITED',
  'UNAVAILABLE',
  'WRONG_NODE',
  'INTERNAL',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

/** The HTTP status REST answers each code with. */
export const HTTP_STATUS: Readonly<Record<ErrorCode, number>> = {
  BAD_REQUEST: 400,
  UNAUTHORIZED: 401,
  NOT_FOUND: 404,
  STAGE_FULL: 409,
  QUEUE_FULL: 409,
  NOT_JOINED: 409,
  ALREADY_JOINED: 409,
  INVALID_STATE: 409,
  RATE_LIMITED: 429,
  UNAVAILABLE: 503,
  WRONG_NODE: 421,
  INTERNAL: 500,
};

export const errorBodySchema = z.object({
  code: z.enum(ERROR_CODES),
  message: z.string().min(1),
  retryAfterSeconds: z
    .number()
    .int()
    .min(1)
    .optional()
    .meta({ description: 'RATE_LIMITED (and some UNAVAILABLE): whole seconds to wait before trying again.' }),
  ownerUrl: z
    .string()
    .optional()
    .meta({ description: 'WRONG_NODE (cluster mode): the base URL of the node that owns the stage; send the request there.' }),
});

export type ErrorBody = z.output<typeof errorBodySchema>;

/** How every Socket.IO request is answered. */
export type Ack<T> = { ok: true; data: T } | { ok: false; error: ErrorBody };
