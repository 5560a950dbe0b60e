// Just enough ISO BMFF (MP4) to cut FFmpeg's fragmented MP4 output into LL-HLS parts: top-level boxes read from a
// byte stream as they complete, and a fragment's timing (tfdt, and the duration of its samples from trun/tfhd).
// Pure functions and a small incremental reader; no I/O.

export interface Box {
  /** Four-character type: 'ftyp', 'moov', 'moof', 'mdat', ... */
  type: string;
  /** The whole box, header included. */
  bytes: Buffer;
}

/**
 * Splits a byte stream into complete top-level boxes. Bytes may arrive cut anywhere; push() returns the boxes that
 * are complete so far, in order. A box declaring an impossible size ends the stream with an error.
 */
export class BoxReader {
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  #failed: string | null = null;

  /** A box larger than this is not FFmpeg's: the stream is broken. */
  static readonly MAX_BOX_BYTES = 64 * 1024 * 1024;

  get failed(): string | null {
    return this.#failed;
  }

  push(chunk: Buffer): Box[] {
    if (this.#failed) return [];
    this.#pending.push(chunk);
    this.#pendingBytes += chunk.length;
    const out: Box[] = [];
    let buf = this.#pending.length === 1 ? this.#pending[0]! : Buffer.concat(this.#pending, this.#pendingBytes);
    let at = 0;
    while (buf.length - at >= 8) {
      let size = buf.readUInt32BE(at);
      let header = 8;
      if (size === 1) {
        if (buf.length - at < 16) break;
        const big = buf.readBigUInt64BE(at + 8);
        if (big > BigInt(BoxReader.MAX_BOX_BYTES)) {
          this.#failed = `a box of ${big} bytes`;
          break;
        }
        size = Number(big);
        header = 16;
      }
      if (size < header || size > BoxReader.MAX_BOX_BYTES) {
        this.#failed = `a box of ${size} bytes`;
        break;
      }
      if (buf.length - at < size) break;
      out.push({ type: buf.toString('latin1', at + 4, at + 8), bytes: buf.subarray(at, at + size) });
      at += size;
    }
    const rest = buf.subarray(at);
    this.#pending = rest.length > 0 ? [rest] : [];
    this.#pendingBytes = rest.length;
    return out;
  }

  /** Bytes received that do not make a whole box yet. */
  get buffered(): number {
    return this.#pendingBytes;
  }
}

/** The child boxes of a container box's payload, as [type, payload start, box end] within `box`. */
function* children(box: Buffer, from: number, to: number): Generator<{ type: string; start: number; end: number }> {
  let at = from;
  while (to - at >= 8) {
    const size = box.readUInt32BE(at);
    if (size < 8 || at + size > to) return;
    yield { type: box.toString('latin1', at + 4, at + 8), start: at + 8, end: at + size };
    at += size;
  }
}

function find(box: Buffer, from: number, to: number, path: readonly string[]): { start: number; end: number } | null {
  let range = { start: from, end: to };
  for (const type of path) {
    let next: { start: number; end: number } | null = null;
    for (const c of children(box, range.start, range.end)) {
      if (c.type === type) {
        next = { start: c.start, end: c.end };
        break;
      }
    }
    if (!next) return null;
    range = next;
  }
  return range;
}

/** The audio track's timescale (samples per second) from the init segment's moov (mdhd), or null. */
export function timescaleOf(moov: Buffer): number | null {
  const mdhd = find(moov, 8, moov.length, ['trak', 'mdia', 'mdhd']);
  if (!mdhd) return null;
  const version = moov[mdhd.start]!;
  return moov.readUInt32BE(mdhd.start + (version === 1 ? 20 : 12));
}

/** The default sample duration of the init segment's track (mvex/trex), or null. */
export function trexDefaultDuration(moov: Buffer): number | null {
  const trex = find(moov, 8, moov.length, ['mvex', 'trex']);
  return trex ? moov.readUInt32BE(trex.start + 12) : null;
}

export interface FragmentTiming {
  /** tfdt: decode time of the fragment's first sample, in the track's timescale (signed: AAC priming may be < 0). */
  baseMediaDecodeTime: number;
  sampleCount: number;
  /** The fragment's samples' total duration, in the timescale. */
  duration: number;
}

/** A moof's timing (its single track fragment), or null when it is not one FFmpeg would write. */
export function fragmentTiming(moof: Buffer, defaultDuration: number | null): FragmentTiming | null {
  const traf = find(moof, 8, moof.length, ['traf']);
  if (!traf) return null;
  let base: number | null = null;
  let tfhdDuration: number | null = null;
  let count = 0;
  let duration = 0;
  for (const c of children(moof, traf.start, traf.end)) {
    const flags = moof.readUInt32BE(c.start) & 0xffffff;
    if (c.type === 'tfdt') {
      const version = moof[c.start]!;
      base = version === 1 ? Number(moof.readBigInt64BE(c.start + 4)) : moof.readUInt32BE(c.start + 4);
    } else if (c.type === 'tfhd') {
      let at = c.start + 8; // version/flags, track_ID
      if (flags & 0x01) at += 8; // base-data-offset
      if (flags & 0x02) at += 4; // sample-description-index
      if (flags & 0x08) tfhdDuration = moof.readUInt32BE(at);
    } else if (c.type === 'trun') {
      const n = moof.readUInt32BE(c.start + 4);
      let at = c.start + 8;
      if (flags & 0x01) at += 4; // data-offset
      if (flags & 0x04) at += 4; // first-sample-flags
      const per = [0x100, 0x200, 0x400, 0x800].filter((f) => flags & f).length * 4;
      const perSampleDuration = (flags & 0x100) !== 0;
      const fallback = tfhdDuration ?? defaultDuration;
      for (let i = 0; i < n; i++) {
        if (perSampleDuration) duration += moof.readUInt32BE(at + i * per);
        else if (fallback !== null) duration += fallback;
        else return null;
      }
      count += n;
    }
  }
  if (base === null || count === 0) return null;
  return { baseMediaDecodeTime: base, sampleCount: count, duration };
}
