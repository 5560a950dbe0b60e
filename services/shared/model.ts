// Objects that both REST and Socket.IO carry. The browser imports only types from here.
import { z } from 'zod';
import { stageIdSchema } from './ids.ts';

export const STAGE_STATUSES = ['idle', 'live', 'ended'] as const;
export const stageStatusSchema = z.enum(STAGE_STATUSES);
export type StageStatus = z.output<typeof stageStatusSchema>;

export const performerInfoSchema = z.object({
  id: z.string(),
  displayName: z.string(),
  muted: z.boolean(),
  producerId: z.string().nullable().meta({ description: 'The performer’s audio producer, once they publish.' }),
  role: z
    .enum(['performer', 'caller', 'encoder'])
    .meta({ description: 'caller: a listener on air through call-in (their id is the call’s); encoder: a WHIP publisher (OBS, GStreamer…).' }),
});
export type PerformerInfo = z.output<typeof performerInfoSchema>;

/** A stage as Socket.IO answers it (join, subscribe). */
export const stageSummarySchema = z.object({ id: stageIdSchema, title: z.string(), status: stageStatusSchema });
export type StageSummary = z.output<typeof stageSummarySchema>;

/** A performer's display name: 1-40 characters, no control characters or < > (safe on every page). */
export const displayNameSchema = z
  .string()
  .trim()
  .min(1, 'must not be empty')
  .max(40, 'must be at most 40 characters')
  .refine((s) => !/[\u0000-\u001f\u007f<>]/.test(s), 'must not contain control characters or < >');
