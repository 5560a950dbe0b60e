// Timeline events on a broadcast's programme clock, shared by the server, REST, Socket.IO (/stage and /listen) and
// the pages. docs/timeline.md describes them. The browser imports only types from here.
import { z } from 'zod';
import { dateTime, plainText } from './ids.ts';

export const EVENT_TYPES = ['chapter', 'track', 'marker', 'comment', 'speaking', 'call'] as const;
export type TimelineEventType = (typeof EVENT_TYPES)[number];

export const MAX_COMMENT_CHARS = 500;

/** What performers post (Socket.IO `postEvent` on /stage, or REST POST /api/stages/:id/events). */
export const performerEventSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('chapter'), title: plainText(200) }),
  z.strictObject({ type: z.literal('track'), title: plainText(200), artist: plainText(200).optional() }),
  z.strictObject({ type: z.literal('marker'), label: plainText(200).optional() }),
]);
export type PerformerEvent = z.infer<typeof performerEventSchema>;

/**
 * How many timeline events (chapters, tracks, markers) a stage takes, over REST and Socket.IO together: a burst of
 * this many, then one per 1 / EVENTS_PER_SECOND s.
 */
export const EVENT_BURST = 10;
export const EVENTS_PER_SECOND = 2;

export const timelineEventSchema = z.object({
  id: z.string(),
  type: z.enum(EVENT_TYPES),
  at: dateTime('UTC wall clock of the moment the event refers to (at the performer’s microphone).'),
  mediaTime: z.number().min(0).meta({ description: 'Seconds on the programme clock since the broadcast’s first sample.' }),
  startDate: dateTime('When it plays in the stream: the PROGRAM-DATE-TIME of mediaTime (null until the first segment exists).').nullable(),
  /** speaking: true when the performer starts, false when they stop. call: a caller on air (name, title = topic), ended on its end. */
  data: z.object({
    title: z.string().optional(),
    artist: z.string().optional(),
    label: z.string().optional(),
    text: z.string().optional(),
    name: z.string().optional(),
    performerId: z.string().optional(),
    displayName: z.string().optional(),
    speaking: z.boolean().optional(),
    callId: z.string().optional(),
    ended: z.boolean().optional(),
  }),
});
export type TimelineEvent = z.output<typeof timelineEventSchema>;

export const timelineSnapshotSchema = z.object({
  broadcastId: z.string().nullable().meta({ description: 'The broadcast on air, or the last one, or null.' }),
  originDate: dateTime('PROGRAM-DATE-TIME of programme time 0 of that broadcast.').nullable(),
  events: z.array(timelineEventSchema).meta({ description: 'Its events so far (the latest 500), oldest first; speaking changes included.' }),
});
export type TimelineSnapshot = z.output<typeof timelineSnapshotSchema>;
