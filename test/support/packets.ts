// A performer whose packets the test sends itself: Opus frames pre-encoded by FFmpeg, paced every 20 ms from Node
// into a mediasoup PlainTransport producer. Unlike an FFmpeg sender, the test knows the wall-clock instant of every
// frame, so it can switch the tone at a known moment.
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import dgram from 'node:dgram';
import type { types as ms } from 'mediasoup';
import { buildRtp, parseRtp } from '../../pipelines/mixer/rtp.ts';
import { sineGainDb } from './media.ts';

/** Opus payloads (20 ms each) of a tone, encoded by FFmpeg (libopus) to RTP and captured on a local socket. */
export async function encodeTone(freq: number, seconds: number, levelDb = -12): Promise<Buffer[]> {
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  sock.setRecvBufferSize(8 * 1024 * 1024);
  const packets: { seq: number; payload: Buffer }[] = [];
  sock.on('message', (m) => {
    const p = parseRtp(m);
    if (p) packets.push({ seq: p.sequence, payload: Buffer.from(p.payload) });
  });
  const proc = spawn('ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', `sine=frequency=${freq}:sample_rate=48000:duration=${seconds}`,
    '-af', `volume=${sineGainDb(levelDb)}dB`, '-ac', '1', '-c:a', 'libopus', '-b:a', '64k', '-application', 'lowdelay', '-frame_duration', '20',
    '-payload_type', '111', '-f', 'rtp', `rtp://127.0.0.1:${sock.address().port}?pkt_size=1200`], { stdio: ['ignore', 'ignore', 'inherit'] });
  await new Promise((r) => proc.once('exit', r));
  await new Promise((r) => setTimeout(r, 200));
  sock.close();
  return packets.sort((a, b) => a.seq - b.seq).map((p) => p.payload);
}

export class PacketPerformer {
  readonly producer: ms.Producer;
  readonly #transport: ms.PlainTransport;
  readonly #socket: dgram.Socket;
  readonly #ssrc: number;
  #payloads: Buffer[];
  #index = 0;
  #seq = 0;
  #ts = 0;
  #timer: NodeJS.Timeout | null = null;
  #next = 0;
  #switched: ((wallMs: number) => void) | null = null;
  #pending: Buffer[] | null = null;

  private constructor(transport: ms.PlainTransport, producer: ms.Producer, socket: dgram.Socket, ssrc: number, payloads: Buffer[]) {
    this.#transport = transport;
    this.producer = producer;
    this.#socket = socket;
    this.#ssrc = ssrc;
    this.#payloads = payloads;
  }

  static async start(router: ms.Router, payloads: Buffer[]): Promise<PacketPerformer> {
    const transport = await router.createPlainTransport({ listenIp: { ip: '127.0.0.1' }, rtcpMux: true, comedia: true });
    const ssrc = crypto.randomInt(1, 2 ** 31);
    const producer = await transport.produce({
      kind: 'audio',
      rtpParameters: { codecs: [{ mimeType: 'audio/opus', payloadType: 111, clockRate: 48000, channels: 2, parameters: {} }], encodings: [{ ssrc }] },
    });
    const socket = dgram.createSocket('udp4');
    await new Promise<void>((r) => socket.bind(0, '127.0.0.1', () => r()));
    // Nobody listening yet (a transport closing) is an ICMP error on a connected socket: not worth a crash.
    socket.on('error', () => undefined);
    // Connected: a send with an address would look it up every packet.
    await new Promise<void>((r) => socket.connect(transport.tuple.localPort, '127.0.0.1', () => r()));
    const p = new PacketPerformer(transport, producer, socket, ssrc, payloads);
    p.#next = performance.now();
    p.#timer = setInterval(() => p.#tick(), 5);
    return p;
  }

  #tick(): void {
    const now = performance.now();
    while (this.#next <= now) {
      if (this.#pending) {
        this.#payloads = this.#pending;
        this.#pending = null;
        this.#index = 0;
        // The wall-clock instant this frame was due (it is sent now, within a few ms).
        this.#switched?.(Date.now() - (now - this.#next));
        this.#switched = null;
      }
      const payload = this.#payloads[this.#index % this.#payloads.length]!;
      this.#index++;
      const pkt = buildRtp({ payloadType: 111, sequence: this.#seq, timestamp: this.#ts, ssrc: this.#ssrc, payload });
      this.#seq = (this.#seq + 1) & 0xffff;
      this.#ts = (this.#ts + 960) >>> 0;
      this.#socket.send(pkt);
      this.#next += 20;
    }
  }

  /** From the next frame on, sends these payloads; resolves with the wall-clock ms of the first one. */
  switchTo(payloads: Buffer[]): Promise<number> {
    return new Promise((resolve) => {
      this.#pending = payloads;
      this.#switched = resolve;
    });
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    this.#socket.close();
    this.#transport.close();
  }
}
