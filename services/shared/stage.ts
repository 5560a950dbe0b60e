// The performer namespace (/stage): every request with its payload and response schema, and every notification.
// The server validates with these schemas; the server, the performer page and the tests use the derived types.
// docs/protocol.md describes the same messages. The browser imports only types from here.
import { z } from 'zod';
import { defineNamespace, type ClientToServerEvents, type RequestName, type RequestPayload, type ResponseData, type ServerToClientEvents } from './contract.ts';
import { stageIdSchema } from './ids.ts';
import { displayNameSchema, performerInfoSchema, stageStatusSchema, stageSummarySchema } from './model.ts';
import { callIdSchema, callViewSchema } from './calls.ts';
import { performerEventSchema, timelineEventSchema } from './timeline.ts';

export const STAGE_NAMESPACE = '/stage';

/** Largest Socket.IO message the server accepts, in bytes. */
export const MAX_MESSAGE_BYTES = 64 * 1024;

export const idSchema = z.string().min(1).max(128);
/** A resume token: what lets a reconnecting performer continue as the same performer (same track, same row). */
const resumeTokenSchema = z.string().regex(/^[A-Za-z0-9_-]{16,64}$/, 'must be a resume token from an earlier join');

// mediasoup validates these deeply itself; here only the shape is checked so that garbage never reaches it.
const looseObject = z.looseObject({});
export const dtlsParametersSchema = z.looseObject({
  role: z.enum(['auto', 'client', 'server']).optional(),
  fingerprints: z.array(z.looseObject({ algorithm: z.string().max(32), value: z.string().max(256) })).min(1).max(8),
});
export const rtpParametersSchema = z.looseObject({
  mid: z.string().max(32).optional(),
  codecs: z.array(looseObject).min(1).max(16),
  headerExtensions: z.array(looseObject).max(32).optional(),
  encodings: z.array(looseObject).max(8).optional(),
  rtcp: looseObject.optional(),
});
export const rtpCapabilitiesSchema = z.looseObject({
  codecs: z.array(looseObject).max(64).optional(),
  headerExtensions: z.array(looseObject).max(64).optional(),
});

/** What mediasoup-client needs to build a transport (mediasoup's own objects, passed through). */
export const transportInfoSchema = z.object({
  id: z.string(),
  iceParameters: z.unknown(),
  iceCandidates: z.array(z.unknown()),
  dtlsParameters: z.unknown(),
});
export type TransportInfo = z.output<typeof transportInfoSchema>;

const empty = z.strictObject({});
const nothing = z.object({});
const onAirStatus = z.object({ status: stageStatusSchema });

export const stageContract = defineNamespace({
  name: STAGE_NAMESPACE,
  requests: {
    join: {
      request: z.strictObject({
        stageId: stageIdSchema,
        key: z.string().min(1).max(256),
        displayName: displayNameSchema,
        /** The token an earlier join returned: continue as that performer (a reload, a lost connection). */
        resume: resumeTokenSchema.optional(),
      }),
      response: z.object({
        performerId: z.string(),
        /** Send it as `resume` on the next join to continue as this performer. A new one comes with every join. */
        resumeToken: z.string(),
        /** True when this join continued an earlier performer (same id, same track, same row). */
        resumed: z.boolean(),
        stage: stageSummarySchema,
        routerRtpCapabilities: z.unknown(),
        performers: z.array(performerInfoSchema),
        /** Cluster mode: the other live nodes' base URLs, to reopen the page on if this node stops answering. */
        nodes: z.array(z.string()).optional(),
      }),
    },
    createTransport: { request: z.strictObject({ direction: z.enum(['send', 'recv']) }), response: transportInfoSchema },
    connectTransport: { request: z.strictObject({ transportId: idSchema, dtlsParameters: dtlsParametersSchema }), response: nothing },
    produce: {
      request: z.strictObject({ transportId: idSchema, kind: z.literal('audio'), rtpParameters: rtpParametersSchema }),
      response: z.object({ producerId: z.string() }),
    },
    consume: {
      request: z.strictObject({ producerId: idSchema, rtpCapabilities: rtpCapabilitiesSchema }),
      response: z.object({ consumerId: z.string(), producerId: z.string(), performerId: z.string(), kind: z.literal('audio'), rtpParameters: z.unknown() }),
    },
    resumeConsumer: { request: z.strictObject({ consumerId: idSchema }), response: nothing },
    setMuted: { request: z.strictObject({ muted: z.boolean() }), response: nothing },
    restartIce: { request: z.strictObject({ transportId: idSchema }), response: z.object({ iceParameters: z.unknown() }) },
    leave: { request: empty, response: nothing },
    startBroadcast: { request: empty, response: onAirStatus },
    stopBroadcast: { request: empty, response: onAirStatus },
    /** A chapter, track or marker on the broadcast's timeline (see timeline.ts). */
    postEvent: { request: performerEventSchema, response: z.object({ event: timelineEventSchema }) },
    /** Call-in (performers only): take a waiting call, turn it down, mute a caller on the server, hang up. */
    acceptCall: { request: z.strictObject({ callId: callIdSchema }), response: z.object({ call: callViewSchema }) },
    declineCall: { request: z.strictObject({ callId: callIdSchema }), response: z.object({ call: callViewSchema }) },
    muteCall: { request: z.strictObject({ callId: callIdSchema, muted: z.boolean() }), response: z.object({ call: callViewSchema }) },
    hangUpCall: { request: z.strictObject({ callId: callIdSchema }), response: z.object({ call: callViewSchema }) },
  },
  events: {
    performerJoined: z.object({ performer: performerInfoSchema }),
    performerLeft: z.object({ performerId: z.string(), reason: z.string() }),
    performerUpdated: z.object({ performer: performerInfoSchema }),
    consumerClosed: z.object({ consumerId: z.string(), producerId: z.string() }),
    /** The stage's media server restarted: drop every transport and join again (with the resume token). */
    rejoin: z.object({ reason: z.string() }),
    /** This performer continued on another connection (a resume): this one is no longer on stage. */
    replaced: z.object({ reason: z.string() }),
    /** Loudest performers over the last interval, in dBov (-127..0). Empty when everyone is silent. */
    audioLevels: z.object({ levels: z.array(z.object({ performerId: z.string(), volume: z.number() })) }),
    stageStatus: onAirStatus,
    /** The stage's open calls (waiting, accepted, on air), oldest first: after the join, and on every change. */
    callQueue: z.object({ calls: z.array(callViewSchema) }),
  },
});

export type StageContract = typeof stageContract;
export type StageRequestName = RequestName<StageContract>;
export type StageRequest<E extends StageRequestName> = RequestPayload<StageContract, E>;
export type StageResponse<E extends StageRequestName> = ResponseData<StageContract, E>;
export type StageClientEvents = ClientToServerEvents<StageContract>;
export type StageServerEvents = ServerToClientEvents<StageContract>;
