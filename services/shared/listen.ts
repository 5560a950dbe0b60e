// The listener namespace (/listen): a listener subscribes to a stage's timeline and may comment. Shared by the server
// and the listener page (types only in the browser). docs/protocol.md describes the same messages.
import { z } from 'zod';
import { defineNamespace, type ClientToServerEvents, type RequestName, type RequestPayload, type ResponseData, type ServerToClientEvents } from './contract.ts';
import { plainText, stageIdSchema } from './ids.ts';
import { callRequestSchema, callViewSchema } from './calls.ts';
import { performerInfoSchema, stageStatusSchema, stageSummarySchema } from './model.ts';
import { dtlsParametersSchema, idSchema, rtpCapabilitiesSchema, rtpParametersSchema, transportInfoSchema } from './stage.ts';
import { MAX_COMMENT_CHARS, timelineEventSchema, timelineSnapshotSchema } from './timeline.ts';

export const LISTEN_NAMESPACE = '/listen';

export const listenContract = defineNamespace({
  name: LISTEN_NAMESPACE,
  requests: {
    subscribe: {
      request: z.strictObject({ stageId: stageIdSchema }),
      response: timelineSnapshotSchema.extend({
        stage: stageSummarySchema,
        /** Cluster mode: the other live nodes' base URLs, to reopen the page on if this node stops answering. */
        nodes: z.array(z.string()).optional(),
      }),
    },
    comment: {
      request: z.strictObject({
        text: plainText(MAX_COMMENT_CHARS),
        name: plainText(40),
        /** Where the listener's player is (its PROGRAM-DATE-TIME): the comment is placed there on the timeline. */
        playingDate: z.iso.datetime({ offset: true }).optional(),
      }),
      response: z.object({ event: timelineEventSchema }),
    },
    /** Call-in: ask to speak on the subscribed stage (one open call per connection). */
    requestCall: { request: callRequestSchema, response: z.object({ call: callViewSchema }) },
    /** Withdraw the request, or hang up the call on air. */
    endCall: { request: z.strictObject({}), response: z.object({}) },
    // While the call is accepted, the caller's media (as a performer's on /stage, for the call's length only).
    createTransport: { request: z.strictObject({ direction: z.enum(['send', 'recv']) }), response: transportInfoSchema },
    connectTransport: { request: z.strictObject({ transportId: idSchema, dtlsParameters: dtlsParametersSchema }), response: z.object({}) },
    produce: {
      request: z.strictObject({ transportId: idSchema, kind: z.literal('audio'), rtpParameters: rtpParametersSchema }),
      response: z.object({ producerId: z.string() }),
    },
    consume: {
      request: z.strictObject({ producerId: idSchema, rtpCapabilities: rtpCapabilitiesSchema }),
      response: z.object({ consumerId: z.string(), producerId: z.string(), performerId: z.string(), kind: z.literal('audio'), rtpParameters: z.unknown() }),
    },
    resumeConsumer: { request: z.strictObject({ consumerId: idSchema }), response: z.object({}) },
  },
  events: {
    timelineEvent: z.object({ event: timelineEventSchema }),
    stageStatus: z.object({ status: stageStatusSchema }),
    /** This connection's call changed (waiting: its place in the queue; accepted; on_air; or over, with why). */
    call: z.object({ call: callViewSchema, position: z.number().int().min(0).nullable().meta({ description: 'Place in the queue (1 = next) while waiting.' }) }),
    /**
     * The call was accepted: join the stage's media now (load the device with these capabilities, make the transports,
     * publish, and consume these performers).
     */
    callAccepted: z.object({ call: callViewSchema, routerRtpCapabilities: z.unknown(), performers: z.array(performerInfoSchema) }),
    // While on air, the stage's performers as a performer hears them.
    performerJoined: z.object({ performer: performerInfoSchema }),
    performerUpdated: z.object({ performer: performerInfoSchema }),
    performerLeft: z.object({ performerId: z.string(), reason: z.string() }),
  },
});

export type ListenContract = typeof listenContract;
export type ListenRequestName = RequestName<ListenContract>;
export type ListenRequest<E extends ListenRequestName> = RequestPayload<ListenContract, E>;
export type ListenResponse<E extends ListenRequestName> = ResponseData<ListenContract, E>;
export type ListenClientEvents = ClientToServerEvents<ListenContract>;
export type ListenServerEvents = ServerToClientEvents<ListenContract>;
