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
 * Options placed before the one-pipe input (oggInput.ts): an Ogg stream with an Opus stream per slot on stdin. Its
 * headers say everything (they come first, in full): no probing, the first packets are mixed at once.
 */
export function mixerOggInputOptions(): string[] {
  return ['-f', 'ogg', '-probesize', '32', '-analyzeduration', '0'];
}

/** The slots' lookahead (ms): what the levelled path is delayed by, against what its leveller hears. */
export const SLOT_LOOKAHEAD_MS = 10;

/**
 * Each performer's levelling, before the mix (docs/decisions.md, "On-air sound"), from label `from` to label `to`
 * (`i` keeps the inner labels apart). A gate first: below -62 dBFS RMS a slot is room noise, cut by up to 60 dB, so the
 * levelling after it never lifts noise and a performer who stops talking does not swell. Then a leveller: 20:1 from
 * -60 dBFS with 36 dB of make-up, so voices from -40 to -1 dBFS peak come out alike. Its detector charges in
 * milliseconds (attack 10 ms) and lets go over seconds (release 9 s), so it rides the voice's level and holds it
 * through pauses; it hears the slot 10 ms ahead of what it levels (a lookahead: `adelay` on the levelled path), so the
 * first instant of a voice after silence, when the gain is still at its most, is never lifted (without it, a
 * performer's first packet came out 36 dB too loud for a few milliseconds: a click the limiter turned into a splash).
 */
export function slotLeveller(i: number, from: string, to: string): string {
  return (
    `[${from}]agate=threshold=0.0008:ratio=10:range=0.001:attack=5:release=300:detection=rms,asplit=2[lk${i}][la${i}];` +
    `[la${i}]adelay=delays=${SLOT_LOOKAHEAD_MS}:all=1[ld${i}];` +
    `[ld${i}][lk${i}]sidechaincompress=threshold=0.001:ratio=20:attack=10:release=9000:makeup=64:knee=4:detection=rms[${to}]`
  );
}

/** K-weighting (ITU-R BS.1770, as EBU R128 measures loudness): the RLB high-pass at 38 Hz, +4 dB above 1.7 kHz. */
const K_WEIGHTING = 'highpass=f=38:t=q:w=0.5,highshelf=f=1682:g=4:t=q:w=0.7071';

/**
 * The programme's master, after the mix: a 20:1 leveller whose detector hears as loudness is measured (the mix in mono,
 * K-weighted; RMS with attack and release alike at 2 s, so that speech with its pauses, steady music and a tone read
 * alike) with the make-up that puts them at -16 LUFS integrated; then a limiter at -2.5 dBFS (5 ms of lookahead),
 * which keeps the AAC's true peak under -1 dBTP. The slots are stereo (FFmpeg decodes each RTP Opus stream as two
 * channels), and so is the mix. `from` labels the mix; the chain's output is left unlabelled.
 */
export function masterChain(from: string): string {
  return (
    `[${from}]asplit=2[${from}m][${from}k];[${from}k]pan=mono|c0=0.5*c0+0.5*c1,${K_WEIGHTING}[${from}s];` +
    `[${from}m][${from}s]sidechaincompress=threshold=0.01:ratio=20:attack=2000:release=2000:makeup=12:knee=6:detection=rms,` +
    'alimiter=limit=0.75:attack=5:release=50:level=disabled'
  );
}

/**
 * Each slot levelled, then amix of every slot (no normalization: an absent slot is silence, not a reason to turn the
 * others down), then the master, less the lookahead's first samples; `asetpts=N/SR/TB` stamps the mix by its sample count, so the encoder sees one
 * gapless line. Without it the first two frames of a run were 64 samples apart (the RTP inputs' 960-sample Opus
 * frames against amix's first frame), and the first fragment was 0.19333 s: longer than PART-TARGET, which players
 * refuse. The relays (rtp.ts) keep every input gapless in real time, so the sample count is the programme clock.
 */
export function mixerFilter(inputs: number, opts: { compensateLookahead?: boolean } = {}): string {
  const slots = Array.from({ length: inputs }, (_, i) => `${slotLeveller(i, `0:a:${i}`, `lv${i}`)};`).join('');
  const labels = Array.from({ length: inputs }, (_, i) => `[lv${i}]`).join('');
  // The lookahead's first milliseconds are silence the slots' delay put in front: cut, so that the programme clock's
  // sample N is what came in at N (tracks and the mix stay as aligned as before the lookahead). The wall-clock delay
  // is unchanged. `compensateLookahead: false` keeps them, to measure that delay.
  const trim = opts.compensateLookahead === false ? '' : `atrim=start_sample=${(SLOT_LOOKAHEAD_MS * RATE) / 1000},`;
  return `${slots}${labels}amix=inputs=${inputs}:normalize=0:dropout_transition=0[sum];${masterChain('sum')},${trim}asetpts=N/SR/TB[mix]`;
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
