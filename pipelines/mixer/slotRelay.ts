import dgram from 'node:dgram';
import { parseRtp, SlotStream } from './rtp.ts';

const TICK_MS = 10;

/**
 * One mixer input: a UDP socket that receives a performer's RTP from mediasoup and sends FFmpeg one stream that never
 * stops (silence fills any gap). The timing is SlotStream's; this class only owns the socket and the timer.
 */
export class SlotRelay {
  readonly index: number;
  readonly #socket: dgram.Socket;
  readonly #stream: SlotStream;
  readonly #target: { host: string; port: number };
  #timer: NodeJS.Timeout | null = null;
  #closed = false;

  private constructor(index: number, socket: dgram.Socket, stream: SlotStream, target: { host: string; port: number }) {
    this.index = index;
    this.#socket = socket;
    this.#stream = stream;
    this.#target = target;
  }

  static async open(args: { index: number; payloadType: number; ssrc: number; targetPort: number; startMs: number }): Promise<SlotRelay> {
    const socket = dgram.createSocket('udp4');
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(0, '127.0.0.1', () => {
        socket.off('error', reject);
        resolve();
      });
    });
    const stream = new SlotStream({ ssrc: args.ssrc, payloadType: args.payloadType, startMs: args.startMs });
    const relay = new SlotRelay(args.index, socket, stream, { host: '127.0.0.1', port: args.targetPort });
    // Sends to a port nobody listens on yet (FFmpeg starting or restarting) fail with ICMP errors: expected.
    socket.on('error', () => undefined);
    socket.on('message', (msg) => relay.#onMessage(msg));
    relay.#timer = setInterval(() => relay.#flush(), TICK_MS);
    return relay;
  }

  /** The local port mediasoup's PlainTransport sends to. */
  get port(): number {
    return this.#socket.address().port;
  }

  get stats(): { realPackets: number; silencePackets: number } {
    return { realPackets: this.#stream.realPackets, silencePackets: this.#stream.silencePackets };
  }

  #onMessage(msg: Buffer): void {
    const pkt = parseRtp(msg);
    if (!pkt) return;
    // Silence due before this packet goes first, so the timeline stays in order.
    this.#flush();
    const out = this.#stream.onPacket(pkt, performance.now());
    if (out) this.#send(out);
  }

  #flush(): void {
    for (const pkt of this.#stream.due(performance.now())) this.#send(pkt);
  }

  #send(pkt: Buffer): void {
    if (this.#closed) return;
    this.#socket.send(pkt, this.#target.port, this.#target.host);
  }

  /** Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    this.#socket.close();
  }
}
