// Ogg Opus track writer: checked by listening (ffmpeg decodes what we wrote) and by reading the pages back.
import { expect } from 'chai';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { createSocket, type Socket } from 'node:dgram';
import { once } from 'node:events';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { OggOpusWriter, oggCrc32, opusPacketSamples } from '../../pipelines/archive/oggOpus.ts';
import { OPUS_SILENCE, parseRtp } from '../../pipelines/mixer/rtp.ts';
import { SAMPLE_RATE, decodeToPcm, rmsDb, toneDb } from '../support/audio.ts';

// ---------------------------------------------------------------------------------------------------------------
// A tiny, independent Ogg reader: bitwise CRC (no table shared with the writer), pages and reassembled packets.

function crcBitwise(buf: Uint8Array): number {
  let crc = 0;
  for (const byte of buf) {
    crc ^= byte << 24;
    for (let i = 0; i < 8; i++) crc = crc & 0x80000000 ? (crc << 1) ^ 0x04c11db7 : crc << 1;
  }
  return crc >>> 0;
}

interface Page {
  flags: number;
  granule: bigint;
  serial: number;
  sequence: number;
  laces: number[];
  /** The stored CRC matches the page (computed with the CRC field zeroed). */
  crcOk: boolean;
  offset: number;
}

function readOgg(buf: Buffer): { pages: Page[]; packets: Buffer[]; packetEndPage: number[]; trailing: number } {
  const pages: Page[] = [];
  const packets: Buffer[] = [];
  const packetEndPage: number[] = [];
  let partial: Buffer[] = [];
  let off = 0;
  while (off + 27 <= buf.length) {
    expect(buf.toString('latin1', off, off + 4), `capture pattern at ${off}`).to.equal('OggS');
    expect(buf[off + 4], 'version').to.equal(0);
    const nseg = buf[off + 26]!;
    const laces = [...buf.subarray(off + 27, off + 27 + nseg)];
    const bodyLen = laces.reduce((a, b) => a + b, 0);
    const end = off + 27 + nseg + bodyLen;
    if (end > buf.length) break; // torn last page
    const page = Buffer.from(buf.subarray(off, end));
    const stored = page.readUInt32LE(22);
    page.writeUInt32LE(0, 22);
    const p: Page = {
      flags: buf[off + 5]!,
      granule: buf.readBigInt64LE(off + 6),
      serial: buf.readUInt32LE(off + 14),
      sequence: buf.readUInt32LE(off + 18),
      laces,
      crcOk: crcBitwise(page) === stored,
      offset: off,
    };
    pages.push(p);
    if (!(p.flags & 0x01)) expect(partial, `page ${p.sequence} not continued but a packet was open`).to.have.length(0);
    let bodyOff = off + 27 + nseg;
    for (const lace of laces) {
      partial.push(buf.subarray(bodyOff, bodyOff + lace));
      bodyOff += lace;
      if (lace < 255) {
        packets.push(Buffer.concat(partial));
        packetEndPage.push(pages.length - 1);
        partial = [];
      }
    }
    off = end;
  }
  return { pages, packets, packetEndPage, trailing: buf.length - off };
}

function ffprobe(file: string): { streams: Record<string, unknown>[]; format: Record<string, unknown> } {
  const out = execFileSync('ffprobe', ['-v', 'error', '-show_streams', '-show_format', '-of', 'json', file], { encoding: 'utf8' });
  return JSON.parse(out) as { streams: Record<string, unknown>[]; format: Record<string, unknown> };
}

// ---------------------------------------------------------------------------------------------------------------

