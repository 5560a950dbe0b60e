// Pure builders for the mixer's FFmpeg invocation; golden tests pin their output.

export interface MixerArgsOptions {
  /** Number of Opus streams in the SDP (mixer slots). */
  inputs: number;
  segmentSeconds: number;
  /** Segments listed in the sliding live playlist. */
  listSize: number;
  aacBitrateKbps: number;
  outDir: string;
  /** A restart after a crash continues the playlist and marks the break with EXT-X-DISCONTINUITY. */
  restart: boolean;
}

/** The playlist players fetch (published with its EXT-X-DATERANGE tags by pipelines/hls/publisher.ts). */
export const PLAYLIST_NAME = 'index.m3u8';
/** FFmpeg's own playlist (a dotfile: never served). */
export const MIX_PLAYLIST_NAME = '.mix.m3u8';
export const SEGMENT_PATTERN = 'seg_%05d.ts';

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

/** amix of every slot (no normalization: an absent slot is silence, not a reason to turn the others down). */
export function mixerFilter(inputs: number): string {
  const labels = Array.from({ length: inputs }, (_, i) => `[0:a:${i}]`).join('');
  return `${labels}amix=inputs=${inputs}:normalize=0:dropout_transition=0,${LOUDNESS_CHAIN}[mix]`;
}

/** Options after the input: the filter graph, the AAC encoder and the HLS muxer. */
export function mixerOutputOptions(o: MixerArgsOptions): string[] {
  const flags = ['program_date_time', 'temp_file', 'append_list', 'omit_endlist', 'independent_segments'];
  if (o.restart) flags.push('discont_start');
  return [
    '-filter_complex', mixerFilter(o.inputs),
    '-map', '[mix]',
    '-c:a', 'aac',
    // The "fast" coder, not the default "twoloop": twoloop's cost depends on the signal (measured: the same mix of
    // four tones at other relative phases cost 0.053 or 0.091 core, one mix in four), fast costs 0.049 for all, and at
    // 128k it sounds as good (docs/decisions.md, "AAC: the fast coder").
    '-aac_coder', 'fast',
    '-b:a', `${o.aacBitrateKbps}k`,
    '-ar', '48000',
    '-ac', '2',
    '-f', 'hls',
    '-hls_time', String(o.segmentSeconds),
    '-hls_list_size', String(o.listSize),
    '-hls_flags', flags.join('+'),
    '-hls_segment_type', 'mpegts',
    '-hls_segment_filename', `${o.outDir}/${SEGMENT_PATTERN}`,
  ];
}
