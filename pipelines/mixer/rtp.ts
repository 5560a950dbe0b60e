// Pure RTP handling for a mixer slot: one continuous Opus stream out, whatever comes in (or doesn't).

export const OPUS_FRAME_SAMPLES = 960; // 20 ms at 48 kHz
export const OPUS_CLOCK_KHZ = 48;
/** An Opus packet of one 20 ms CELT frame of silence (TOC 0xF8: fullband, 20 ms, mono, one frame). */
export const OPUS_SILENCE = Buffer.from([0xf8, 0xff, 0xfe]);

export interface RtpPacket {
  payloadType: number;
  marker: boolean;
  sequence: number;
  timestamp: number;
  ssrc: number;
  payload: Buffer;
}

/** Parses an RTP packet; null for RTCP, padding-only packets and anything malformed. */
export function parseRtp(buf: Buffer): RtpPacket | null {
  if (buf.length < 12 || buf[0]! >> 6 !== 2) return null;
  const pt = buf[1]! & 0x7f;
  // RTCP multiplexed on the same port: packet types 200-204 show up as RTP payload types 72-76.
  if (pt >= 72 && pt <= 76) return null;
  const cc = buf[0]! & 0x0f;
  let offset = 12 + cc * 4;
  if (buf[0]! & 0x10) {
    if (buf.length < offset + 4) return null;
    offset += 4 + buf.readUInt16BE(offset + 2) * 4;
  }
  let end = buf.length;
  if (buf[0]! & 0x20) {
    const pad = buf[buf.length - 1]!;
    end -= pad;
  }
  if (end <= offset) return null;
  return {
    payloadType: pt,
    marker: (buf[1]! & 0x80) !== 0,
    sequence: buf.readUInt16BE(2),
    timestamp: buf.readUInt32BE(4),
    ssrc: buf.readUInt32BE(8),
    payload: buf.subarray(offset, end),
  };
}

export function buildRtp(p: { payloadType: number; marker?: boolean; sequence: number; timestamp: number; ssrc: number; payload: Buffer }): Buffer {
  const out = Buffer.allocUnsafe(12 + p.payload.length);
  out[0] = 0x80;
  out[1] = (p.marker ? 0x80 : 0) | (p.payloadType & 0x7f);
  out.writeUInt16BE(p.sequence & 0xffff, 2);
  out.writeUInt32BE(p.timestamp >>> 0, 4);
  out.writeUInt32BE(p.ssrc >>> 0, 8);
  p.payload.copy(out, 12);
  return out;
}

/** Samples (48 kHz) per frame for each of the 32 TOC configurations (RFC 6716 §3.1, Table 2). */
function frameSamples(config: number): number {
  if (config < 12) return [480, 960, 1920, 2880][config % 4]!; // SILK NB/MB/WB: 10, 20, 40, 60 ms
  if (config < 16) return [480, 960][config % 2]!; // Hybrid SWB/FB: 10, 20 ms
  return [120, 240, 480, 960][config % 4]!; // CELT NB/WB/SWB/FB: 2.5, 5, 10, 20 ms
}

/** Samples (48 kHz) in an Opus packet from its TOC byte and frame count code (RFC 6716 §3.1); 0 for malformed. */
export function opusPacketSamples(packet: Buffer): number {
  if (packet.length < 1) return 0;
  const toc = packet[0]!;
  const perFrame = frameSamples(toc >> 3);
  let frames: number;
  switch (toc & 0x03) {
    case 0:
      frames = 1;
      break;
    case 1: // two frames of equal size: the rest must split evenly (RFC 6716 R3)
      if ((packet.length - 1) % 2 !== 0) return 0;
      frames = 2;
      break;
    case 2: // two frames, the first one's length coded after the TOC
      if (packet.length < 2) return 0;
      frames = 2;
      break;
    default: // code 3: frame count byte
      if (packet.length < 2) return 0;
      frames = packet[1]! & 0x3f;
      break;
  }
  const total = frames * perFrame;
  // At least one frame, at most 120 ms (RFC 6716 R5).
  return total > 0 && total <= 5760 ? total : 0;
}

/** Input packets later than this after the previous one count as a gap that silence fills. */
export const GAP_MS = 60;