describe('OggOpusWriter', function () {
  this.timeout(60000);
  let dir: string;
  const children = new Set<ChildProcess>();
  const sockets = new Set<Socket>();
  /** ~3 s of real Opus packets (440 Hz sine at -18 dBFS, mono, 20 ms frames) from ffmpeg over RTP. */
  let packets: Buffer[] = [];

  function track(child: ChildProcess): ChildProcess {
    children.add(child);
    child.once('exit', () => children.delete(child));
    return child;
  }

  before(async function () {
    dir = mkdtempSync(join(tmpdir(), 'ogg-opus-test-'));
    const sock = createSocket('udp4');
    sockets.add(sock);
    const received: { seq: number; payload: Buffer }[] = [];
    sock.on('message', (msg) => {
      const p = parseRtp(msg);
      if (p && p.payloadType === 111) received.push({ seq: p.sequence, payload: Buffer.from(p.payload) });
    });
    sock.bind(0, '127.0.0.1');
    await once(sock, 'listening');
    const port = sock.address().port;
    const ff = track(
      spawn(
        'ffmpeg',
        ['-v', 'error', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000:duration=3', '-ac', '1', '-c:a', 'libopus', '-b:a', '64k',
          '-application', 'lowdelay', '-frame_duration', '20', '-payload_type', '111', '-f', 'rtp', `rtp://127.0.0.1:${port}`],
        { stdio: ['ignore', 'ignore', 'pipe'] },
      ),
    );
    let stderr = '';
    ff.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const [code] = (await once(ff, 'exit')) as [number | null];
    expect(code, stderr).to.equal(0);
    await new Promise((r) => setTimeout(r, 200)); // drain
    sock.close();
    sockets.delete(sock);
    // RTP sequence numbers are random-started and 16-bit: order relative to the first one.
    const first = received[0]!.seq;
    received.sort((a, b) => ((a.seq - first) & 0xffff) - ((b.seq - first) & 0xffff));
    packets = received.map((r) => r.payload);
    const seqs = received.map((r) => (r.seq - first) & 0xffff);
    expect(seqs, 'no RTP packet lost').to.deep.equal(seqs.map((_, i) => i));
    console.log(`      ffmpeg sent ${packets.length} Opus packets, TOC 0x${packets[0]![0]!.toString(16)}, ${packets.reduce((a, p) => a + p.length, 0)} bytes`);
    expect(packets.length).to.be.within(150, 152);
    expect(packets.every((p) => opusPacketSamples(p) === 960)).to.equal(true);
  });

  after(() => {
    for (const c of children) c.kill('SIGKILL');
    for (const s of sockets) s.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('writes a file ffmpeg plays: 2 s silence, 3 s tone, 1 s silence, tone onset on the sample', async () => {
    const file = join(dir, 'track.opus');
    // A 70 kB comment makes OpusTags span two pages (continued flag, granule -1 on the first).
    const w = await OggOpusWriter.open(file, { comments: ['TITLE=Test performer', `DESCRIPTION=${'x'.repeat(70000)}`] });
    w.writeSilence(100);
    expect(w.samples).to.equal(96000);
    for (const p of packets) w.write(p);
    w.writeSilence(50);
    const total = w.samples;
    expect(total).to.equal((150 + packets.length) * 960);
    await w.close();
    await w.close(); // idempotent
    w.write(packets[0]!); // ignored after close
    expect(w.samples).to.equal(total);

    const probe = ffprobe(file);
    const stream = probe.streams[0]!;
    const duration = Number(probe.format.duration);
    console.log(`      ffprobe: codec ${String(stream.codec_name)}, ${String(stream.sample_rate)} Hz, ${String(stream.channels)} ch, duration ${duration.toFixed(3)} s (granule ${total / SAMPLE_RATE} s)`);
    expect(stream.codec_name).to.equal('opus');
    expect(Number(stream.sample_rate)).to.equal(48000);
    expect(duration).to.be.closeTo(6.0, 0.05);
    expect((probe.format.tags as Record<string, string> | undefined)?.TITLE ?? (stream.tags as Record<string, string> | undefined)?.TITLE).to.equal('Test performer');

    // Every page reads back with a valid CRC, in sequence, granules as promised.
    const ogg = readOgg(readFileSync(file));
    expect(ogg.trailing).to.equal(0);
    expect(ogg.pages.every((p) => p.crcOk)).to.equal(true);
    expect(ogg.pages.map((p) => p.sequence)).to.deep.equal(ogg.pages.map((_, i) => i));
    expect(ogg.pages[0]!.flags).to.equal(0x02);
    expect(ogg.pages.at(-1)!.flags & 0x04).to.equal(0x04);
    expect(ogg.pages.at(-1)!.granule).to.equal(BigInt(total));
    expect(ogg.packets).to.have.length(2 + 150 + packets.length);
    expect(ogg.pages.slice(0, 4).map((p) => [p.flags, p.granule])).to.deep.equal([[0x02, 0n], [0x00, -1n], [0x01, 0n], [0x00, 48000n]]);
    const audioPages = ogg.pages.slice(3);
    const maxPageAudio = Math.max(...audioPages.map((p, i) => Number(p.granule - (i === 0 ? 0n : audioPages[i - 1]!.granule))));
    expect(maxPageAudio, 'at most 1 s of audio per page').to.be.at.most(48000);

    const pcm = decodeToPcm(file);
    // Note: the onset measures ~2.02 s, not 2.0025 s (encoder lookahead 120 samples): the first packet of a fresh
    // encoder is not intra-coded (band energies predicted from zero), so a decoder that just played CELT silence
    // frames renders it ~27 dB low and the following frames ramp up: an Opus splice artefact, not the writer.
    const s = (t: number) => Math.round(t * SAMPLE_RATE);
    const lead = toneDb(pcm, 440, s(0.2), s(1.6));
    const tone = toneDb(pcm, 440, s(2.3), s(2.4));
    const tail = toneDb(pcm, 440, s(5.2), s(0.7));
    let onset = -1;
    const win = s(0.01);
    for (let i = 0; i + win <= pcm.length; i += win) {
      if (rmsDb(pcm, i, win) > -40) {
        onset = i / SAMPLE_RATE;
        break;
      }
    }
    console.log(`      decoded ${(pcm.length / SAMPLE_RATE).toFixed(3)} s; 440 Hz: ${lead.toFixed(1)} dB (0.2-1.8 s), ${tone.toFixed(1)} dB (2.3-4.7 s), ${tail.toFixed(1)} dB (5.2-5.9 s); onset ${onset.toFixed(3)} s`);
    expect(pcm.length / SAMPLE_RATE).to.be.closeTo(6.0, 0.05);
    expect(lead).to.be.below(-60);
    expect(tone).to.be.above(-25);
    expect(tail).to.be.below(-60);
    expect(onset).to.be.closeTo(2.0, 0.03);
  });

  it('a file still being written decodes up to the last flush', async () => {
    const file = join(dir, 'live.opus');
    const w = await OggOpusWriter.open(file, { channels: 1 });
    for (const p of packets.slice(0, 150)) w.write(p);
    await w.flush();
    const copy = join(dir, 'live-copy.opus');
    copyFileSync(file, copy);
    const pcm = decodeToPcm(copy);
    const ogg = readOgg(readFileSync(copy));
    console.log(`      unclosed file after flush(): ${ogg.pages.length} pages, decodes to ${(pcm.length / SAMPLE_RATE).toFixed(3)} s`);
    expect(ogg.pages.every((p) => p.crcOk && !(p.flags & 0x04))).to.equal(true);
    expect(pcm.length / SAMPLE_RATE).to.be.at.least(2.9);
    await w.close();
  });

  it('a SIGKILLed writer leaves every automatically flushed second decodable', async () => {
    const packetsFile = join(dir, 'packets.bin');
    writeFileSync(packetsFile, Buffer.concat(packets.slice(0, 150).flatMap((p) => [Buffer.from([p.length >> 8, p.length & 0xff]), p])));
    const file = join(dir, 'killed.opus');
    const script = join(dir, 'writer-child.mts');
    const moduleUrl = pathToFileURL(resolve('pipelines/archive/oggOpus.ts')).href;
    writeFileSync(
      script,
      `import { readFileSync } from 'node:fs';
import { OggOpusWriter } from ${JSON.stringify(moduleUrl)};
const buf = readFileSync(${JSON.stringify(packetsFile)});
const w = await OggOpusWriter.open(${JSON.stringify(file)});
w.writeSilence(25); // 0.5 s
for (let off = 0; off < buf.length; ) { const n = buf.readUInt16BE(off); w.write(buf.subarray(off + 2, off + 2 + n)); off += 2 + n; }
// No flush(), no close(): the pages of whole seconds go out by themselves; the last 0.5 s is still pending.
setTimeout(() => process.stdout.write('ready ' + w.samples + '\\n'), 300);
setInterval(() => {}, 1000);
`,
    );
    const child = track(spawn(process.execPath, ['--import', 'tsx', script], { cwd: process.cwd(), stdio: ['ignore', 'pipe', 'pipe'] }));
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const ready = await new Promise<string>((res, rej) => {
      let out = '';
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('\n')) res(out.trim());
      });
      child.once('exit', (code) => rej(new Error(`child exited ${String(code)}: ${stderr}`)));
    });
    expect(ready).to.equal(`ready ${175 * 960}`);
    const exited = once(child, 'exit');
    child.kill('SIGKILL');
    await exited;

    const ogg = readOgg(readFileSync(file));
    const pcm = decodeToPcm(file);
    const secs = pcm.length / SAMPLE_RATE;
    console.log(`      SIGKILLed after 3.5 s written: ${ogg.pages.length} pages on disk, last granule ${ogg.pages.at(-1)!.granule}, decodes to ${secs.toFixed(3)} s`);
    expect(ogg.pages.every((p) => p.crcOk)).to.equal(true);
    expect(ogg.pages.at(-1)!.granule).to.equal(BigInt(3 * 48000));
    expect(secs).to.be.within(2.9, 3.05);
    expect(toneDb(pcm, 440, Math.round(1.0 * SAMPLE_RATE), Math.round(1.5 * SAMPLE_RATE))).to.be.above(-25);
  });

  for (const maxPageSamples of [48000, 300000]) {
    it(`writeSilence(n) pages exactly like n single silence packets (maxPageSamples ${maxPageSamples})`, async () => {
      const script = async (file: string, silence: (w: OggOpusWriter, n: number) => void) => {
        const w = await OggOpusWriter.open(file, { maxPageSamples });
        silence(w, 7);
        w.write(packets[0]!);
        silence(w, 1203);
        w.write(packets[1]!);
        w.write(packets[2]!);
        silence(w, 3);
        await w.flush();
        silence(w, 600);
        await w.close();
        return readOgg(readFileSync(file));
      };
      const fast = await script(join(dir, `silence-fast-${maxPageSamples}.opus`), (w, n) => w.writeSilence(n));
      const slow = await script(join(dir, `silence-slow-${maxPageSamples}.opus`), (w, n) => {
        for (let i = 0; i < n; i++) w.write(OPUS_SILENCE);
      });
      const shape = (o: ReturnType<typeof readOgg>) => o.pages.map((p) => [p.flags, p.granule, p.sequence, p.laces.join(',')]);
      expect(fast.pages.every((p) => p.crcOk)).to.equal(true);
      expect(shape(fast)).to.deep.equal(shape(slow));
      expect(fast.packets).to.deep.equal(slow.packets);
      expect(fast.pages.at(-1)!.granule).to.equal(BigInt((7 + 1203 + 3 + 600 + 3) * 960));
    });
  }

  it('writeSilence(500 000) is quick, small, and plays for 10 000 s', async () => {
    const file = join(dir, 'long.opus');
    const w = await OggOpusWriter.open(file);
    const t0 = performance.now();
    w.writeSilence(500000);
    const ms = performance.now() - t0;
    await w.close();
    const size = readFileSync(file).length;
    const duration = Number(ffprobe(file).format.duration);
    console.log(`      writeSilence(500000): ${ms.toFixed(0)} ms, ${size} bytes, ffprobe duration ${duration} s`);
    expect(ms).to.be.below(1000);
    expect(size).to.be.below(3e6);
    expect(duration).to.equal(10000);
  });

  it('laces 255- and 510-byte packets with a terminating 0 and spans a huge packet over pages', async () => {
    const file = join(dir, 'lacing.opus');
    const w = await OggOpusWriter.open(file, { maxPageSamples: 10 * 48000 });
    const fill = (n: number, v: number) => Buffer.alloc(n, v);
    const big = Buffer.alloc(300 * 255 + 7);
    for (let i = 0; i < big.length; i++) big[i] = i & 0xff;
    const written = [fill(255, 1), fill(510, 2), fill(254, 3), fill(0, 4), fill(256, 5), big, fill(3, 6)];
    for (const p of written) w.write(p, 960);
    // Many small packets: more than 255 lacing values must go onto several pages.
    for (let i = 0; i < 300; i++) w.write(Buffer.from([0xf8, i & 0xff, 0xfe]), 960);
    await w.close();

    const ogg = readOgg(readFileSync(file));
    expect(ogg.trailing).to.equal(0);
    expect(ogg.pages.every((p) => p.crcOk), 'every CRC').to.equal(true);
    expect(new Set(ogg.pages.map((p) => p.serial)).size).to.equal(1);
    expect(ogg.pages.every((p) => p.laces.length <= 255)).to.equal(true);
    const audio = ogg.packets.slice(2);
    expect(audio.map((p) => p.length)).to.deep.equal([...written.map((p) => p.length), ...Array<number>(300).fill(3)]);
    expect(audio.slice(0, written.length).every((p, i) => p.equals(written[i]!))).to.equal(true);
    // The 255- and 510-byte packets: 255 then 0; 255, 255 then 0.
    const audioPage = ogg.pages[2]!;
    expect(audioPage.laces.slice(0, 5)).to.deep.equal([255, 0, 255, 255, 0]);
    // The big packet spans pages: the next page has the continued flag and a granule where the packet ends.
    const bigIdx = 2 + 5;
    const bigEnd = ogg.packetEndPage[bigIdx]!;
    const cont = ogg.pages.filter((p) => p.flags & 0x01);
    expect(cont.length).to.be.at.least(1);
    expect(ogg.pages[bigEnd]!.flags & 0x01).to.equal(0x01);
    // Granule of each page = samples at the last packet ending on it; -1 where none ends.
    ogg.pages.slice(2).forEach((p, k) => {
      const i = k + 2;
      const ending = ogg.packetEndPage.map((pg, idx) => (pg === i ? idx : -1)).filter((idx) => idx >= 2);
      const expected = ending.length ? BigInt((ending.at(-1)! - 1) * 960) : p.flags & 0x04 && p.laces.length === 0 ? p.granule : -1n;
      expect(p.granule, `page ${i}`).to.equal(expected);
    });
    expect(ogg.pages.at(-1)!.granule).to.equal(BigInt((written.length + 300) * 960));
    console.log(`      lacing file: ${ogg.pages.length} pages, ${cont.length} continued, segments per page ${ogg.pages.map((p) => p.laces.length).join(',')}`);
  });

  for (const preSkip of [0, 312]) {
    it(`an empty track (pre-skip ${preSkip}) is a file ffmpeg accepts and plays as 0 samples`, async () => {
      const file = join(dir, `empty-${preSkip}.opus`);
      const w = await OggOpusWriter.open(file, { channels: 1, preSkip, vendor: 'v' });
      await w.close();
      expect(w.samples).to.equal(0);
      const buf = readFileSync(file);
      const ogg = readOgg(buf);
      expect(ogg.trailing).to.equal(0);
      expect(ogg.pages.every((p) => p.crcOk)).to.equal(true);
      expect(ogg.pages.map((p) => p.flags)).to.deep.equal([0x02, 0x00, 0x04]);
      // One silence frame, end-trimmed away by the last granule (= pre-skip: nothing left to play).
      expect(ogg.pages.map((p) => p.granule)).to.deep.equal([0n, 0n, BigInt(preSkip)]);
      expect(ogg.packets.slice(2)).to.deep.equal([OPUS_SILENCE]);
      const head = ogg.packets[0]!;
      expect(head.toString('latin1', 0, 8)).to.equal('OpusHead');
      expect([head[8], head[9], head.readUInt16LE(10), head.readUInt32LE(12), head.readInt16LE(16), head[18]]).to.deep.equal([1, 1, preSkip, 48000, 0, 0]);
      expect(head.length).to.equal(19);
      const tags = ogg.packets[1]!;
      expect(tags.toString('latin1', 0, 8)).to.equal('OpusTags');
      expect(tags.readUInt32LE(8)).to.equal(1);
      expect(tags.toString('latin1', 12, 13)).to.equal('v');
      expect(tags.readUInt32LE(13)).to.equal(0);
      expect(tags.length).to.equal(17);
      const probe = ffprobe(file);
      const pcm = decodeToPcm(file);
      console.log(`      empty track: ${buf.length} bytes; ffprobe codec ${String(probe.streams[0]?.codec_name)}, duration ${String(probe.format.duration)}; decodes to ${pcm.length} samples`);
      expect(probe.streams[0]?.codec_name).to.equal('opus');
      expect(pcm.length).to.equal(0);
    });
  }
});

