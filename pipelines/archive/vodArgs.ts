// Pure builders for the FFmpeg runs that make the archive's .m4a; golden tests (test/unit/archive-args.test.ts) pin
// their output. Every run is quiet but for errors, never reads the terminal, and overwrites its output.
const COMMON = ['-v', 'error', '-nostdin', '-y'];
/** AAC copied into a plain (not fragmented) MP4, moov first so a download plays before it has all arrived. */
const M4A_COPY = ['-map', '0:a:0', '-c', 'copy', '-movflags', '+faststart', '-f', 'mp4'];

/**
 * One FFmpeg run's fragmented MP4 arriving on stdin (its init section, then its segments, back to back) → its AAC,
 * copied (never re-encoded), into `output`. The AAC is already in MP4's form (no ADTS headers): no bitstream filter.
 */
export function remuxArgs(output: string): string[] {
  return [...COMMON, '-f', 'mp4', '-i', 'pipe:0', ...M4A_COPY, output];
}

/**
 * `frames` AAC frames (1024 samples each) of encoded silence (AAC-LC, 48 kHz stereo, like the programme) into
 * `output`, to stand for a gap. Counted in frames, not seconds: the encoder adds a priming frame, which the concat
 * step drops (the file's edit list marks it), so the gap is exactly `frames` frames in the joined file.
 */
export function silenceArgs(frames: number, bitrateKbps: number, output: string): string[] {
  return [...COMMON, '-f', 'lavfi', '-i', 'anullsrc=r=48000:cl=stereo:n=1024', '-frames:a', String(frames), '-c:a', 'aac', '-b:a', `${bitrateKbps}k`, '-f', 'mp4', output];
}

/** The parts listed in `listFile` (concatList) joined into one file, AAC copied, moov first. */
export function concatArgs(listFile: string, output: string): string[] {
  return [...COMMON, '-f', 'concat', '-safe', '0', '-i', listFile, '-map', '0:a:0', '-c', 'copy', '-movflags', '+faststart', '-f', 'mp4', output];
}

/** The concat demuxer's list of `parts` (absolute paths, single-quoted, a quote in a name escaped). */
export function concatList(parts: readonly string[]): string {
  return parts.map((p) => `file '${p.replace(/'/g, "'\\''")}'`).join('\n') + '\n';
}
