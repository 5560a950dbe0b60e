// The mixer's one pipe: every slot's packets go to FFmpeg's stdin as one Ogg stream with a logical Opus stream per slot
// (OggMux), one write per stage per tick of the relays' timer, instead of a UDP socket and an RTP demuxer per slot
// (docs/decisions.md, "Cost per stage: one pipe"). The slots' lines stay what the relays make them: gapless, on the
// programme clock. This class only keeps them so across FFmpeg runs: while no FFmpeg reads, it holds what comes (the
// newest HOLD_MAX_PACKETS per slot); a new run starts with what was held, every slot from the same instant (the earliest
// held packet), a slot that starts later padded with silence up to its first packet, since amix lines its inputs up
// by their order, not their timestamps.
import type { Writable } from 'node:stream';
import { OggMux, type MuxPacket } from './oggMux.ts';
import { OPUS_FRAME_SAMPLES, OPUS_SILENCE, opusPacketSamples } from './rtp.ts';
import { onTickEnd, type SlotSink } from './slotRelay.ts';

/** Packets kept per slot while FFmpeg restarts (10 s of 20 ms frames); older ones are dropped first. */
const HOLD_MAX_PACKETS = 500;
/** What FFmpeg may leave unread before writes are dropped (it is stuck; the supervisor's business): about 20 s. */
const MAX_UNREAD_BYTES = 1 << 20;

interface Timed extends MuxPacket {
  /** Where the packet starts on the slot's line (48 kHz, as the RTP timestamp: modulo 2^32). */
  ts: number;
}

const SILENCE: MuxPacket = { payload: OPUS_SILENCE, samples: OPUS_FRAME_SAMPLES };

/** Signed distance from b to a on a 32-bit RTP clock. */
const diff32 = (a: number, b: number) => (a - b) | 0;

export class OggMixInput implements SlotSink {
  readonly slots: number;
  readonly #mux: OggMux;
  /** This tick's packets per slot (while a run reads), or everything since the last run (while none does). */
  #queued: Timed[][];
  /** Per slot, where its next packet must start in the current run; null until the run has placed the slot. */
  #next: (number | null)[];
  #out: Writable | null = null;
  readonly #removeHook: () => void;
  /** Bytes not written because FFmpeg did not read them. */
  droppedBytes = 0;
  /** Silence frames put in to line a slot up (a run's start, or a slot's own gap). */
  paddedFrames = 0;

  constructor(slots: number) {
    this.slots = slots;
    this.#mux = new OggMux(slots);
    this.#queued = Array.from({ length: slots }, () => []);
    this.#next = Array.from({ length: slots }, () => null);
    this.#removeHook = onTickEnd(() => this.flush());
  }

  take(slot: number, packets: readonly Buffer[]): void {
    const q = this.#queued[slot];
    if (!q) return;
    for (const pkt of packets) {
      const payload = pkt.subarray(12);
      const samples = opusPacketSamples(payload);
      if (samples > 0) q.push({ ts: pkt.readUInt32BE(4), payload, samples });
    }
    if (!this.#out && q.length > HOLD_MAX_PACKETS) q.splice(0, q.length - HOLD_MAX_PACKETS);
  }

  /**
   * A new FFmpeg reads `stdin`: the stream's headers, then what was held, every slot from the same instant. Returns
   * where the run starts on the slots' line (48 kHz units), or null when nothing was held (it starts with the next tick).
   */
  begin(stdin: Writable): number | null {
    this.#out = stdin;
    const start = this.#earliest();
    this.#next = this.#next.map(() => start);
    this.#write(this.#mux.header());
    this.flush();
    return start;
  }

  /** The earliest first packet queued in any slot, or null. */
  #earliest(): number | null {
    const firsts = this.#queued.filter((q) => q.length > 0).map((q) => q[0]!.ts);
    return firsts.length > 0 ? firsts.reduce((a, b) => (diff32(b, a) < 0 ? b : a)) : null;
  }

  /** The run's FFmpeg is gone: hold from now on. */
  end(): void {
    this.#out = null;
    this.#next = this.#next.map(() => null);
  }

  /** Writes this tick's packets (called by the relays' timer after every relay has flushed). */
  flush(): void {
    if (!this.#out) return;
    // A run that began with nothing held starts with its first packets: every slot from the earliest of them.
    if (this.#next.includes(null)) {
      const start = this.#earliest();
      if (start !== null) this.#next = this.#next.map((n) => n ?? start);
    }
    let any = false;
    const perSlot = this.#queued.map((q, slot) => {
      if (q.length === 0) return [];
      any = true;
      return this.#line(slot, q);
    });
    if (!any) return;
    this.#queued = this.#queued.map(() => []);
    this.#write(this.#mux.tick(perSlot));
  }

  /** A slot's packets as the run's line needs them: silence before a late start or in a gap, overlaps dropped. */
  #line(slot: number, packets: Timed[]): MuxPacket[] {
    const out: MuxPacket[] = [];
    let next = this.#next[slot]!;
    for (const p of packets) {
      const gap = diff32(p.ts, next);
      if (gap < 0) continue;
      for (let n = Math.floor(gap / OPUS_FRAME_SAMPLES); n > 0; n--) {
        out.push(SILENCE);
        this.paddedFrames++;
      }
      out.push(p);
      next = (p.ts + p.samples) >>> 0;
    }
    this.#next[slot] = next;
    return out;
  }

  #write(buf: Buffer): void {
    const out = this.#out;
    if (!out || out.destroyed || !out.writable) return;
    if (out.writableLength > MAX_UNREAD_BYTES) {
      this.droppedBytes += buf.length;
      return;
    }
    out.write(buf);
  }

  /** Idempotent: stops writing and leaves the relays' timer. */
  close(): void {
    this.#out = null;
    this.#removeHook();
  }
}
