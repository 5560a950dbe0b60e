// Ogg Opus (RFC 7845 over RFC 3533) file writer, fed raw Opus packets (RTP payloads).
// Crash-tolerant: a page is written out at least every maxPageSamples of audio (default 1 s), so a killed process
// leaves a file that decoders read up to the last page written (only the EOS flag is missing).
import { randomBytes } from 'node:crypto';
import { open as openFile, type FileHandle } from 'node:fs/promises';
import { OPUS_SILENCE, opusPacketSamples } from '../mixer/rtp.ts';
import { FLAG_BOS, FLAG_CONTINUED, FLAG_EOS, MAX_SEGMENTS, buildOggPage, oggCrc32, opusHead, opusTags } from '../ogg.ts';

/** Duration of OPUS_SILENCE (one 20 ms frame). */
const SILENCE_SAMPLES = 960;

export interface OggOpusWriterOptions {
  /** OpusHead channel count; default 2. */
  channels?: 1 | 2;
  /** OpusHead pre-skip in 48 kHz samples; default 0 (packets come from a live stream, not a fresh encoder). */
  preSkip?: number;
  /** Vendor string in OpusTags; default 'stage-radio'. */
  vendor?: string;
  /** Extra comments "KEY=value" in OpusTags. */
  comments?: string[];
  /** Max audio per page in 48 kHz samples before a page is flushed; default 48000 (1 s). */
  maxPageSamples?: number;
}

// Ogg framing and the Opus headers: pipelines/ogg.ts (shared with the mixer's input).
export { buildOggPage, oggCrc32 } from '../ogg.ts';

// ---------------------------------------------------------------------------------------------------------------
// Opus packets

export { opusPacketSamples } from '../mixer/rtp.ts';

// ---------------------------------------------------------------------------------------------------------------
// The writer

export class OggOpusWriter {
  readonly path: string;
  readonly #fh: FileHandle;
  readonly #serial: number;
  readonly #maxPageSamples: number;
  readonly #preSkip: number;
  #sequence = 0;
  /** Any audio packet appended (after the headers). */
  #wroteAudio = false;
  #position = 0;
  #samples = 0;

  // The page being filled.
  #laces: number[] = [];
  #body: Buffer[] = [];
  /** Granule of the last packet ending on the pending page; -1 if none does yet. */
  #pageGranule = -1;
  #pageSamples = 0;
  /** The pending page starts with the rest of a packet begun on the previous page. */
  #pageContinued = false;
  /** No page written yet (the next one gets BOS). */
  #first = true;

  // Pages ready for disk, written in order by one chain of writes (coalesced: one write per turn of the chain).
  #queue: Buffer[] = [];
  #scheduled = false;
  #chain: Promise<void> = Promise.resolve();
  #error: Error | null = null;
  #closed = false;
  #closing: Promise<void> | null = null;

  private constructor(path: string, fh: FileHandle, maxPageSamples: number, preSkip: number) {
    this.path = path;
    this.#preSkip = preSkip;
    this.#fh = fh;
    this.#serial = randomBytes(4).readUInt32LE(0);
    this.#maxPageSamples = maxPageSamples;
  }

  /** Creates (or truncates) the file and writes the OpusHead and OpusTags pages. */
  static async open(filePath: string, opts: OggOpusWriterOptions = {}): Promise<OggOpusWriter> {
    const channels = opts.channels ?? 2;
    const preSkip = opts.preSkip ?? 0;
    const maxPageSamples = opts.maxPageSamples ?? 48000;
    if (channels !== 1 && channels !== 2) throw new RangeError(`channels must be 1 or 2, got ${String(channels)}`);
    if (!Number.isInteger(preSkip) || preSkip < 0 || preSkip > 0xffff) throw new RangeError(`bad preSkip ${preSkip}`);
    if (!(maxPageSamples > 0)) throw new RangeError(`bad maxPageSamples ${maxPageSamples}`);
    const fh = await openFile(filePath, 'w');
    const w = new OggOpusWriter(filePath, fh, maxPageSamples, preSkip);
    // Each header packet on its own page(s), granule 0 (RFC 7845 §3).
    w.#appendPacket(opusHead(channels, preSkip), 0);
    w.#flushPage(0);
    w.#appendPacket(opusTags(opts.vendor ?? 'stage-radio', opts.comments ?? []), 0);
    w.#flushPage(0);
    try {
      await w.flush();
    } catch (err) {
      await fh.close().catch(() => {});
      throw err;
    }
    return w;
  }

