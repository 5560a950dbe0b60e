// The archive's derived files: the VOD playlist and the whole-broadcast audio file (remuxed, never re-encoded).
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Log } from '../log.ts';
import { FfmpegRunError, runFfmpeg } from '../ffmpeg/run.ts';
import { initTiming, segmentTiming } from './fmp4.ts';
import { concatArgs, concatList, remuxArgs, silenceArgs } from './vodArgs.ts';

export interface VodSegment {
  uri: string;
  duration: number;
  programDateTime: string | null;
  /** Its run's init section (URI): a segment decodes only behind it. */
  map: string;
}

/**
 * An HLS VOD playlist (RFC 8216 §4.3.3.5) of fMP4 segments: every segment, PROGRAM-DATE-TIME kept, ENDLIST. Each
 * FFmpeg run has its own init section: EXT-X-MAP before the run's first segment, and a run after a crash-restart
 * starts with EXT-X-DISCONTINUITY (its timestamps start again) and its own EXT-X-MAP. Version 7: EXT-X-MAP in a
 * playlist that is not I-frames only needs 6, and nothing here needs more.
 */
export function buildVodPlaylist(segments: readonly VodSegment[], dateRangeTags: readonly string[] = []): string {
  const target = Math.max(1, ...segments.map((s) => Math.round(s.duration)));
  const lines = ['#EXTM3U', '#EXT-X-VERSION:7', '#EXT-X-PLAYLIST-TYPE:VOD', '#EXT-X-INDEPENDENT-SEGMENTS', `#EXT-X-TARGETDURATION:${target}`, '#EXT-X-MEDIA-SEQUENCE:0', ...dateRangeTags];
  let map: string | null = null;
  for (const s of segments) {
    if (s.map !== map) {
      if (map !== null) lines.push('#EXT-X-DISCONTINUITY');
      lines.push(`#EXT-X-MAP:URI="${s.map}"`);
      map = s.map;
    }
    if (s.programDateTime) lines.push(`#EXT-X-PROGRAM-DATE-TIME:${s.programDateTime}`);
    lines.push(`#EXTINF:${s.duration.toFixed(6)},`, s.uri);
  }
  lines.push('#EXT-X-ENDLIST', '');
  return lines.join('\n');
}

export interface RemuxRun {
  /** The run's init section. */
  init: string;
  /** The run's fMP4 segments (AAC), in order: behind the init section they make one fragmented MP4. */
  segments: string[];
  /** Where the run's first sample is on the programme clock (seconds); null: right after the previous run. */
  startSeconds: number | null;
}

export interface RemuxOptions {
  bitrateKbps: number;
  /** Aborting kills the FFmpeg at work at once; the remux rejects with an FfmpegRunError (`aborted`). */
  signal?: AbortSignal;
  /** For the whole remux, every FFmpeg run in it; past it the remux rejects with an FfmpegRunError (`timedOut`). */
  timeoutMs?: number;
  log?: Log;
}

/** The programme's AAC: frames of 1024 samples at 48 kHz. */
const FRAME_SAMPLES = 1024;
const SAMPLE_RATE = 48000;

/** AAC frames in a run's segments, from their moof boxes: what its remux holds, one packet per frame. */
async function runFrames(run: RemuxRun): Promise<number> {
  const init = initTiming(await fsp.readFile(run.init));
  if (!init) throw new Error(`${run.init} is not an init section`);
  let frames = 0;
  for (const file of run.segments) {
    const timing = segmentTiming(await fsp.readFile(file), init);
    if (!timing) throw new Error(`${file} is not an fMP4 segment`);
    frames += timing.samples;
  }
  return frames;
}

/**
 * The whole broadcast as one .m4a: AAC copied from the segments (no re-encoding), moov first (faststart). Each run
 * goes to FFmpeg as one fragmented MP4 on stdin (its init section, then its segments). A run that starts later than
 * the file has reached (after a crash-restart: what the killed FFmpeg had not written yet) comes after encoded
 * silence as long as the gap, counted in AAC frames (the joined file is a line of frames: its n-th frame is n × 1024
 * samples in), so every run starts within half a frame (11 ms) of its place on the programme clock. Written to
 * `<outPath>.tmp.m4a` then renamed; on any failure (an abort and a timeout too) neither that file nor the parts folder
 * is left behind.
 */
export async function remuxToM4a(runs: readonly RemuxRun[], outPath: string, opts: RemuxOptions): Promise<void> {
  const tmp = `${outPath}.tmp.m4a`;
  const nonEmpty = runs.filter((r) => r.segments.length > 0);
  if (nonEmpty.length === 0) throw new Error('no segments to remux');
  const deadline = opts.timeoutMs === undefined ? null : Date.now() + opts.timeoutMs;
  const ffmpeg = async (args: string[], stdinFiles?: readonly string[]) => {
    const timeoutMs = deadline === null ? undefined : deadline - Date.now();
    if (timeoutMs !== undefined && timeoutMs <= 0) throw new FfmpegRunError({ program: 'ffmpeg', args, exit: null, stderrTail: [], timedOut: true });
    await runFfmpeg({ args, stdinFiles, signal: opts.signal, timeoutMs, log: opts.log });
  };
  try {
    // The file, part by part: silence (in frames) where a run starts later than the file has reached, then the run.
    const plan: ({ gapFrames: number } | { run: RemuxRun })[] = [];
    let frames = 0;
    for (const run of nonEmpty) {
      const at = run.startSeconds === null ? frames : Math.round((run.startSeconds * SAMPLE_RATE) / FRAME_SAMPLES);
      if (at > frames) {
        plan.push({ gapFrames: at - frames });
        frames = at;
      }
      plan.push({ run });
      if (run !== nonEmpty.at(-1)) frames += await runFrames(run);
    }
    const only = plan.length === 1 ? plan[0]! : null;
    if (only && 'run' in only) {
      await ffmpeg(remuxArgs(tmp), [only.run.init, ...only.run.segments]);
    } else {
      const work = await fsp.mkdtemp(`${outPath}.parts-`);
      try {
        const parts: string[] = [];
        for (const [i, step] of plan.entries()) {
          const part = path.join(work, `part_${i}.m4a`);
          if ('gapFrames' in step) await ffmpeg(silenceArgs(step.gapFrames, opts.bitrateKbps, part));
          else await ffmpeg(remuxArgs(part), [step.run.init, ...step.run.segments]);
          parts.push(part);
        }
        const list = path.join(work, 'list.txt');
        await fsp.writeFile(list, concatList(parts));
        await ffmpeg(concatArgs(list, tmp));
      } finally {
        await fsp.rm(work, { recursive: true, force: true });
      }
    }
    await fsp.rename(tmp, outPath);
  } catch (err) {
    // Every FFmpeg of this remux has exited by now (the runner waits for it), so nothing writes the file again.
    await fsp.rm(tmp, { force: true });
    throw err;
  }
}
