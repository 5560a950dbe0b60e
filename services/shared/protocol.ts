// The Socket.IO protocol of the /stage namespace, shared by the server and the browser pages.
// The browser imports only types from here (`import type`), so zod stays out of its bundle.
// docs/protocol.md describes the same messages; keep both in step.
import { z } from 'zod';
import { performerEventSchema, type TimelineEvent } from './timeline.ts';

export const STAGE_NAMESPACE = '/stage';

/** Largest Socket.IO message the server accepts, in bytes. */
export const MAX_MESSAGE_BYTES = 64 * 1024;

export { stageIdSchema } from './ids.ts';
import { stageIdSchema } from './ids.ts';
const idSchema = z.string().min(1).max(128);
const displayNameSchema = z
  .string()
  .trim()
  .min(1, 'must not be empty')
  .max(40, 'must be at most 40 characters')
  // Control characters and angle brackets never belong in a display name; refusing them keeps every page safe.
  .refine((s) => !/[\u0000-\u001f\u007f<>]/.test(s), 'must not contain control characters or < >');

// mediasoup validates these deeply itself; here only the shape is checked so that garbage never reaches it.
const looseObject = z.looseObject({});
const dtlsParametersSchema = z.looseObject({
  role: z.enum(['auto', 'client', 'server']).optional(),
  fingerprints: z.array(z.looseObject({ algorithm: z.string().max(32), value: z.string().max(256) })).min(1).max(8),
});
const rtpParametersSchema = z.looseObject({
  mid: z.string().max(32).optional(),
  codecs: z.array(looseObject).min(1).max(16),
  headerExtensions: z.array(looseObject).max(32).optional(),
  encodings: z.array(looseObject).max(8).optional(),
  rtcp: looseObject.optional(),
});
const rtpCapabilitiesSchema = z.looseObject({
  codecs: z.array(looseObject).max(64).optional(),
  headerExtensions: z.array(looseObject).max(64).optional(),
});

/** Request payload schemas, by event name. Each request is acked with an {@link Ack}. */
export const requestSchemas = {
  join: z.strictObject({ stageId: stageIdSchema, key: z.string().min(1).max(256), displayName: displayNameSchema }),
  createTransport: z.strictObject({ direction: z.enum(['send', 'recv']) }),
  connectTransport: z.strictObject({ transportId: idSchema, dtlsParameters: dtlsParametersSchema }),
  produce: z.strictObject({ transportId: idSchema, kind: z.literal('audio'), rtpParameters: rtpParametersSchema }),
  consume: z.strictObject({ producerId: idSchema, rtpCapabilities: rtpCapabilitiesSchema }),
  resumeConsumer: z.strictObject({ consumerId: idSchema }),
  setMuted: z.strictObject({ muted: z.boolean() }),
  restartIce: z.strictObject({ transportId: idSchema }),
  leave: z.strictObject({}),
  startBroadcast: z.strictObject({}),
  stopBroadcast: z.strictObject({}),
  /** A chapter, track or marker on the broadcast's timeline (see services/shared/timeline.ts). */
  postEvent: performerEventSchema,
} as const;

export type RequestName = keyof typeof requestSchemas;
export type RequestPayload<E extends RequestName> = z.infer<(typeof requestSchemas)[E]>;

export interface PerformerInfo {
  id: string;
  displayName: string;
  muted: boolean;
  /** The performer's audio producer, once it publishes. */
  producerId: string | null;
}

export type StageStatus = 'idle' | 'live' | 'ended';

export interface TransportInfo {
  id: string;
  iceParameters: unknown;
  iceCandidates: unknown[];
  dtlsParameters: unknown;
}

/** Response data, by request name. */
export interface ResponseData {
  join: {
    performerId: string;
    stage: { id: string; title: string; status: StageStatus };
    routerRtpCapabilities: unknown;
    performers: PerformerInfo[];
  };
  createTransport: TransportInfo;
  connectTransport: Record<string, never>;
  produce: { producerId: string };
  consume: { consumerId: string; producerId: string; performerId: string; kind: 'audio'; rtpParameters: unknown };
  resumeConsumer: Record<string, never>;
  setMuted: Record<string, never>;
  restartIce: { iceParameters: unknown };
  leave: Record<string, never>;
  startBroadcast: { status: StageStatus };
  stopBroadcast: { status: StageStatus };
  postEvent: { event: TimelineEvent };
}

export type ErrorCode =
  | 'BAD_REQUEST'
  | 'UNAUTHORIZED'
  | 'NOT_FOUND'
  | 'STAGE_FULL'
  | 'NOT_JOINED'
  | 'ALREADY_JOINED'
  | 'INVALID_STATE'
  | 'RATE_LIMITED'
  | 'UNAVAILABLE'
  | 'INTERNAL';

export interface ErrorBody {
  code: ErrorCode;
  message: string;
}

export type Ack<T> = { ok: true; data: T } | { ok: false; error: ErrorBody };

/** Server → client notifications (no ack). */
export interface ServerToClientEvents {
  performerJoined: (p: { performer: PerformerInfo }) => void;
  performerLeft: (p: { performerId: string; reason: string }) => void;
  performerUpdated: (p: { performer: PerformerInfo }) => void;
  consumerClosed: (p: { consumerId: string; producerId: string }) => void;
  /** The stage's media server restarted: drop every transport and join again. */
  rejoin: (p: { reason: string }) => void;
  /** Loudest performers over the last interval, in dBov (-127..0). Empty when everyone is silent. */
  audioLevels: (p: { levels: { performerId: string; volume: number }[] }) => void;
  stageStatus: (p: { status: StageStatus }) => void;
}

export type ClientToServerEvents = {
  [E in RequestName]: (payload: RequestPayload<E>, ack: (res: Ack<ResponseData[E]>) => void) => void;
};
