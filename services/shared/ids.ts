import { z } from 'zod';

export const stageIdSchema = z.string().regex(/^[A-Za-z0-9_-]{6,64}$/, 'must be 6-64 characters of A-Z a-z 0-9 _ -');
