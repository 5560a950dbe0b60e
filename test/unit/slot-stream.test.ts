// The mixer slot's timing core: one continuous RTP line out, silence paced by the wall clock.
import { expect } from 'chai';
import { OPUS_SILENCE, SlotStream, buildRtp, parseRtp, type RtpPacket } from '../../pipelines/mixer/rtp.ts';

const pkt = (ssrc: number, sequence: number, timestamp: number, payload = Buffer.from([1, 2, 3, 4])): RtpPacket =>
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
    const a = parseRtp(s.onPacket(pkt(99, 5000, 123456), 105)!)!;
    expect(a.timestamp).to.equal(5760);
    expect(a.sequence).to.equal(6);
    expect(a.ssrc).to.equal(7);
    expect(a.payload.equals(Buffer.from([1, 2, 3, 4]))).to.equal(true);
    const b = parseRtp(s.onPacket(pkt(99, 5001, 123456 + 960), 125)!)!;
    expect([b.timestamp, b.sequence]).to.deep.equal([5760 + 960, 7]);
    expect(s.due(150), 'no silence within 60 ms of a real packet').to.have.length(0);
    expect(s.onPacket(pkt(99, 5001, 123456 + 960), 130), 'duplicate dropped').to.equal(null);
  });

  it('after a gap, silence covers the gap and the next sender continues the line without overlap', () => {
    const s = new SlotStream({ ssrc: 7, payloadType: 100, startMs: 0 });
    s.onPacket(pkt(1, 10, 1000), 0);
    const silence = s.due(500).map((b) => parseRtp(b)!);
    expect(silence.length).to.be.within(24, 26);
    const lastSilence = silence.at(-1)!;
    const next = parseRtp(s.onPacket(pkt(2, 77, 999999), 505)!)!;
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