/** The most silence a sender's own gap (lost packets, DTX) is filled with; longer gaps are left to the wall clock. */
const MAX_SENDER_GAP_SAMPLES = OPUS_CLOCK_KHZ * 1000;

/**
 * The timing core of a mixer slot: one gapless line of Opus frames. Every frame starts exactly where the previous one
 * ended (FFmpeg's amix concatenates what it is given, so a hole in the timestamps would shift everything after it).
 * Real packets are renumbered onto one SSRC and sequence; a gap in the sender's own timestamps (lost packets, DTX) is
 * filled with silence frames; when no packet has arrived for GAP_MS, silence frames are due, as many as the wall clock
 * says have passed (catching up, never one per timer tick: late ticks would make the slot run slow and drift the mix).
 */
export class SlotStream {
  readonly ssrc: number;
  readonly payloadType: number;
  readonly #startMs: number;
  #seq = 0;
  /** Where the next frame starts, in 48 kHz units since start. */
  #nextTs = 0;
  #lastRealMs = Number.NEGATIVE_INFINITY;
  #source: { ssrc: number; timestamp: number; samples: number } | null = null;
  #filled = false;
  realPackets = 0;
  silencePackets = 0;

  constructor(args: { ssrc: number; payloadType: number; startMs: number }) {
    this.ssrc = args.ssrc;
    this.payloadType = args.payloadType;
    this.#startMs = args.startMs;
  }

  #wallTs(nowMs: number): number {
    return Math.floor((nowMs - this.#startMs) * OPUS_CLOCK_KHZ);
  }

  #emit(payload: Buffer, samples: number, marker = false): Buffer {
    const pkt = buildRtp({ payloadType: this.payloadType, marker, sequence: this.#seq, timestamp: this.#nextTs, ssrc: this.ssrc, payload });
    this.#nextTs += samples;
    this.#seq = (this.#seq + 1) & 0xffff;
    return pkt;
  }

  #silence(out: Buffer[]): void {
    out.push(this.#emit(OPUS_SILENCE, OPUS_FRAME_SAMPLES));
    this.silencePackets++;
  }

  /** A packet from the performer; returns what to send on (silence that must come first, then the packet), or []. */
  onPacket(pkt: RtpPacket, nowMs: number): Buffer[] {
    const samples = opusPacketSamples(pkt.payload);
    if (samples === 0) return [];
    const out: Buffer[] = [];
    const src = this.#source;
    if (src && src.ssrc === pkt.ssrc && !this.#filled) {
      const delta = (pkt.timestamp - src.timestamp) >>> 0;
      // Late, duplicate or absurd jumps: drop rather than disturb the line (loopback hardly reorders).
      if (delta === 0 || delta > 0x7fffffff) return [];
      // Lost packets or DTX: the sender's own gap becomes silence, so what follows stays in place.
      const gap = Math.min(delta - src.samples, MAX_SENDER_GAP_SAMPLES);
      for (let n = Math.round(gap / OPUS_FRAME_SAMPLES); n > 0; n--) this.#silence(out);
    } else {
      // A new sender, or the first packet after silence: catch the line up with the wall clock, then continue it.
      const wall = this.#wallTs(nowMs);
      while (this.#nextTs + 2 * OPUS_FRAME_SAMPLES <= wall) this.#silence(out);
    }
    this.#source = { ssrc: pkt.ssrc, timestamp: pkt.timestamp, samples };
    this.#filled = false;
    this.#lastRealMs = nowMs;
    this.realPackets++;
    out.push(this.#emit(pkt.payload, samples, pkt.marker));
    return out;
  }

  /** Where the line is at nowMs: the later of the wall clock and the end of the last frame sent (48 kHz units). */
  timestampAt(nowMs: number): number {
    return Math.max(this.#wallTs(nowMs), this.#nextTs);
  }

  /** The end of the last frame sent (48 kHz units since start): where the newest audio of this slot sits in the mix. */
  get lineEnd(): number {
    return this.#nextTs;
  }

  /** Silence frames due now (empty while the performer's packets flow). */
  due(nowMs: number): Buffer[] {
    if (nowMs - this.#lastRealMs < GAP_MS) return [];
    const out: Buffer[] = [];
    const wall = this.#wallTs(nowMs);
    while (this.#nextTs <= wall) {
      this.#silence(out);
      this.#filled = true;
    }
    return out;
  }
}
