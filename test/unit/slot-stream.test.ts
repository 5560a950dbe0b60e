// The mixer slot's timing core: one continuous RTP line out, silence paced by the wall clock.
import { expect } from 'chai';
import { OPUS_SILENCE, SlotStream, buildRtp, parseRtp, type RtpPacket } from '../../pipelines/mixer/rtp.ts';

const pkt = (ssrc: number, sequence: number, timestamp: number, payload = Buffer.from([0xfc, 1, 2, 3])): RtpPacket =>
  parseRtp(buildRtp({ payloadType: 111, sequence, timestamp, ssrc, payload }))!;

describe('SlotStream', () => {
  it('fills silence by the wall clock, catching up on late ticks (no drift)', () => {
    const s = new SlotStream({ ssrc: 7, payloadType: 100, startMs: 0 });
    // A tick 1 s late still produces every frame that is due: 50 frames of 20 ms.
    const out = s.due(1000).map((b) => parseRtp(b)!);
    expect(out).to.have.length(51);
    expect(out.map((p) => p.timestamp)).to.deep.equal(Array.from({ length: 51 }, (_, i) => i * 960));
    expect(out.map((p) => p.sequence)).to.deep.equal(Array.from({ length: 51 }, (_, i) => i));
    expect(out.every((p) => p.ssrc === 7 && p.payloadType === 100 && p.payload.equals(OPUS_SILENCE))).to.equal(true);
    expect(s.due(1010)).to.have.length(0);
    expect(s.due(1020)).to.have.length(1);
  });

  it('forwards real packets on the same line and sends no silence while they flow', () => {
    const s = new SlotStream({ ssrc: 7, payloadType: 100, startMs: 0 });
    s.due(100); // 6 silence frames: ts 0..4800
    const [a, ...more] = s.onPacket(pkt(99, 5000, 123456), 105).map((b) => parseRtp(b)!);
    expect(more).to.have.length(0);
    expect(a!.timestamp).to.equal(5760);
    expect(a!.sequence).to.equal(6);
    expect(a!.ssrc).to.equal(7);
    expect(a!.payload.equals(Buffer.from([0xfc, 1, 2, 3]))).to.equal(true);
    const b = parseRtp(s.onPacket(pkt(99, 5001, 123456 + 960), 125)[0]!)!;
    expect([b.timestamp, b.sequence]).to.deep.equal([5760 + 960, 7]);
    expect(s.due(150), 'no silence within 60 ms of a real packet').to.have.length(0);
    expect(s.onPacket(pkt(99, 5001, 123456 + 960), 130), 'duplicate dropped').to.deep.equal([]);
    expect(s.onPacket(pkt(99, 5002, 123456 + 1920, Buffer.from([0x01, 1, 2, 3])), 130), 'malformed dropped').to.deep.equal([]);
  });

  it('keeps the line gapless: a lost packet becomes a silence frame, so what follows stays in place', () => {
    const s = new SlotStream({ ssrc: 7, payloadType: 100, startMs: 0 });
    const first = parseRtp(s.onPacket(pkt(5, 1, 1000), 0).at(-1)!)!;
    // Packet 2 (ts 1960) is lost; packet 3 arrives 40 ms after packet 1.
    const out = s.onPacket(pkt(5, 3, 1000 + 1920), 40).map((b) => parseRtp(b)!);
    expect(out.map((p) => p.timestamp)).to.deep.equal([first.timestamp + 960, first.timestamp + 1920]);
    expect(out[0]!.payload.equals(OPUS_SILENCE)).to.equal(true);
    expect(out.map((p) => p.sequence)).to.deep.equal([first.sequence + 1, first.sequence + 2]);
  });

  it('a sender arriving after a short stall (under the silence threshold) catches the line up with the wall clock, gaplessly', () => {
    const s = new SlotStream({ ssrc: 7, payloadType: 100, startMs: 0 });
    s.onPacket(pkt(5, 1, 1000), 0);
    const out = s.onPacket(pkt(6, 50, 777), 50).map((b) => parseRtp(b)!);
    const ts = out.map((p) => p.timestamp);
    expect(ts.slice(1).map((t, i) => t - ts[i]!), 'every frame follows the previous one').to.satisfy((d: number[]) => d.every((x) => x === 960));
    expect(ts[0]).to.equal(960);
    expect(ts.at(-1)! + 960, 'the line ends within a frame of the wall clock').to.be.within(50 * 48 - 960, 50 * 48 + 960);
  });

  it('after a gap, silence covers the gap and the next sender continues the line without overlap', () => {
    const s = new SlotStream({ ssrc: 7, payloadType: 100, startMs: 0 });
    s.onPacket(pkt(1, 10, 1000), 0);
    const silence = s.due(500).map((b) => parseRtp(b)!);
    expect(silence.length).to.be.within(24, 26);
    const lastSilence = silence.at(-1)!;
    const next = parseRtp(s.onPacket(pkt(2, 77, 999999), 505)[0]!)!;
    expect(next.timestamp).to.equal(lastSilence.timestamp + 960);
    expect(next.sequence).to.equal((lastSilence.sequence + 1) & 0xffff);
  });

  it('ignores RTCP and padding-only packets', () => {
    const rtcp = Buffer.from([0x80, 0xc8, 0, 6, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
    expect(parseRtp(rtcp)).to.equal(null);
    const padding = Buffer.from([0xa0, 111, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9, 0, 0, 4]);
    expect(parseRtp(padding)).to.equal(null);
    expect(parseRtp(Buffer.from([1, 2, 3]))).to.equal(null);
  });
});
