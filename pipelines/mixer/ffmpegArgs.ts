// Pure builders for the mixer's FFmpeg invocation; golden tests pin their output.

export interface MixerArgsOptions {
  /** Number of Opus streams in the SDP (mixer slots). */
  inputs: number;
  /** LL-HLS parts: FFmpeg's fragments are this long, rounded down to whole AAC frames (partFrames). */
  partSeconds: number;
  aacBitrateKbps: number;
}

/** The playlist players fetch (written by pipelines/hls/liveWriter.ts). */
export const PLAYLIST_NAME = 'index.m3u8';

/** Samples in an AAC-LC frame, and the programme's sample rate. */
const AAC_FRAME = 1024;
const RATE = 48000;

/** AAC frames in a part of about `partSeconds` (never longer: a part longer than PART-TARGET is refused by players). */
export function partFrames(partSeconds: number): number {
  return Math.max(1, Math.floor((partSeconds * RATE) / AAC_FRAME + 1e-9));
}

/** A part's length in seconds: partFrames() whole AAC frames (0.2 → 0.192). */
export function partDurationSeconds(partSeconds: number): number {
  return (partFrames(partSeconds) * AAC_FRAME) / RATE;
}

/** Options placed before the SDP input. */
export function mixerInputOptions(): string[] {
  return [
    '-protocol_whitelist', 'file,rtp,udp',
    // The SDP says everything about the streams: no probing delay before the first segment. Not `-fflags
    // +nobuffer`: it discards the packets read while the inputs are probed, one 20 ms frame per slot, so that
    // performers sat one frame apart in the mix from one run to the next (measured: tracks vs mix at +6 or -14 ms).
    '-probesize', '32',
    '-analyzeduration', '0',
  ];
}

/**
 * The loudness chain, with no lookahead beyond the limiter's 5 ms (loudnorm would add 3 s of delay): a gentle
 * downward expander below -50 dBFS (room noise is not lifted), a levelling compressor (20:1 above -40 dBFS) with
 * make-up gain to about -16 LUFS, and a limiter at -2 dBFS so nothing clips after AAC. Measured on a steady tone:
 * -30 dBFS in → -16.6 LUFS, -6 dBFS in → -15.4 LUFS (stereo out); see docs/decisions.md.
 */
export const LOUDNESS_CHAIN = [
  'agate=threshold=0.003:ratio=2:range=0.06:attack=10:release=250',
  'acompressor=threshold=0.01:ratio=20:attack=5:release=300:makeup=12:knee=2',
  'volume=1.7dB',
  'alimiter=limit=0.79:attack=5:release=50:level=disabled',
].join(',');

/**
 * amix of every slot (no normalization: an absent slot is silence, not a reason to turn the others down), then the
 * loudness chain; `asetpts=N/SR/TB` stamps the mix by its sample count, so the encoder sees one gapless line. Without
 * it the first two frames of a run were 64 samples apart (the RTP inputs' 960-sample Opus frames against amix's
 * first frame), and the first fragment was 0.19333 s: longer than PART-TARGET, which players refuse. The relays
 * (rtp.ts) keep every input gapless in real time, so the sample count is the programme clock.
 */
export function mixerFilter(inputs: number): string {
  const labels = Array.from({ length: inputs }, (_, i) => `[0:a:${i}]`).join('');
  return `${labels}amix=inputs=${inputs}:normalize=0:dropout_transition=0,${LOUDNESS_CHAIN},asetpts=N/SR/TB[mix]`;
}

/**
 * Options after the input: the filter graph, the AAC encoder, and fragmented MP4 (CMAF) on stdout, one fragment per
 * LL-HLS part. FFmpeg 5.1's HLS muxer cannot write parts, so Node cuts them (pipelines/hls/liveWriter.ts). A fragment
 * is closed once it holds `frag_duration`: half a frame under the part's length makes every fragment exactly
 * partFrames() frames (measured: 9 frames, 0.192 s, for 0.2 s).
 */
export function mixerOutputOptions(o: MixerArgsOptions): string[] {
  const fragMicros = Math.round(((partFrames(o.partSeconds) - 0.5) * AAC_FRAME * 1e6) / RATE);
  return [
    '-filter_complex', mixerFilter(o.inputs),
    '-map', '[mix]',
    '-c:a', 'aac',
    // The "fast" coder, not the default "twoloop": twoloop's cost depends on the signal (measured: the same mix of
    // four tones at other relative phases cost 0.053 or 0.091 core, one mix in four), fast costs 0.049 for all, and at
    // 128k it sounds as good (docs/decisions.md, "AAC: the fast coder").
    '-aac_coder', 'fast',
    '-b:a', `${o.aacBitrateKbps}k`,
    '-ar', String(RATE),
    '-ac', '2',
    '-f', 'mp4',
    // empty_moov: the init section comes first and alone; default_base_moof: each fragment stands by itself (a part);
    // cmaf: the brands players expect of CMAF.
    '-movflags', 'cmaf+empty_moov+default_base_moof',
    '-frag_duration', String(fragMicros),
    // Every fragment leaves at once, not when an output buffer fills.
    '-flush_packets', '1',
  ];
}
