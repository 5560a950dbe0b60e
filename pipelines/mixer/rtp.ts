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

/** Input packets later than this after the previous one count as a gap that silence fills. */
export const GAP_MS = 60;

/**
 * The timing core of a mixer slot. Real packets are renumbered onto one SSRC, sequence and timestamp line; when
 * none has arrived for GAP_MS, silence frames are due, as many as the wall clock says have passed since the last
 * frame out (catching up, never one per timer tick: late ticks would make the slot run slow and drift the mix).
 */
export class SlotStream {
  readonly ssrc: number;
  readonly payloadType: number;
  readonly #startMs: number;
  #seq = 0;
  /** Timestamp of the last frame sent, in 48 kHz units since start; -960 before the first. */
  #lastTs = -OPUS_FRAME_SAMPLES;
  #lastRealMs = Number.NEGATIVE_INFINITY;
  #source: { ssrc: number; timestamp: number } | null = null;
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

  #emit(ts: number, payload: Buffer, marker = false): Buffer {
    this.#lastTs = ts;
    const pkt = buildRtp({ payloadType: this.payloadType, marker, sequence: this.#seq, timestamp: ts, ssrc: this.ssrc, payload });
    this.#seq = (this.#seq + 1) & 0xffff;
    return pkt;
  }

  /** A packet from the performer; returns the packet to send on, or null to drop it. */
  onPacket(pkt: RtpPacket, nowMs: number): Buffer | null {
    let ts: number;
    const src = this.#source;
    if (src && src.ssrc === pkt.ssrc && !this.#filled) {
      const delta = (pkt.timestamp - src.timestamp) >>> 0;
      // Late, duplicate or absurd jumps: drop rather than disturb the line (loopback hardly reorders).
      if (delta === 0 || delta > 0x7fffffff) return null;
      ts = this.#lastTs + Math.min(delta, OPUS_CLOCK_KHZ * 1000);
    } else {
      // A new sender, or the first packet after silence: continue the line right after the last frame.
      ts = Math.max(this.#lastTs + OPUS_FRAME_SAMPLES, src ? 0 : this.#wallTs(nowMs) - OPUS_FRAME_SAMPLES);
    }
    this.#source = { ssrc: pkt.ssrc, timestamp: pkt.timestamp };
    this.#filled = false;
    this.#lastRealMs = nowMs;
    this.realPackets++;
    return this.#emit(ts, pkt.payload, pkt.marker);
  }

  /** Silence frames due now (empty while the performer's packets flow). */
  due(nowMs: number): Buffer[] {
    if (nowMs - this.#lastRealMs < GAP_MS) return [];
    const out: Buffer[] = [];
    const wall = this.#wallTs(nowMs);
    while (this.#lastTs + OPUS_FRAME_SAMPLES <= wall) {
      out.push(this.#emit(this.#lastTs + OPUS_FRAME_SAMPLES, OPUS_SILENCE));
      this.silencePackets++;
      this.#filled = true;
    }
    return out;
  }
}
