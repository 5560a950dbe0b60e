// Pure builders for the FFmpeg runs that make the archive's .m4a; golden tests (test/unit/archive-args.test.ts) pin
// their output. Every run is quiet but for errors, never reads the terminal, and overwrites its output.
const COMMON = ['-v', 'error', '-nostdin', '-y'];
/** AAC copied out of MPEG-TS (ADTS) into MP4 (ASC), moov first so a download plays before it has all arrived. */
const M4A_COPY = ['-map', '0:a:0', '-c', 'copy', '-bsf:a', 'aac_adtstoasc', '-movflags', '+faststart', '-f', 'mp4'];

/** MPEG-TS segments arriving on stdin, back to back → their AAC, copied (never re-encoded), into `output`. */
export function remuxArgs(output: string): string[] {
  return [...COMMON, '-f', 'mpegts', '-i', 'pipe:0', ...M4A_COPY, output];
}

/** `seconds` of encoded silence (AAC-LC, 48 kHz stereo, like the programme) into `output`, to stand for a gap. */
export function silenceArgs(seconds: number, bitrateKbps: number, output: string): string[] {
  return [...COMMON, '-f', 'lavfi', '-i', 'anullsrc=r=48000:cl=stereo', '-t', seconds.toFixed(3), '-c:a', 'aac', '-b:a', `${bitrateKbps}k`, '-f', 'mp4', output];
}

/** The parts listed in `listFile` (concatList) joined into one file, AAC copied, moov first. */
export function concatArgs(listFile: string, output: string): string[] {
  return [...COMMON, '-f', 'concat', '-safe', '0', '-i', listFile, '-map', '0:a:0', '-c', 'copy', '-movflags', '+faststart', '-f', 'mp4', output];
}

/** The concat demuxer's list of `parts` (absolute paths, single-quoted, a quote in a name escaped). */
export function concatList(parts: readonly string[]): string {
  return parts.map((p) => `file '${p.replace(/'/g, "'\\''")}'`).join('\n') + '\n';
}
