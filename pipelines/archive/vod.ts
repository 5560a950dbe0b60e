// The archive's derived files: the VOD playlist and the whole-broadcast audio file (remuxed, never re-encoded).
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Log } from '../log.ts';
import { FfmpegRunError, runFfmpeg } from '../ffmpeg/run.ts';
import { concatArgs, concatList, remuxArgs, silenceArgs } from './vodArgs.ts';

export interface VodSegment {
  uri: string;
  duration: number;
  programDateTime: string | null;
  discontinuity: boolean;
}

/** An HLS VOD playlist (RFC 8216 §4.3.3.5): every segment, PROGRAM-DATE-TIME kept, ENDLIST. */
export function buildVodPlaylist(segments: readonly VodSegment[], dateRangeTags: readonly string[] = []): string {
  const target = Math.max(1, ...segments.map((s) => Math.round(s.duration)));
  const lines = ['#EXTM3U', '#EXT-X-VERSION:3', '#EXT-X-PLAYLIST-TYPE:VOD', '#EXT-X-INDEPENDENT-SEGMENTS', `#EXT-X-TARGETDURATION:${target}`, '#EXT-X-MEDIA-SEQUENCE:0', ...dateRangeTags];
  segments.forEach((s, i) => {
    if (s.discontinuity && i > 0) lines.push('#EXT-X-DISCONTINUITY');
    if (s.programDateTime) lines.push(`#EXT-X-PROGRAM-DATE-TIME:${s.programDateTime}`);
    lines.push(`#EXTINF:${s.duration.toFixed(6)},`, s.uri);
  });
  lines.push('#EXT-X-ENDLIST', '');
  return lines.join('\n');
}

export interface RemuxRun {
  /** The run's segment files (MPEG-TS, AAC), in order. */
  files: string[];
  /** Silence (seconds) to put before the run so the file stays on the programme clock (a crash-restart gap). */
  gapBefore: number;
}

export interface RemuxOptions {
  bitrateKbps: number;
  /** Aborting kills the FFmpeg at work at once; the remux rejects with an FfmpegRunError (`aborted`). */
  signal?: AbortSignal;
  /** For the whole remux, every FFmpeg run in it; past it the remux rejects with an FfmpegRunError (`timedOut`). */
  timeoutMs?: number;
  log?: Log;
}

/** Shorter gaps are not filled with silence. */
const MIN_GAP_SECONDS = 0.03;

/**
 * The whole broadcast as one .m4a: AAC copied from the segments (no re-encoding), moov first (faststart). A run
 * after a crash-restart is joined after a stretch of encoded silence as long as the gap, so times in the file stay
 * those of the programme clock. Written to `<outPath>.tmp.m4a` then renamed; on any failure (an abort and a timeout
 * too) neither that file nor the parts folder is left behind.
 */
export async function remuxToM4a(runs: readonly RemuxRun[], outPath: string, opts: RemuxOptions): Promise<void> {
  const tmp = `${outPath}.tmp.m4a`;
  const nonEmpty = runs.filter((r) => r.files.length > 0);
  if (nonEmpty.length === 0) throw new Error('no segments to remux');
  const deadline = opts.timeoutMs === undefined ? null : Date.now() + opts.timeoutMs;
  const ffmpeg = async (args: string[], stdinFiles?: readonly string[]) => {
    const timeoutMs = deadline === null ? undefined : deadline - Date.now();
    if (timeoutMs !== undefined && timeoutMs <= 0) throw new FfmpegRunError({ program: 'ffmpeg', args, exit: null, stderrTail: [], timedOut: true });
    await runFfmpeg({ args, stdinFiles, signal: opts.signal, timeoutMs, log: opts.log });
  };
  try {
    if (nonEmpty.length === 1 && nonEmpty[0]!.gapBefore < MIN_GAP_SECONDS) {
      await ffmpeg(remuxArgs(tmp), nonEmpty[0]!.files);
    } else {
      const work = await fsp.mkdtemp(`${outPath}.parts-`);
      try {
        const parts: string[] = [];
        for (const [i, run] of nonEmpty.entries()) {
          if (run.gapBefore >= MIN_GAP_SECONDS) {
            const gap = path.join(work, `gap_${i}.m4a`);
            await ffmpeg(silenceArgs(run.gapBefore, opts.bitrateKbps, gap));
            parts.push(gap);
          }
          const part = path.join(work, `run_${i}.m4a`);
          await ffmpeg(remuxArgs(part), run.files);
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
