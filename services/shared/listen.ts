// The listener namespace (/listen): a listener subscribes to a stage's timeline and may comment. Shared by the server
// and the listener page (types only in the browser). docs/protocol.md describes the same messages.
import { z } from 'zod';
import { defineNamespace, type ClientToServerEvents, type RequestName, type RequestPayload, type ResponseData, type ServerToClientEvents } from './contract.ts';
import { plainText, stageIdSchema } from './ids.ts';
import { stageStatusSchema, stageSummarySchema } from './model.ts';
import { MAX_COMMENT_CHARS, timelineEventSchema, timelineSnapshotSchema } from './timeline.ts';

export const LISTEN_NAMESPACE = '/listen';

export const listenContract = defineNamespace({
  name: LISTEN_NAMESPACE,
  requests: {
    subscribe: {
      request: z.strictObject({ stageId: stageIdSchema }),
      response: timelineSnapshotSchema.extend({ stage: stageSummarySchema }),
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
  },
  events: {
    timelineEvent: z.object({ event: timelineEventSchema }),
    stageStatus: z.object({ status: stageStatusSchema }),
  },
});

export type ListenContract = typeof listenContract;
export type ListenRequestName = RequestName<ListenContract>;
export type ListenRequest<E extends ListenRequestName> = RequestPayload<ListenContract, E>;
export type ListenResponse<E extends ListenRequestName> = ResponseData<ListenContract, E>;
export type ListenClientEvents = ClientToServerEvents<ListenContract>;
export type ListenServerEvents = ServerToClientEvents<ListenContract>;
