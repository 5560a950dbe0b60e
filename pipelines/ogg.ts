// Ogg framing (RFC 3533) and the Opus headers (RFC 7845): the archive's track writer (archive/oggOpus.ts) and the
// mixer's one-pipe input (mixer/oggMux.ts) both build pages with these.

export const FLAG_CONTINUED = 0x01;
export const FLAG_BOS = 0x02;
export const FLAG_EOS = 0x04;
export const MAX_SEGMENTS = 255;

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let r = i << 24;
    for (let j = 0; j < 8; j++) r = r & 0x80000000 ? (r << 1) ^ 0x04c11db7 : r << 1;
    t[i] = r >>> 0;
  }
  return t;
})();

/** Ogg's CRC-32: polynomial 0x04c11db7, no reflection, initial value 0, no final xor. */
export function oggCrc32(buf: Uint8Array, crc = 0): number {
  for (let i = 0; i < buf.length; i++) crc = ((crc << 8) ^ CRC_TABLE[((crc >>> 24) ^ buf[i]!) & 0xff]!) >>> 0;
  return crc >>> 0;
}

/** One complete Ogg page: header, segment table, body; CRC filled in. granule -1 means "no packet ends here". */
export function buildOggPage(p: { flags: number; granule: number; serial: number; sequence: number; laces: number[]; body: Buffer[] }): Buffer {
  if (p.laces.length > MAX_SEGMENTS) throw new RangeError(`Ogg page with ${p.laces.length} segments`);
  const bodyLen = p.body.reduce((n, b) => n + b.length, 0);
  const headerLen = 27 + p.laces.length;
  const page = Buffer.alloc(headerLen + bodyLen);
  page.write('OggS', 0, 'latin1');
  page[4] = 0; // version
  page[5] = p.flags;
  page.writeBigInt64LE(BigInt(p.granule), 6);
  page.writeUInt32LE(p.serial >>> 0, 14);
  page.writeUInt32LE(p.sequence >>> 0, 18);
  // CRC at 22..25 stays zero while computing.
  page[26] = p.laces.length;
  for (let i = 0; i < p.laces.length; i++) page[27 + i] = p.laces[i]!;
  let off = headerLen;
  for (const b of p.body) off += b.copy(page, off);
  page.writeUInt32LE(oggCrc32(page), 22);
  return page;
}

/** OpusHead (RFC 7845 5.1): channel mapping family 0. */
export function opusHead(channels: number, preSkip: number): Buffer {
  const b = Buffer.alloc(19);
  b.write('OpusHead', 0, 'latin1');
  b[8] = 1; // version
  b[9] = channels;
  b.writeUInt16LE(preSkip, 10);
  b.writeUInt32LE(48000, 12); // input sample rate (informational)
  b.writeInt16LE(0, 16); // output gain
  b[18] = 0; // channel mapping family 0: mono or stereo, no mapping table
  return b;
}

/** OpusTags (RFC 7845 5.2). */
export function opusTags(vendor: string, comments: string[]): Buffer {
  const parts: Buffer[] = [Buffer.from('OpusTags', 'latin1')];
  const u32 = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(n, 0);
    return b;
  };
  const v = Buffer.from(vendor, 'utf8');
  parts.push(u32(v.length), v, u32(comments.length));
  for (const c of comments) {
    const cb = Buffer.from(c, 'utf8');
    parts.push(u32(cb.length), cb);
  }
  return Buffer.concat(parts);
}

/** The lacing values of one packet: 255 for each full 255 bytes, then the rest (0 when it is a multiple of 255). */
export function lacesOf(length: number): number[] {
  const laces: number[] = [];
  for (let n = length; ; n -= 255) {
    if (n >= 255) laces.push(255);
    else {
      laces.push(n);
      return laces;
    }
  }
}
