// The REST API's contract, once: request bodies, query parameters and response bodies as zod schemas. The routes
// parse with them, their TypeScript types are derived from them, and services/http/openapi.ts builds the OpenAPI
// document from them. The browser imports only types from here.
import { z } from 'zod';
import { dateTime, recordingIdSchema, stageIdSchema } from './ids.ts';
import { performerInfoSchema, stageStatusSchema } from './model.ts';
import { callRateSchema } from './calls.ts';
import { timelineEventSchema } from './timeline.ts';

const url = (description: string) => z.string().meta({ format: 'uri', description });

// ---- Requests ----

export const createStageBody = z.strictObject({
  title: z
    .string()
    .trim()
    .min(1, 'must not be empty')
    .max(120, 'must be at most 120 characters')
    .refine((s) => !/[\u0000-\u001f\u007f]/.test(s), 'must not contain control characters'),
  /** Call-in: the per-minute rate callers are billed at (none: calls are free). The admin may change it later. */
  callRate: callRateSchema.optional(),
});
export type CreateStageBody = z.input<typeof createStageBody>;

export const emptyBody = z.strictObject({});

export const DOWNLOAD_FILES = ['audio', 'playlist', 'manifest', 'timeline', 'chapters'] as const;
export const downloadQuery = z.strictObject({
  file: z.string().regex(/^(audio|playlist|manifest|timeline|chapters|track:[A-Za-z0-9_-]{1,128})$/, 'must be audio, playlist, manifest, timeline, chapters or track:<performerId>'),
});

// ---- Responses ----

export const stageUrlsSchema = z.object({
  performerUrl: url('The performer page, with the key.'),
  listenUrl: url('The public listener page.'),
  hlsUrl: url('The live HLS playlist (PUBLIC_HLS_BASE_URL when set).'),
  whipUrl: url('Where an encoder (OBS, GStreamer…) publishes with WHIP, the performer key as its Bearer token (docs/whip.md).'),
});
export type StageUrls = z.output<typeof stageUrlsSchema>;

export const stageCreatedSchema = z.object({
  id: stageIdSchema,
  title: z.string(),
  status: z.literal('idle'),
  performerKey: z.string().meta({ description: 'The stage’s performer key. Shown once: only its hash is stored.' }),
  ...stageUrlsSchema.shape,
});
export type StageCreated = z.output<typeof stageCreatedSchema>;

export const stageViewSchema = z.object({
  id: stageIdSchema,
  title: z.string(),
  status: stageStatusSchema,
  performers: z.array(performerInfoSchema),
  hlsUrl: url('The live HLS playlist.'),
  listenUrl: url('The public listener page.'),
  startedAt: dateTime().nullable(),
  endedAt: dateTime().nullable(),
});
export type StageView = z.output<typeof stageViewSchema>;

/** One stage in the admin's list (GET /api/stages): no performer link, since only the key's hash is stored. */
export const stageListItemSchema = z.object({
  id: stageIdSchema,
  title: z.string(),
  status: stageStatusSchema,
  performers: z.number().int().min(0).meta({ description: 'Performers on the stage now.' }),
  createdAt: dateTime(),
  startedAt: dateTime().nullable(),
  endedAt: dateTime().nullable(),
  listenUrl: url('The public listener page.'),
  hlsUrl: url('The live HLS playlist.'),
});
export type StageListItem = z.output<typeof stageListItemSchema>;
export const STAGE_LIST_MAX = 200;
export const stageListSchema = z.object({
  stages: z.array(stageListItemSchema).meta({ description: `Newest first, at most ${STAGE_LIST_MAX}.` }),
});
export type StageList = z.output<typeof stageListSchema>;

/** One node of the service (GET /api/nodes): in cluster mode every live node, else this one alone. */
export const nodeViewSchema = z.object({
  id: z.string().meta({ description: 'NODE_ID (generated at start when unset).' }),
  url: url('Where clients and the other nodes reach this node.'),
  self: z.boolean().meta({ description: 'The node that answered.' }),
  stages: z.number().int().min(0).meta({ description: 'Stages whose media it serves.' }),
  onAir: z.number().int().min(0).meta({ description: 'Of those, stages on air.' }),
  performers: z.number().int().min(0),
  workers: z.number().int().min(0).meta({ description: 'Media workers alive.' }),
  placed: z.number().int().min(0).meta({ description: 'Stages placed on it (the placement weighs this first).' }),
  draining: z.boolean().meta({ description: 'Shutting down: takes no new stages.' }),
  startedAt: dateTime(),
  seenAt: dateTime().meta({ description: 'Its last heartbeat.' }),
});
export type NodeView = z.output<typeof nodeViewSchema>;
export const nodeListSchema = z.object({
  cluster: z.boolean().meta({ description: 'Cluster mode (REDIS_URL set).' }),
  nodes: z.array(nodeViewSchema).meta({ description: 'Least loaded first.' }),
});
export type NodeList = z.output<typeof nodeListSchema>;

