// The timing of an archived fMP4 segment, read from its own moof boxes and its run's init section (timescale, default
// sample duration). A segment is headless, so ffprobe cannot read it alone; this is exact and costs no process.
import { BoxReader, fragmentTiming, timescaleOf, trexDefaultDuration } from '../hls/mp4.ts';

/** What a run's init section says about the timing of its fragments. */
export interface InitTiming {
  /** Ticks per second of the audio track. */
  timescale: number;
  /** The track's default sample duration (trex), for fragments that do not carry their own. */
  defaultDuration: number | null;
}

/** The init section's timing (its moov), or null when it holds no moov with a timescale. */
export function initTiming(init: Buffer): InitTiming | null {
  const moov = new BoxReader().push(init).find((b) => b.type === 'moov');
  const timescale = moov ? timescaleOf(moov.bytes) : null;
  if (!moov || !timescale) return null;
  return { timescale, defaultDuration: trexDefaultDuration(moov.bytes) };
}

export interface SegmentTiming {
  /** Decode time of the first sample (the first fragment's tfdt), seconds on its run's media clock. */
  decodeTime: number;
  /** The samples' total duration, seconds. */
  duration: number;
  /** Samples: AAC frames, one packet each. */
  samples: number;
}

/** A segment's timing (its fragments' tfdt and sample durations), or null when a fragment is not one FFmpeg writes. */
export function segmentTiming(segment: Buffer, init: InitTiming): SegmentTiming | null {
  const reader = new BoxReader();
  let first: number | null = null;
  let ticks = 0;
  let samples = 0;
  for (const box of reader.push(segment)) {
    if (box.type !== 'moof') continue;
    const t = fragmentTiming(box.bytes, init.defaultDuration);
    if (!t) return null;
    first ??= t.baseMediaDecodeTime;
    ticks += t.duration;
    samples += t.sampleCount;
  }
  if (first === null || reader.failed || reader.buffered > 0) return null;
  return { decodeTime: first / init.timescale, duration: ticks / init.timescale, samples };
}
