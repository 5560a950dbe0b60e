// A mixer slot's relay through a stall of this process's event loop: the performer's packets that waited in the
// socket buffer meanwhile must continue the line, not be pushed late behind silence the late timer thought was due.
import dgram from 'node:dgram';
import { Worker } from 'node:worker_threads';
import { expect } from 'chai';
import { OPUS_SILENCE, parseRtp } from '../../pipelines/mixer/rtp.ts';
import { SlotRelay, tickingRelays } from '../../pipelines/mixer/slotRelay.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A sender on a thread of its own (it keeps its 20 ms pace while the main thread is blocked). */
const SENDER = `
const dgram = require('node:dgram');
const { workerData, parentPort } = require('node:worker_threads');
const sock = dgram.createSocket('udp4');
const start = performance.now();
let n = 0;
const timer = setInterval(() => {
  while (start + n * 20 <= performance.now() && n < workerData.packets) {
    const b = Buffer.alloc(12 + 4);
    b[0] = 0x80; b[1] = 111;
    b.writeUInt16BE(n & 0xffff, 2); b.writeUInt32BE((n * 960) >>> 0, 4); b.writeUInt32BE(777, 8);
    b[12] = 0xf8; b[13] = 1; b[14] = 2; b[15] = 3; // a 20 ms CELT frame, not the relay's silence
    sock.send(b, workerData.port, '127.0.0.1');
    n++;
  }
  if (n >= workerData.packets) { clearInterval(timer); setTimeout(() => { sock.close(); parentPort.postMessage('done'); }, 50); }
}, 2);
`;

describe('SlotRelay', () => {
  it('a 150 ms stall of the event loop puts no silence into a flowing slot and keeps its line contiguous', async () => {
    const sink = dgram.createSocket('udp4');
    await new Promise<void>((r) => sink.bind(0, '127.0.0.1', () => r()));
    const received: Buffer[] = [];
    sink.on('message', (m) => received.push(m));
    const relay = await SlotRelay.open({ index: 0, payloadType: 111, ssrc: 4242, targetPort: sink.address().port, startMs: performance.now() });
    const worker = new Worker(SENDER, { eval: true, workerData: { port: relay.port, packets: 75 } });
    const done = new Promise<void>((resolve) => worker.once('message', () => resolve()));
    try {
      await sleep(500);
      const t = performance.now();
      while (performance.now() - t < 150) {
        // Blocked, as a long synchronous piece of work would block it.
      }
      await done;
      await sleep(100);
    } finally {
      await worker.terminate();
      relay.close();
      sink.close();
    }
    const pkts = received.map((m) => parseRtp(m)!);
    const firstReal = pkts.findIndex((p) => !p.payload.equals(OPUS_SILENCE));
    const afterFirst = pkts.slice(firstReal);
    const lastReal = afterFirst.map((p) => !p.payload.equals(OPUS_SILENCE)).lastIndexOf(true);
    const flowing = afterFirst.slice(0, lastReal + 1);
    const silences = flowing.filter((p) => p.payload.equals(OPUS_SILENCE)).length;
    expect(flowing.length - silences, 'every packet sent was relayed').to.equal(75);
    expect(silences, 'silence frames among the flowing packets').to.equal(0);
    expect(relay.stalls, 'the stall was seen').to.be.at.least(1);
    for (let i = 1; i < flowing.length; i++) expect(flowing[i]!.timestamp - flowing[i - 1]!.timestamp).to.equal(960);
  });

  it('every relay is ticked by one shared timer, which stops when the last relay closes', async () => {
    const sinks = await Promise.all([0, 1, 2].map(() => new Promise<dgram.Socket>((r) => {
      const s = dgram.createSocket('udp4');
      s.bind(0, '127.0.0.1', () => r(s));
    })));
    const counts = [0, 0, 0];
    sinks.forEach((s, i) => s.on('message', () => counts[i]!++));
    const before = tickingRelays();
    const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    const timersBefore = timers();
    const relays = await Promise.all(sinks.map((s, i) => SlotRelay.open({ index: i, payloadType: 111, ssrc: 100 + i, targetPort: s.address().port, startMs: performance.now() })));
    try {
      expect(tickingRelays() - before).to.equal(3);
      expect(timers() - timersBefore, 'timers added by three relays').to.be.at.most(1);
      await sleep(400);
    } finally {
      for (const r of relays) r.close();
    }
    await sleep(50);
    for (const s of sinks) s.close();
    // Each idle relay filled its line with 20 ms silence frames by the wall clock (about 20 in 400 ms).
    for (const c of counts) expect(c).to.be.within(15, 25);
    expect(tickingRelays(), 'no relay left on the timer').to.equal(before);
    if (before === 0) expect(timers(), 'the shared timer is gone').to.be.at.most(timersBefore);
  });
});
