// One physical Ogg stream carrying every mix slot as its own logical Opus stream: the groundwork of feeding FFmpeg
// one pipe instead of one RTP socket per slot (docs/decisions.md, "Cost per stage"). Pure framing, no I/O: header()
// starts a run (every stream's OpusHead page, then every OpusTags page, before any audio: FFmpeg's Ogg demuxer ends
// the headers at the first audio page), tick() turns one tick's packets into one buffer for one write. Each slot's
// granule position is the end of its line in 48 kHz samples, so a slot kept continuous by its silence frames stays a
// continuous track. Not wired into the mixer yet.
import crypto from 'node:crypto';
import { FLAG_BOS, MAX_SEGMENTS, buildOggPage, lacesOf, opusHead, opusTags } from '../ogg.ts';

export interface MuxPacket {
  payload: Buffer;
  /** Its duration in 48 kHz samples (opusPacketSamples). */
  samples: number;
}

interface Stream {
  serial: number;
  sequence: number;
  granule: number;
}

export class OggMux {
  readonly slots: number;
  readonly #channels: 1 | 2;
  #streams: Stream[] = [];

  constructor(slots: number, opts: { channels?: 1 | 2 } = {}) {
    if (!Number.isInteger(slots) || slots < 1) throw new RangeError(`slots must be a positive integer, not ${slots}`);
    this.slots = slots;
    this.#channels = opts.channels ?? 2;
  }

  /** The start of a run (a new FFmpeg): new serials, every granule back to 0. */
  header(): Buffer {
    const base = crypto.randomBytes(4).readUInt32LE(0);
    this.#streams = Array.from({ length: this.slots }, (_, i) => ({ serial: (base + i) >>> 0, sequence: 0, granule: 0 }));
    const head = opusHead(this.#channels, 0);
    const tags = opusTags('stage-radio', []);
    return Buffer.concat([
      ...this.#streams.map((s) => buildOggPage({ flags: FLAG_BOS, granule: 0, serial: s.serial, sequence: s.sequence++, laces: lacesOf(head.length), body: [head] })),
      ...this.#streams.map((s) => buildOggPage({ flags: 0, granule: 0, serial: s.serial, sequence: s.sequence++, laces: lacesOf(tags.length), body: [tags] })),
    ]);
  }

  /** One tick: for each slot with packets, its page(s); one buffer to write. */
  tick(perSlot: readonly (readonly MuxPacket[])[]): Buffer {
    if (this.#streams.length === 0) throw new Error('header() first: no run started');
    const pages: Buffer[] = [];
    perSlot.forEach((packets, slot) => {
      const s = this.#streams[slot];
      if (!s) throw new RangeError(`no slot ${slot}`);
      let laces: number[] = [];
      let body: Buffer[] = [];
      const flush = () => {
        if (body.length === 0) return;
        pages.push(buildOggPage({ flags: 0, granule: s.granule, serial: s.serial, sequence: s.sequence++, laces, body }));
        laces = [];
        body = [];
      };
      for (const p of packets) {
        const l = lacesOf(p.payload.length);
        // An Opus packet is at most 120 ms of 1275-byte frames (31 lacing values): one page always holds one.
        if (l.length > MAX_SEGMENTS) throw new RangeError(`a ${p.payload.length}-byte packet is not an Opus packet`);
        if (laces.length + l.length > MAX_SEGMENTS) flush();
        laces.push(...l);
        body.push(p.payload);
        s.granule += p.samples;
      }
      flush();
    });
    return Buffer.concat(pages);
  }
}