  /** Total samples written so far (the granule position of the last packet). */
  get samples(): number {
    return this.#samples;
  }

  /** Appends one Opus packet lasting `samples` 48 kHz samples (default: from its TOC byte). Ignored after close(). */
  write(packet: Buffer, samples: number = opusPacketSamples(packet)): void {
    if (this.#closed) return;
    this.#wroteAudio = true;
    this.#samples += samples;
    this.#appendPacket(packet, this.#samples); // may flush the previous page first
    this.#pageSamples += samples;
    if (this.#pageSamples >= this.#maxPageSamples) this.#flushPage(0);
  }

  /**
   * Appends `frames` 20 ms silence packets (OPUS_SILENCE). Whole pages of silence are stamped from one template
   * (~230 bytes per second of silence), so even 500 000 frames (2.8 h) take a few ms and ~2.3 MB, in one write.
   */
  writeSilence(frames: number): void {
    if (this.#closed || !(frames > 0)) return;
    this.#wroteAudio = true;
    let left = Math.floor(frames);
    const one = () => {
      this.#samples += SILENCE_SAMPLES;
      this.#appendPacket(OPUS_SILENCE, this.#samples);
      this.#pageSamples += SILENCE_SAMPLES;
      if (this.#pageSamples >= this.#maxPageSamples) this.#flushPage(0);
      left--;
    };
    // Top up the page in progress, packet by packet. A page full of segments would be flushed by the next packet.
    while (left > 0 && this.#laces.length > 0 && this.#laces.length < MAX_SEGMENTS) one();
    if (left > 0 && this.#laces.length >= MAX_SEGMENTS) this.#flushPage(0);
    // Then whole pages: exactly what the loop above would produce, page after page.
    const perPage = Math.min(MAX_SEGMENTS, Math.ceil(this.#maxPageSamples / SILENCE_SAMPLES));
    if (left >= perPage) {
      const template = buildOggPage({
        flags: 0,
        granule: 0,
        serial: this.#serial,
        sequence: 0,
        laces: new Array<number>(perPage).fill(OPUS_SILENCE.length),
        body: new Array<Buffer>(perPage).fill(OPUS_SILENCE),
      });
      const count = Math.floor(left / perPage);
      const out = Buffer.allocUnsafe(template.length * count);
      for (let k = 0; k < count; k++) {
        const page = out.subarray(k * template.length, (k + 1) * template.length);
        template.copy(page);
        this.#samples += perPage * SILENCE_SAMPLES;
        page.writeBigInt64LE(BigInt(this.#samples), 6);
        page.writeUInt32LE(this.#sequence++ >>> 0, 18);
        page.writeUInt32LE(0, 22);
        page.writeUInt32LE(oggCrc32(page), 22);
      }
      left -= count * perPage;
      this.#queue.push(out);
      this.#schedule();
    }
    while (left > 0) one();
  }

  /** Writes the pending page (if any) and waits until everything so far is on disk (in the OS's hands). */
  async flush(): Promise<void> {
    if (!this.#closed) this.#flushPage(0);
    this.#schedule();
    await this.#chain;
    if (this.#error) throw this.#error;
  }

  /** Writes the last page with the EOS flag and closes the file. Idempotent. */
  close(): Promise<void> {
    if (this.#closing) return this.#closing;
    this.#closed = true;
    this.#closing = (async () => {
      if (!this.#wroteAudio) {
        // An empty track. A stream without a single audio packet is valid Ogg, but ffmpeg refuses it ("End of
        // file"), so: silence packets covering the pre-skip, on an EOS page whose granule (= pre-skip) end-trims
        // them all away (RFC 7845 §4.5): decoders see an Opus stream that plays 0 samples. `samples` stays 0.
        const frames = Math.max(1, Math.ceil(this.#preSkip / SILENCE_SAMPLES));
        for (let i = 0; i < frames; i++) this.#appendPacket(OPUS_SILENCE, this.#preSkip);
        this.#flushPage(FLAG_EOS);
      } else if (this.#laces.length > 0) {
        this.#flushPage(FLAG_EOS);
      } else {
        // Everything is already on disk: an empty EOS page carrying the last granule.
        this.#queuePage(FLAG_EOS, this.#samples, [], []);
      }
      this.#schedule();
      await this.#chain;
      await this.#fh.close().catch((err: unknown) => {
        this.#error ??= err instanceof Error ? err : new Error(String(err));
      });
      if (this.#error) throw this.#error;
    })();
    return this.#closing;
  }

  /** Adds a packet to the pending page, spilling onto new pages (continued flag) if it doesn't fit in one. */
  #appendPacket(packet: Buffer, granuleAtEnd: number): void {
    const lacesNeeded = Math.floor(packet.length / 255) + 1;
    // Start packets on a fresh page rather than splitting them, unless a page could never hold them.
    if (this.#laces.length > 0 && this.#laces.length + lacesNeeded > MAX_SEGMENTS) this.#flushPage(0);
    let offset = 0;
    for (;;) {
      const remaining = packet.length - offset;
      const need = Math.floor(remaining / 255) + 1;
      const room = MAX_SEGMENTS - this.#laces.length;
      if (need <= room) {
        for (let i = 0; i < need - 1; i++) this.#laces.push(255);
        this.#laces.push(remaining % 255); // 0 when the packet is a multiple of 255 bytes: it terminates the packet
        this.#body.push(packet.subarray(offset));
        this.#pageGranule = granuleAtEnd;
        return;
      }
      // Fill this page with 255-byte segments; the packet continues on the next page.
      for (let i = 0; i < room; i++) this.#laces.push(255);
      this.#body.push(packet.subarray(offset, offset + room * 255));
      offset += room * 255;
      this.#flushPage(0);
      this.#pageContinued = true;
    }
  }

  /** Turns the pending page (if it has any segment) into bytes queued for disk. */
  #flushPage(extraFlags: number): void {
    if (this.#laces.length === 0) return;
    const flags = extraFlags | (this.#pageContinued ? FLAG_CONTINUED : 0);
    this.#queuePage(flags, this.#pageGranule, this.#laces, this.#body);
    this.#laces = [];
    this.#body = [];
    this.#pageGranule = -1;
    this.#pageSamples = 0;
    this.#pageContinued = false;
    this.#schedule();
  }

  #queuePage(flags: number, granule: number, laces: number[], body: Buffer[]): void {
    if (this.#first) flags |= FLAG_BOS;
    this.#first = false;
    this.#queue.push(buildOggPage({ flags, granule, serial: this.#serial, sequence: this.#sequence++, laces, body }));
  }

  /** Makes sure the write chain will pick up what is queued. */
  #schedule(): void {
    if (this.#scheduled || this.#queue.length === 0) return;
    this.#scheduled = true;
    this.#chain = this.#chain
      .then(() => this.#writeQueued())
      .catch((err: unknown) => {
        this.#error ??= err instanceof Error ? err : new Error(String(err));
      });
  }

  async #writeQueued(): Promise<void> {
    this.#scheduled = false;
    const pages = this.#queue;
    this.#queue = [];
    if (this.#error || pages.length === 0) return;
    const buf = pages.length === 1 ? pages[0]! : Buffer.concat(pages);
    let done = 0;
    while (done < buf.length) {
      const { bytesWritten } = await this.#fh.write(buf, done, buf.length - done, this.#position);
      done += bytesWritten;
      this.#position += bytesWritten;
    }
  }
}
