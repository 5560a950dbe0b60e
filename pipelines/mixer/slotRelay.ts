import dgram from 'node:dgram';
import { parseRtp, SlotStream } from './rtp.ts';

const TICK_MS = 10;
/**
 * A tick this late means this process's event loop was stalled (GC, a burst of work), not that the performer went
 * quiet: their packets are waiting in the socket's buffer, and I/O comes after timers. Filling silence now would push
 * every slot's line (and so the mix) late by the stall, with a dip in every voice; such a tick yields to I/O once.
 */
const STALL_MS = 40;
/** Packets kept while FFmpeg restarts (10 s of 20 ms frames); older ones are dropped first. */
const HOLD_MAX_PACKETS = 500;

/**
 * One timer for every relay in the process: with 8 slots per stage, a timer per relay would be 800 callbacks a
 * second per stage on the event loop for work that takes microseconds. The timer runs only while a relay is open.
 *
 * It is also when packets go out. A relay queues what it would send and every relay sends its queue on the tick, so
 * FFmpeg gets each 10 ms of its slots' packets in one burst and wakes once for them. Forwarded as they arrive
 * (performers' 20 ms clocks have their own phases, silence has the timer's), packets spread over the 20 ms and
 * FFmpeg wakes for each: measured, packets of 8 inputs spread 2.5 ms apart cost FFmpeg 13-22 % more CPU than the same
 * packets in one burst. The price is at most one tick (10 ms) on the way into the mix; none on the way between
 * performers (the SFU).
 */
const ticking = new Set<SlotRelay>();
/** Run after every relay has flushed: a one-pipe input writes its tick here, once per stage. */
const tickEnds = new Set<() => void>();
let ticker: NodeJS.Timeout | null = null;

function startTicking(relay: SlotRelay): void {
  ticking.add(relay);
  ticker ??= setInterval(() => {
    for (const r of ticking) r.tick();
    for (const r of ticking) r.flush();
    for (const f of tickEnds) f();
  }, TICK_MS);
}

/** Calls `fn` at the end of every tick of the relays' timer (while any relay is open); returns its remover. */
export function onTickEnd(fn: () => void): () => void {
  tickEnds.add(fn);
  return () => tickEnds.delete(fn);
}

function stopTicking(relay: SlotRelay): void {
  ticking.delete(relay);
  if (ticking.size === 0 && ticker) {
    clearInterval(ticker);
    ticker = null;
  }
}

/** Relays the shared timer ticks now (0 once every relay is closed). */
export function tickingRelays(): number {
  return ticking.size;
}

/** Sees every packet the relay sends on (real or silence), with its timestamp on the slot's line. */
export type SlotTap = (timestamp: number, payload: Buffer) => void;

/** Where a relay's packets go instead of a UDP socket: one tick's packets (RTP, on the slot's line) at a time. */
export interface SlotSink {
  take(slot: number, packets: readonly Buffer[]): void;
}

/**
 * One mixer input: a UDP socket that receives a performer's RTP from mediasoup and gives FFmpeg one stream that never
 * stops (silence fills any gap): on a UDP socket of its own (an RTP input), or to a sink (the stage's one pipe,
 * oggInput.ts). The timing is SlotStream's; this class owns the sockets and is ticked by the process's one relay timer.
 */
export class SlotRelay {
  readonly index: number;
  readonly #socket: dgram.Socket;
  /** Connected to FFmpeg's port: a send with an address would look it up (a tick and a callback) every packet. */
  readonly #out: dgram.Socket | null;
  readonly #sink: SlotSink | null;
  readonly #stream: SlotStream;
  #closed = false;
  /** While FFmpeg is down, packets are held here and sent on when it listens again (nothing is lost). */
  #held: Buffer[] | null = null;
  /** Packets waiting for the next tick (see the ticker above). */
  #outbox: Buffer[] = [];
  /** The performer's track recorder, while one is attached. */
  tap: SlotTap | null = null;
  #lastTickMs = performance.now();
  #yielded = false;
  /** Ticks that yielded to I/O after a stall of the event loop. */
  stalls = 0;

  private constructor(index: number, socket: dgram.Socket, out: dgram.Socket | SlotSink, stream: SlotStream) {
    this.index = index;
    this.#socket = socket;
    this.#out = out instanceof dgram.Socket ? out : null;
    this.#sink = out instanceof dgram.Socket ? null : out;
    this.#stream = stream;
  }