export const stageTransitionSchema = stageViewSchema.extend({
  changed: z.boolean().meta({ description: 'false when the stage already was in the asked state (a no-op).' }),
});
export type StageTransition = z.output<typeof stageTransitionSchema>;

/** A WHIP publisher (OBS…) on a stage, as its performer page shows it (GET /api/stages/:id/encoders). */
export const encoderViewSchema = z.object({
  id: z.string().meta({ description: 'The WHIP session (its Location) and the performer id.' }),
  name: z.string(),
  state: z.enum(['connecting', 'publishing']).meta({ description: 'connecting: answered, no audio yet; publishing: its RTP arrives.' }),
  since: dateTime(),
  levelDbov: z.number().nullable().meta({ description: 'Its audio level, dBov (-127..0); null when quiet or not known.' }),
  levelKnown: z.boolean().meta({ description: 'Whether the encoder sends audio levels (the ssrc-audio-level RTP header extension: browsers do, OBS does not).' }),
});
export type EncoderView = z.output<typeof encoderViewSchema>;
export const encoderListSchema = z.object({ stageId: stageIdSchema, whipUrl: z.string(), encoders: z.array(encoderViewSchema) });
export type EncoderList = z.output<typeof encoderListSchema>;

export const eventPostedSchema = z.object({ event: timelineEventSchema });

export const ARCHIVE_STATUSES = ['recording', 'uploading', 'archived', 'failed'] as const;
export const OBJECT_STATES = ['pending', 'uploading', 'uploaded', 'failed'] as const;
export const FILE_KINDS = ['playlist', 'audio', 'track', 'manifest', 'timeline', 'chapters'] as const;

export const recordingFileSchema = z.object({
  file: z.string().meta({ description: 'The `file` parameter of the download route.' }),
  kind: z.enum(FILE_KINDS),
  key: z.string().meta({ description: 'The object key in the store.' }),
  size: z.number().int().min(0),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  durationSeconds: z.number().nullable(),
  state: z.enum(OBJECT_STATES),
  performerId: z.string().optional(),
  displayName: z.string().optional(),
  url: z.string().meta({ description: 'The download route for this file, relative to the server.' }),
});
export type RecordingFile = z.output<typeof recordingFileSchema>;

export const recordingViewSchema = z.object({
  id: recordingIdSchema,
  stageId: stageIdSchema,
  status: z.enum(ARCHIVE_STATUSES),
  error: z.string().nullable(),
  startedAt: dateTime(),
  endedAt: dateTime().nullable(),
  archivedAt: dateTime().nullable(),
  durationSeconds: z.number().nullable(),
  segments: z.object({ count: z.number().int().min(0), uploaded: z.number().int().min(0) }),
  files: z.array(recordingFileSchema),
});
export type RecordingView = z.output<typeof recordingViewSchema>;

export const recordingListSchema = z.object({
  stageId: stageIdSchema,
  recordings: z.array(recordingViewSchema).meta({ description: 'Newest first.' }),
});
export type RecordingList = z.output<typeof recordingListSchema>;

const healthFields = {
  workers: z.number().int().min(0).meta({ description: 'Media workers up.' }),
  db: z.enum(['ok', 'error']).meta({ description: 'Whether the database answers.' }),
  dbBacklog: z.number().int().min(0).meta({ description: 'Database writes held while it was unreachable (journaled on disk).' }),
  problems: z.array(z.string()).meta({ description: 'What is wrong, in short sentences (e.g. a mix that failed and could not be restarted, in the last hour).' }),
};
export const healthSchema = z.object({ status: z.enum(['ok', 'degraded']), ...healthFields });
export const healthUnavailableSchema = z.union([
  z.object({ status: z.literal('down'), ...healthFields }),
  z.object({ status: z.literal('draining') }).meta({ description: 'Shutting down: send no new work here.' }),
]);
export type Health = z.output<typeof healthSchema> | z.output<typeof healthUnavailableSchema>;
