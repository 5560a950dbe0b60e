// The archive's derived files: the VOD playlist and the whole-broadcast audio file (remuxed, never re-encoded).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';

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

/** Runs ffmpeg with stdin fed from the given files in order (a byte-level concat, like the concat: protocol). */
function ffmpegFromFiles(files: readonly string[], args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const proc = spawn('ffmpeg', ['-v', 'error', '-nostdin', '-y', ...args], { stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    proc.stderr.on('data', (d: Buffer) => {
      if (stderr.length < 8000) stderr += d.toString();
    });
    proc.stdin.on('error', () => undefined);
    proc.once('error', reject);
    proc.once('exit', (code, signal) => {
      if (code === 0) resolve();
      else reject(new Error(`ffmpeg exited with ${code ?? signal}: ${stderr.trim().slice(-1500)}`));
    });
    void (async () => {
      try {
        for (const f of files) {
          await new Promise<void>((res, rej) => {
            const rs = fs.createReadStream(f);
            rs.once('error', rej);
            rs.once('end', () => res());
            rs.pipe(proc.stdin, { end: false });
          });
        }
      } catch (err) {
        proc.kill('SIGKILL');
        reject(err as Error);
        return;
      } finally {
        proc.stdin.end();
      }
    })();
  });
}

const M4A_ARGS = ['-map', '0:a:0', '-c', 'copy', '-bsf:a', 'aac_adtstoasc', '-movflags', '+faststart', '-f', 'mp4'];

export interface RemuxRun {
  /** The run's segment files (MPEG-TS, AAC), in order. */
  files: string[];
  /** Silence (seconds) to put before the run so the file stays on the programme clock (a crash-restart gap). */
  gapBefore: number;
}

/**
 * The whole broadcast as one .m4a: AAC copied from the segments (no re-encoding), moov first (faststart). A run
 * after a crash-restart is joined after a stretch of encoded silence as long as the gap, so times in the file stay
 * those of the programme clock.
 */
export async function remuxToM4a(runs: readonly RemuxRun[], outPath: string, opts: { bitrateKbps: number }): Promise<void> {
  const tmp = `${outPath}.tmp.m4a`;
  const nonEmpty = runs.filter((r) => r.files.length > 0);
  if (nonEmpty.length === 0) throw new Error('no segments to remux');
  if (nonEmpty.length === 1 && nonEmpty[0]!.gapBefore < 0.03) {
    await ffmpegFromFiles(nonEmpty[0]!.files, ['-f', 'mpegts', '-i', 'pipe:0', ...M4A_ARGS, tmp]);
  } else {
    const work = await fsp.mkdtemp(`${outPath}.parts-`);
    try {
      const parts: string[] = [];
      for (const [i, run] of nonEmpty.entries()) {
        if (run.gapBefore >= 0.03) {
          const gap = path.join(work, `gap_${i}.m4a`);
          await ffmpegFromFiles([], ['-f', 'lavfi', '-i', `anullsrc=r=48000:cl=stereo`, '-t', run.gapBefore.toFixed(3), '-c:a', 'aac', '-b:a', `${opts.bitrateKbps}k`, '-f', 'mp4', gap]);
          parts.push(gap);
        }
        const part = path.join(work, `run_${i}.m4a`);
        await ffmpegFromFiles(run.files, ['-f', 'mpegts', '-i', 'pipe:0', ...M4A_ARGS, part]);
        parts.push(part);
      }
      const list = path.join(work, 'list.txt');
      await fsp.writeFile(list, parts.map((p) => `file '${p.replace(/'/g, "'\\''")}'`).join('\n') + '\n');
      await ffmpegFromFiles([], ['-f', 'concat', '-safe', '0', '-i', list, '-map', '0:a:0', '-c', 'copy', '-movflags', '+faststart', '-f', 'mp4', tmp]);
    } finally {
      await fsp.rm(work, { recursive: true, force: true });
    }
  }
  await fsp.rename(tmp, outPath);
}