  static async open(
    args: { index: number; payloadType: number; ssrc: number; startMs: number } & ({ targetPort: number } | { sink: SlotSink }),
  ): Promise<SlotRelay> {
    const socket = dgram.createSocket('udp4');
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(0, '127.0.0.1', () => {
        socket.off('error', reject);
        resolve();
      });
    });
    let out: dgram.Socket | SlotSink;
    if ('sink' in args) out = args.sink;
    else {
      // mediasoup sends from its own port, so the receiving socket cannot be connected: FFmpeg gets a socket of its own.
      const udp = dgram.createSocket('udp4');
      await new Promise<void>((resolve, reject) => {
        udp.once('error', reject);
        udp.connect(args.targetPort, '127.0.0.1', () => {
          udp.off('error', reject);
          resolve();
        });
      }).catch((err: unknown) => {
        socket.close();
        throw err;
      });
      // Sends to a port nobody listens on yet (FFmpeg starting or restarting) fail with ICMP errors: expected.
      udp.on('error', () => undefined);
      out = udp;
    }
    const stream = new SlotStream({ ssrc: args.ssrc, payloadType: args.payloadType, startMs: args.startMs });
    const relay = new SlotRelay(args.index, socket, out, stream);
    socket.on('error', () => undefined);
    socket.on('message', (msg) => relay.#onMessage(msg));
    startTicking(relay);
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
    const now = performance.now();
    // Silence due before this packet goes first, so the timeline stays in order; unless the loop was stalled (and the
    // tick after it has yielded to I/O, or not run yet), when the packet is one of those that waited in the buffer and
    // continues the line itself.
    if (!this.#yielded && now - this.#lastTickMs <= STALL_MS) this.#fill(now);
    for (const out of this.#stream.onPacket(pkt, now)) this.#send(out);
  }

  /** Called by the shared timer every TICK_MS. */
  tick(): void {
    if (this.#closed) return;
    const now = performance.now();
    const late = now - this.#lastTickMs > STALL_MS;
    this.#lastTickMs = now;
    if (late && !this.#yielded) {
      this.#yielded = true;
      this.stalls++;
      return;
    }
    this.#yielded = false;
    this.#fill(now);
  }

  #fill(now: number): void {
    for (const pkt of this.#stream.due(now)) this.#send(pkt);
  }

  #send(pkt: Buffer): void {
    if (this.#closed) return;
    if (this.tap) this.tap(pkt.readUInt32BE(4), pkt.subarray(12));
    if (this.#held) {
      if (this.#held.length >= HOLD_MAX_PACKETS) this.#held.shift();
      this.#held.push(pkt);
      return;
    }
    this.#outbox.push(pkt);
  }

  /** Sends what is queued (called on every tick, after every relay's tick). */
  flush(): void {
    if (this.#closed || this.#outbox.length === 0) return;
    const out = this.#outbox;
    this.#outbox = [];
    if (this.#sink) this.#sink.take(this.index, out);
    else for (const pkt of out) this.#out!.send(pkt);
  }

  /** FFmpeg is gone: hold packets from now on (and those queued for it). */
  hold(): void {
    if (this.#held) return;
    this.#held = this.#outbox.slice(-HOLD_MAX_PACKETS);
    this.#outbox = [];
  }

  /**
   * FFmpeg listens again: sends the held packets, then goes on as usual. Returns the timestamp of the first packet
   * the new FFmpeg gets (where its timeline starts), or null if nothing was held.
   */
  release(): number | null {
    const held = this.#held;
    this.#held = null;
    if (!held || this.#closed) return null;
    if (this.#sink) this.#sink.take(this.index, held);
    else for (const pkt of held) this.#out!.send(pkt);
    return held[0] ? held[0].readUInt32BE(4) : null;
  }

  /** The timestamp the next frame will carry at nowMs (the slot's line), in 48 kHz units. */
  timestampAt(nowMs: number): number {
    return this.#stream.timestampAt(nowMs);
  }

  /** The end of the last frame this slot carried (48 kHz units since start). */
  get lineEnd(): number {
    return this.#stream.lineEnd;
  }

  /** Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    stopTicking(this);
    this.#socket.close();
    this.#out?.close();
  }
}
