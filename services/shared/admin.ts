// The admin namespace (/admin), shared by the server (services/ops/admin.ts) and the admin page (types only in the
// browser). docs/operations.md describes the same messages.
import { z } from 'zod';
import { defineNamespace, type ServerToClientEvents } from './contract.ts';
import type { ErrorCode } from './errors.ts';
import { dateTime } from './ids.ts';
import { stageStatusSchema } from './model.ts';
import { ARCHIVE_STATUSES } from './rest.ts';

export const ADMIN_NAMESPACE = '/admin';

/** How often the server sends a snapshot to connected admins. */
export const ADMIN_SNAPSHOT_INTERVAL_MS = 1000;

/** The handshake's `auth` payload: `io('/admin', { auth: { token } })`. Never the query string. */
export const adminAuthSchema = z.strictObject({ token: z.string().min(1).max(512) });
export type AdminAuth = z.infer<typeof adminAuthSchema>;

/** `connect_error` carries this as `err.data` (and `err.message` is the same message). */
export interface AdminConnectErrorData {
  code: Extract<ErrorCode, 'UNAUTHORIZED' | 'BAD_REQUEST' | 'RATE_LIMITED'>;
  message: string;
}

const adminWorker = z.object({
  /** Cluster mode: the node it runs on; null on a single node. */
  node: z.string().nullable(),
  /** The worker's slot in the pool (stable across respawns). */
  index: z.number().int(),
  pid: z.number().int(),
  alive: z.boolean(),
  /** CPU used over the last sampling interval, in % of one core; null until two samples exist. */
  cpuPercent: z.number().nullable(),
  /** Total CPU time (user + system) of this worker process, in seconds. */
  cpuSeconds: z.number().nullable(),
  routers: z.number().int(),
});
export type AdminWorker = z.output<typeof adminWorker>;

const adminPerformer = z.object({
  id: z.string(),
  displayName: z.string(),
  /** performer (a browser), caller (call-in) or encoder (WHIP: OBS…). */
  role: z.enum(['performer', 'caller', 'encoder']),
  muted: z.boolean(),
  /** Has an audio producer. */
  publishing: z.boolean(),
  /** Fed into the stage's mix. */
  onAir: z.boolean(),
  /** SFU consumers this performer uses (it hears the others through them). */
  consumers: z.number().int(),
});
export type AdminPerformer = z.output<typeof adminPerformer>;

const adminArchive = z.object({
  broadcastId: z.string(),
  status: z.enum(ARCHIVE_STATUSES),
  error: z.string().nullable(),
  startedAt: dateTime(),
  endedAt: dateTime().nullable(),
  /** Segments queued for upload, and how many of them are uploaded. */
  segments: z.object({ queued: z.number().int(), uploaded: z.number().int() }),
});
export type AdminArchive = z.output<typeof adminArchive>;

const adminStage = z.object({
  /** Cluster mode: the node this row comes from (the one serving it, or that served its last broadcast); null on a single node. */
  node: z.string().nullable(),
  id: z.string(),
  title: z.string().nullable(),
  status: z.union([stageStatusSchema, z.literal('unknown')]),
  /** The mediasoup worker (pool slot) its router is on; null when it has no media open. */
  worker: z.number().int().nullable(),
  performers: z.array(adminPerformer),
  /** Mixer inputs that are not performers of the stage (synthetic senders). */
  otherMixInputs: z.number().int(),
  /** mediasoup consumers in use: the performers' SFU consumers plus the mixer's PlainTransport consumers. */
  consumers: z.number().int(),
  /** Seconds since the mix started (the programme clock), or null off air. */
  onAirSeconds: z.number().nullable(),
  /** Estimated listeners: distinct IP + User-Agent that fetched the playlist in the last window. */
  listeners: z.number().int(),
  /** How far the live edge is behind the programme clock, in seconds (docs/operations.md, "Mixer lag"); null off air. */
  mixerLagSeconds: z.number().nullable(),
  /** The mix's FFmpeg; `failure` once it crashed more times in a row than it is restarted (the broadcast then ended). */
  ffmpeg: z.object({ pid: z.number().int().nullable(), restarts: z.number().int(), failure: z.string().nullable() }).nullable(),
  /** Why the stage's last broadcast ended, when it was not a plain stop (a failure, the media server lost). */
  endReason: z.string().nullable(),
  /** The stage's current or last broadcast's archive; null when it never went on air (or the DB is unreachable). */
  archive: adminArchive.nullable(),
  /** Call-in: calls waiting in the stage's queue, and callers on air (accepted or connected). */
  calls: z.object({ waiting: z.number().int(), onAir: z.number().int() }),
});
export type AdminStage = z.output<typeof adminStage>;

const adminLevel = z.object({
  performerId: z.string(),
  /** dBov, -127..0 (the AudioLevelObserver reports performers above -70). */
  volume: z.number(),
});
export type AdminLevel = z.output<typeof adminLevel>;

const adminSnapshot = z.object({
  /** ISO time of the snapshot. */
  at: dateTime(),
  /** Cluster mode: the node that sent it (the one the admin is connected to); null on a single node. */
  node: z.string().nullable(),
  uptimeSeconds: z.number(),
  workers: z.array(adminWorker),
  stages: z.array(adminStage),
  /** The last levels of each stage that reported any (also streamed as `audioLevels`). */
  levels: z.record(z.string(), z.array(adminLevel)),
  totals: z.object({
    stagesLive: z.number().int(),
    performers: z.number().int(),
    consumers: z.number().int(),
    listeners: z.number().int(),
    callsWaiting: z.number().int(),
    callsOnAir: z.number().int(),
    uploadQueueDepth: z.number().int().nullable(),
  }),
  /** Parts that could not be read for this snapshot (e.g. the database), and recent failures, as short messages. */
  problems: z.array(z.string()),
});
export type AdminSnapshot = z.output<typeof adminSnapshot>;

export const adminContract = defineNamespace({
  name: ADMIN_NAMESPACE,
  /** The admin sends nothing but its handshake. */
  requests: {},
  events: {
    snapshot: adminSnapshot,
    /** A stage's performer levels, at most every 200 ms per stage; volatile (may be dropped under load). */
    audioLevels: z.object({ stageId: z.string(), levels: z.array(adminLevel) }),
  },
});
export type AdminContract = typeof adminContract;
export type AdminServerEvents = ServerToClientEvents<AdminContract>;
