// The timeline protocol: events on a broadcast's programme clock, shared by the server and the browser pages.
// The browser imports only types from here (`import type`), so zod stays out of its bundle.
// Socket.IO namespace /listen (listeners) and the performer namespace /stage carry them; docs/protocol.md and
// docs/timeline.md describe the same messages.
import { z } from 'zod';
import { stageIdSchema } from './ids.ts';

export const LISTEN_NAMESPACE = '/listen';

export const EVENT_TYPES = ['chapter', 'track', 'marker', 'comment', 'speaking'] as const;
export type TimelineEventType = (typeof EVENT_TYPES)[number];

/** Plain text: no control characters, no angle brackets (nothing a page could mistake for markup). */
const plainText = (max: number) =>
  z
    .string()
    .trim()
    .min(1, 'must not be empty')
    .max(max, `must be at most ${max} characters`)
    .refine((s) => !/[\u0000-\u0008\u000b-\u001f\u007f]/.test(s), 'must not contain control characters')
    .refine((s) => !/[<>]/.test(s), 'must be plain text: < and > are not allowed');

export const MAX_COMMENT_CHARS = 500;

/** What performers post (Socket.IO `postEvent` on /stage, or REST POST /api/stages/:id/events). */
export const performerEventSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('chapter'), title: plainText(200) }),
  z.strictObject({ type: z.literal('track'), title: plainText(200), artist: plainText(200).optional() }),
  z.strictObject({ type: z.literal('marker'), label: plainText(200).optional() }),
]);
export type PerformerEvent = z.infer<typeof performerEventSchema>;

export const listenerRequestSchemas = {
  subscribe: z.strictObject({ stageId: stageIdSchema }),
  comment: z.strictObject({
    text: plainText(MAX_COMMENT_CHARS),
    name: plainText(40),
    /** Where the listener's player is (its PROGRAM-DATE-TIME): the comment is placed there on the timeline. */
    playingDate: z.iso.datetime({ offset: true }).optional(),
  }),
} as const;

export type ListenerRequestName = keyof typeof listenerRequestSchemas;
export type ListenerRequestPayload<E extends ListenerRequestName> = z.infer<(typeof listenerRequestSchemas)[E]>;

export interface TimelineEvent {
  id: string;
  type: TimelineEventType;
  /** UTC wall clock of the moment the event refers to (at the performer's microphone). */
  at: string;
  /** Seconds on the programme clock since the broadcast's first sample. */
  mediaTime: number;
  /** When it plays in the stream: the PROGRAM-DATE-TIME of mediaTime (null until the first segment exists). */
  startDate: string | null;
  /** speaking: true when the performer starts, false when they stop. */
  data: {
    title?: string;
    artist?: string;
    label?: string;
    text?: string;
    name?: string;
    performerId?: string;
    displayName?: string;
    speaking?: boolean;
  };
}

export interface ListenerResponseData {
  subscribe: {
    stage: { id: string; title: string; status: 'idle' | 'live' | 'ended' };
    /** The broadcast on air (or the last one), or null. */
    broadcastId: string | null;
    /** PROGRAM-DATE-TIME of programme time 0 of that broadcast, or null. */
    originDate: string | null;
    /** Its events so far (the latest 500), oldest first; speaking changes included. */
    events: TimelineEvent[];
  };
  comment: { event: TimelineEvent };
}

export interface ListenerServerEvents {
  timelineEvent: (p: { event: TimelineEvent }) => void;
  stageStatus: (p: { status: 'idle' | 'live' | 'ended' }) => void;
}