describe('Ogg/Opus helpers', () => {
  it('oggCrc32 is CRC-32 with poly 0x04c11db7, init 0, no reflection, no xor', () => {
    // CRC-32/CKSUM has the same parameters but xors the result with 0xffffffff; its check value is 0x765e7680.
    expect(oggCrc32(Buffer.from('123456789'))).to.equal((0x765e7680 ^ 0xffffffff) >>> 0);
    expect(oggCrc32(Buffer.alloc(0))).to.equal(0);
    const random = Buffer.from(Array.from({ length: 1000 }, (_, i) => (i * 7919) & 0xff));
    expect(oggCrc32(random)).to.equal(crcBitwise(random));
  });

  it('opusPacketSamples reads the TOC config and frame count code (RFC 6716 §3.1)', () => {
    const t = (...bytes: number[]) => opusPacketSamples(Buffer.from(bytes));
    expect(opusPacketSamples(OPUS_SILENCE)).to.equal(960); // 0xf8: config 31 CELT FB 20 ms, code 0
    expect(t(0xe0, 0)).to.equal(120); // config 28: CELT FB 2.5 ms
    expect(t(0xe8, 0)).to.equal(240); // config 29: CELT FB 5 ms
    expect(t(0xf0, 0)).to.equal(480); // config 30: CELT FB 10 ms
    expect(t(0x80, 0)).to.equal(120); // config 16: CELT NB 2.5 ms
    expect(t(0x00, 0)).to.equal(480); // config 0: SILK NB 10 ms
    expect(t(0x08, 0)).to.equal(960); // config 1: SILK NB 20 ms
    expect(t(0x10, 0)).to.equal(1920); // config 2: SILK NB 40 ms
    expect(t(0x18, 0)).to.equal(2880); // config 3: SILK NB 60 ms
    expect(t(0x58, 0)).to.equal(2880); // config 11: SILK WB 60 ms
    expect(t(0x60, 0)).to.equal(480); // config 12: Hybrid SWB 10 ms
    expect(t(0x78, 0)).to.equal(960); // config 15: Hybrid FB 20 ms
    expect(t(0xfc, 0)).to.equal(960); // stereo bit doesn't matter
    expect(t(0xf8)).to.equal(960); // TOC only (DTX / lost frame): still one frame
    expect(t(0xf9, 1, 2)).to.equal(1920); // code 1: two equal frames
    expect(t(0xf9, 1)).to.equal(0); // code 1 with an odd payload: malformed
    expect(t(0xfa, 1, 7)).to.equal(1920); // code 2: two frames
    expect(t(0xfb, 0x03, 0, 0, 0)).to.equal(2880); // code 3: 3 frames of 20 ms
    expect(t(0xfb, 0x86, 0)).to.equal(5760); // code 3, VBR+padding bits set, 6 frames = 120 ms
    expect(t(0xe3, 0x30)).to.equal(5760); // code 3: 48 frames of 2.5 ms
    expect(t(0xfb, 0x07)).to.equal(0); // 140 ms > 120 ms: malformed
    expect(t(0xfb, 0x00)).to.equal(0); // zero frames: malformed
    expect(t(0xfb)).to.equal(0); // code 3 without its count byte
    expect(t(0x1b, 0x02)).to.equal(5760); // code 3: 2 x 60 ms SILK
    expect(opusPacketSamples(Buffer.alloc(0))).to.equal(0);
  });
});
