// Reads an Ogg stream back for tests: each logical stream's packets, in order of their first page, with each page's
// header flags seen.
export function readOggStreams(buf: Buffer): { streams: Buffer[][]; bosPages: number } {
  const bySerial = new Map<number, Buffer[]>();
  let bosPages = 0;
  let cur: Buffer[] = [];
  for (let off = 0; off < buf.length; ) {
    if (buf.toString('latin1', off, off + 4) !== 'OggS') throw new Error(`no Ogg page at ${off}`);
    const serial = buf.readUInt32LE(off + 14);
    if (buf[off + 5]! & 0x02) bosPages++;
    const n = buf[off + 26]!;
    let p = off + 27 + n;
    const list = bySerial.get(serial) ?? [];
    bySerial.set(serial, list);
    for (let i = 0; i < n; i++) {
      const l = buf[off + 27 + i]!;
      cur.push(buf.subarray(p, p + l));
      p += l;
      if (l < 255) {
        list.push(Buffer.concat(cur));
        cur = [];
      }
    }
    off = p;
  }
  return { streams: [...bySerial.values()], bosPages };
}
