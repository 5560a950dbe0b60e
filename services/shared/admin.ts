// The admin protocol (Socket.IO namespace /admin), shared by the server (services/ops/admin.ts) and the admin page.
// The browser imports only types from here (`import type`), so zod stays out of its bundle.
// docs/operations.md describes the same messages.
import { z } from 'zod';
import type { ErrorCode, StageStatus } from './protocol.ts';

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

export interface AdminWorker {
  /** The worker's slot in the pool (stable across respawns). */
  index: number;
  pid: number;
  alive: boolean;
  /** CPU used over the last sampling interval, in % of one core; null until two samples exist. */
  cpuPercent: number | null;
  /** Total CPU time (user + system) of this worker process, in seconds. */
  cpuSeconds: number | null;
  routers: number;
}

export interface AdminPerformer {
  id: string;
  displayName: string;
  muted: boolean;
  /** Has an audio producer. */
  publishing: boolean;
  /** Fed into the stage's mix. */
  onAir: boolean;
  /** SFU consumers this performer uses (it hears the others through them). */
  consumers: number;
}

export interface AdminArchive {
  broadcastId: string;
  status: 'recording' | 'uploading' | 'archived' | 'failed';
  error: string | null;
  startedAt: string;
  endedAt: string | null;
  /** Segments queued for upload, and how many of them are uploaded. */
  segments: { queued: number; uploaded: number };
}

export interface AdminStage {
  id: string;
  title: string | null;
  status: StageStatus | 'unknown';
  /** The mediasoup worker (pool slot) its router is on; null when it has no media open. */
  worker: number | null;
  performers: AdminPerformer[];
  /** Mixer inputs that are not performers of the stage (synthetic senders). */
  otherMixInputs: number;
  /** mediasoup consumers in use: the performers' SFU consumers plus the mixer's PlainTransport consumers. */
  consumers: number;
  /** Seconds since the mix started (the programme clock), or null off air. */
  onAirSeconds: number | null;
  /** Estimated listeners: distinct IP + User-Agent that fetched the playlist in the last window. */
  listeners: number;
  /** How far the live edge is behind the programme clock, in seconds (docs/operations.md, "Mixer lag"); null off air. */
  mixerLagSeconds: number | null;
  ffmpeg: { pid: number | null; restarts: number } | null;
  /** The stage's current or last broadcast's archive; null when it never went on air (or the DB is unreachable). */
  archive: AdminArchive | null;
}

export interface AdminLevel {
  performerId: string;
  /** dBov, -127..0 (the AudioLevelObserver reports performers above -70). */
  volume: number;
}

export interface AdminSnapshot {
  /** ISO time of the snapshot. */
  at: string;
  uptimeSeconds: number;
  workers: AdminWorker[];
  stages: AdminStage[];
  /** The last levels of each stage that reported any (also streamed as `audioLevels`). */
  levels: Record<string, AdminLevel[]>;
  totals: { stagesLive: number; performers: number; consumers: number; listeners: number; uploadQueueDepth: number | null };
  /** Parts that could not be read for this snapshot (e.g. the database), as short messages. */
  problems: string[];
}

/** Server → client. The admin sends nothing but its handshake. */
export interface AdminServerEvents {
  snapshot: (s: AdminSnapshot) => void;
  /** A stage's performer levels, at most every 200 ms per stage; volatile (may be dropped under load). */
  audioLevels: (p: { stageId: string; levels: AdminLevel[] }) => void;
}
