import { z } from 'zod';

export const stageIdSchema = z.string().regex(/^[A-Za-z0-9_-]{6,64}$/, 'must be 6-64 characters of A-Z a-z 0-9 _ -');
export const recordingIdSchema = z
  .string()
  .regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/, 'must be a recording id (a UUID)');

/** Plain text: no control characters, no angle brackets (nothing a page could mistake for markup). */
export const plainText = (max: number) =>
  z
    .string()
    .trim()
    .min(1, 'must not be empty')
    .max(max, `must be at most ${max} characters`)
    .refine((s) => !/[\u0000-\u0008\u000b-\u001f\u007f]/.test(s), 'must not contain control characters')
    .refine((s) => !/[<>]/.test(s), 'must be plain text: < and > are not allowed');

/** ISO 8601 date-time as the API sends it. */
export const dateTime = (description?: string) => z.string().meta({ format: 'date-time', ...(description ? { description } : {}) });
