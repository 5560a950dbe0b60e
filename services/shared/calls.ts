// Call-in, as every side sees it: a call's view (the caller's page, the performers' queue, REST), the events of its
// record, and a stage's per-minute rate. Shared by the server, REST (OpenAPI), Socket.IO (/listen and /stage) and the
// pages. docs/calls.md describes the feature. The browser imports only types from here.
import { z } from 'zod';
import { dateTime, plainText, stageIdSchema } from './ids.ts';

export const callIdSchema = z
  .string()
  .regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/, 'must be a call id (a UUID)');

export const CALL_STATUSES = ['waiting', 'accepted', 'on_air', 'declined', 'cancelled', 'expired', 'ended'] as const;
export type CallStatus = (typeof CALL_STATUSES)[number];
/** States a call leaves no more. */
export const FINAL_CALL_STATUSES: readonly CallStatus[] = ['declined', 'cancelled', 'expired', 'ended'];

/**
 * Why a call ended (status ended), or was not taken (declined, cancelled, expired):
 * caller: the caller hung up (or cancelled, or left the page); host: a performer hung up (or declined);
 * network: the caller's connection was lost (its signaling, its transport, or no RTP for CALL_RTP_TIMEOUT_SECONDS);
 * expired: nobody took it within CALL_REQUEST_TTL_SECONDS; broadcast_ended: the show went off air;
 * server: the media server lost the stage, or the service shut down.
 */
export const CALL_END_REASONS = ['caller', 'host', 'network', 'expired', 'broadcast_ended', 'server'] as const;
export type CallEndReason = (typeof CALL_END_REASONS)[number];

export const CALL_EVENT_TYPES = [
  'call_request',
  'call_accepted',
  'call_declined',
  'call_cancelled',
  'call_expired',
  'call_connected',
  'call_tick',
  'call_end',
] as const;
export type CallEventType = (typeof CALL_EVENT_TYPES)[number];

/** A per-minute rate: an ISO 4217 currency and the amount per started minute in its minor unit (cents). */
export const callRateSchema = z.strictObject({
  currency: z.string().regex(/^[A-Z]{3}$/, 'must be an ISO 4217 code such as EUR'),
  amountMinor: z
    .number()
    .int('must be a whole number of the minor unit (cents)')
    .min(0)
    .max(1_000_000)
    .meta({ description: 'Per started minute, in the currency’s minor unit (cents).' }),
});
export type CallRate = z.output<typeof callRateSchema>;

export const callViewSchema = z.object({
  id: callIdSchema,
  stageId: stageIdSchema,
  name: z.string(),
  topic: z.string().nullable(),
  status: z.enum(CALL_STATUSES),
  endReason: z.enum(CALL_END_REASONS).nullable(),
  requestedAt: dateTime(),
  acceptedAt: dateTime().nullable(),
  connectedAt: dateTime('When the caller’s first RTP reached the server.').nullable(),
  endedAt: dateTime().nullable(),
  minutes: z.number().int().min(0).meta({ description: 'Started minutes on air (one call_tick each).' }),
  muted: z.boolean().meta({ description: 'Muted by a performer (on the server: the caller is silent in the mix).' }),
  performerId: z.string().nullable().meta({ description: 'The caller on the stage (their track in the archive) once accepted.' }),
  rate: callRateSchema.nullable().meta({ description: 'The stage’s rate when the call was taken (null: free).' }),
  bill: z
    .object({ currency: z.string(), amountMinor: z.number().int().min(0) })
    .nullable()
    .meta({ description: 'minutes × rate, computed at call_end (null before, or when the call is free).' }),
});
export type CallView = z.output<typeof callViewSchema>;

export const callEventSchema = z.object({
  seq: z.number().int().min(1),
  type: z.enum(CALL_EVENT_TYPES),
  at: dateTime(),
  data: z.record(z.string(), z.union([z.string(), z.number(), z.boolean(), z.null()])),
});
export type CallEvent = z.output<typeof callEventSchema>;

/** What a listener gives when asking to speak. */
export const callRequestSchema = z.strictObject({
  name: plainText(40),
  topic: plainText(140).optional(),
});

// ---- REST ----
export const callListSchema = z.object({
  stageId: stageIdSchema,
  calls: z.array(callViewSchema).meta({ description: 'Newest first (the latest 200).' }),
});
export const callDetailSchema = callViewSchema.extend({ events: z.array(callEventSchema) });
export type CallDetail = z.output<typeof callDetailSchema>;
export const callRateBody = z.strictObject({ rate: callRateSchema.nullable() });
