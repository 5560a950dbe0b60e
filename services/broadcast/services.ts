// What a broadcast is given by the app: one object, handed down by the stage registry to each stage, and by a stage to
// the broadcast it puts on air. Interfaces only, so a broadcast depends on what it uses, not on who provides it.
import type { types as ms } from 'mediasoup';
import type { Mixer } from '../../pipelines/mixer/mixer.ts';
import type { WriteBehind } from '../db/writeBehind.ts';
import type { WriteExecutors } from '../db/writes.ts';
import type { Logger } from '../logger.ts';
import type { TimelineEvent } from '../shared/timeline.ts';

/** Durable database writes (journaled; they wait out an outage and survive a crash), typed by their kinds. */
export type Writes = Pick<WriteBehind<WriteExecutors>, 'write'>;

/** Records one broadcast's segments as they are published, and closes with it. */
export interface SegmentSink {
  close(): Promise<void>;
}

/** The archive, as a broadcast sees it. */
export interface BroadcastArchive {
  /** Where the broadcast's tracks are written. */
  tracksDir(broadcastId: string): string;
  /** The broadcast is on air: records where, and starts queueing its segments as the publisher lists them. */
  begin(args: { broadcastId: string; stageId: string; hlsDir: string; mixer: Mixer }): Promise<SegmentSink>;
  /** The broadcast's end is recorded: finalize its archive now (a durable step: resumed at the next start if need be). */
  finalizeSoon(broadcastId: string): void;
}

/** The usage meter, as a broadcast sees it: a broadcast is ticked every minute while it is registered. */
export interface UsageTicks {
  register(entry: { stageId: string; broadcastId: string; performerIds: () => string[] }, opts?: { tickNow?: boolean }): { close(): void };
}

export interface BroadcastSettings {
  /** Mixer inputs: the stage's performer limit. */
  slots: number;
  /** The mediasoup workers' RTC ports: the mix's own UDP inputs stay out of them. */
  rtcPorts?: { min: number; max: number };
  segmentSeconds: number;
  partSeconds: number;
  lowLatency: boolean;
  listSize: number;
  aacBitrateKbps: number;
  /** How the slots reach the mixer's FFmpeg (MixerOptions.input). */
  mixInput: 'ogg' | 'rtp';
  /** Where a stage's HLS is written (the CDN-origin folder's live/<stageId>). */
  hlsDir(stageId: string): string;
}

export interface BroadcastServices {
  settings: BroadcastSettings;
  writes: Writes;
  archive: BroadcastArchive | null;
  usage: UsageTicks;
  /** Every timeline event of every broadcast, as it happens (listeners, admin). */
  publish(stageId: string, event: TimelineEvent): void;
  /** Onlookers (metrics, admin, health) hear of every broadcast that ends, with why. */
  ended(info: BroadcastEnded): void;
  log: Logger;
}

export interface BroadcastEnded {
  stageId: string;
  broadcastId: string;
  status: 'complete' | 'aborted' | 'failed';
  reason: string;
  /** Children that failed to close cleanly (each still closed as far as it could). */
  problems: string[];
  /** The mix's FFmpeg: its restarts, and why it was given up on (null unless it was). */
  ffmpeg: { restarts: number; failure: string | null };
  at: Date;
}

/** The stage, as its broadcast sees it. */
export interface BroadcastStage {
  readonly id: string;
  readonly router: ms.Router;
  readonly performers: readonly { readonly id: string; readonly displayName: string; readonly producer: ms.Producer | null }[];
}
