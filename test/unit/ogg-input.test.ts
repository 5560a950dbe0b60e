// The mixer's one pipe (OggMixInput) across FFmpeg runs: what it writes, read back page by page. Every slot of a run
// starts at the same instant (amix lines its inputs up by order, not by timestamp), a slot that starts later or skips
// is padded with silence, what comes while no FFmpeg reads is held (the newest 500 per slot) and begins the next run,
// and an FFmpeg that stops reading costs bounded memory.
import { PassThrough, Writable } from 'node:stream';
import { expect } from 'chai';
import { OggMixInput } from '../../pipelines/mixer/oggInput.ts';
import { OPUS_SILENCE, buildRtp } from '../../pipelines/mixer/rtp.ts';
import { readOggStreams } from '../support/ogg.ts';

/** A 20 ms Opus packet (TOC 0xF8) whose last two bytes say which it is; not silence (FF FE). */
const marked = (n: number) => Buffer.from([0xf8, 0x01, n & 0xff]);
const rtp = (ts: number, payload: Buffer) => buildRtp({ payloadType: 100, sequence: 0, timestamp: ts, ssrc: 1, payload });

/** Per slot (in BOS order), its packets after the two header packets; and how many streams began. */
function readOgg(buf: Buffer): { slots: Buffer[][]; heads: number } {
  const { streams, bosPages } = readOggStreams(buf);
  return { slots: streams.map((l) => l.slice(2)), heads: bosPages };
}

const label = (p: Buffer) => (p.equals(OPUS_SILENCE) ? 's' : String(p[2]));

class Sink extends Writable {
  chunks: Buffer[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.chunks.push(chunk);
    cb();
  }
  get all(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

describe('unit: OggMixInput (the one pipe across FFmpeg runs)', () => {
  let input: OggMixInput;
  afterEach(() => input?.close());

  it('starts a run with every slot at the earliest held packet: a slot that starts later is padded with silence up to its first packet', () => {
    input = new OggMixInput(3);
    input.take(0, [rtp(9600, marked(1)), rtp(10560, marked(2))]);
    input.take(1, [rtp(11520, marked(3))]);
    const out = new Sink();
    expect(input.begin(out)).to.equal(9600);
    const { slots, heads } = readOgg(out.all);
    expect(heads, 'a BOS page per slot').to.equal(3);
    expect(slots.map((s) => s.map(label))).to.deep.equal([['1', '2'], ['s', 's', '3'], []]);
    expect(input.paddedFrames).to.equal(2);
  });

  it('places a slot whose first packet comes after the run began on the run\'s line, and fills a gap in a slot with silence', () => {
    input = new OggMixInput(2);
    const out = new Sink();
    expect(input.begin(out), 'nothing held').to.equal(null);
    input.take(0, [rtp(0, marked(1))]);
    input.flush();
    input.take(0, [rtp(960, marked(2))]);
    input.take(1, [rtp(1920, marked(3))]);
    input.flush();
    // Slot 0 skips 60 ms (three frames); a packet that overlaps what was sent is dropped.
    input.take(0, [rtp(4800, marked(4)), rtp(4800, marked(5))]);
    input.flush();
    const { slots } = readOgg(out.all);
    expect(slots.map((s) => s.map(label))).to.deep.equal([['1', '2', 's', 's', 's', '4'], ['s', 's', '3']]);
  });

  it('holds what comes while no FFmpeg reads, the newest 500 packets per slot, and begins the next run with it', () => {
    input = new OggMixInput(2);
    const first = new Sink();
    input.begin(first);
    input.take(0, [rtp(0, marked(1))]);
    input.take(1, [rtp(0, marked(2))]);
    input.flush();
    input.end();
    for (let i = 1; i <= 600; i++) {
      input.take(0, [rtp(i * 960, marked(i))]);
      input.take(1, [rtp(i * 960, marked(i))]);
    }
    input.flush();
    expect(readOgg(first.all).slots.map((s) => s.length), 'nothing written between runs').to.deep.equal([1, 1]);
    const second = new Sink();
    expect(input.begin(second), 'the earliest held packet: the 101st after the run ended').to.equal(101 * 960);
    const { slots, heads } = readOgg(second.all);
    expect(heads, 'a new stream: headers again').to.equal(2);
    expect(slots.map((s) => s.length)).to.deep.equal([500, 500]);
    expect(slots[0]![0]![2]).to.equal(101);
    expect(slots[1]!.at(-1)![2]).to.equal(600 & 0xff);
  });

  it('writes nothing more while FFmpeg leaves over 1 MiB unread, and counts what it dropped', () => {
    input = new OggMixInput(1);
    const stuck = new PassThrough({ highWaterMark: 16 });
    input.begin(stuck);
    const big = Buffer.alloc(1200, 0x55);
    big[0] = 0xf8;
    let ts = 0;
    for (let i = 0; i < 1500; i++) {
      input.take(0, [rtp(ts, big)]);
      ts += 960;
      input.flush();
    }
    expect(stuck.writableLength, 'bytes left unread').to.be.within(1 << 20, (1 << 20) + 2000);
    expect(input.droppedBytes).to.be.greaterThan(500_000);
    stuck.destroy();
  });
});
