// The benchmark's performers: one Node process of its own sends every synthetic performer's Opus RTP, as browsers'
// packets would arrive (20 ms frames, each performer on its own schedule), from tones FFmpeg encoded once at the start
// (test/support/packets.ts encodeTone). Being another process, its work is not counted as the service's. The parent
// drives it over IPC: add or remove a performer, play a burst of another tone (answering with the wall-clock ms the
// burst's first packet left), and read its own health (how late it ever sent).
//   parent: const sender = await RtpSender.start(); await sender.add(...); … await sender.stop();
import { fork, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import dgram from 'node:dgram';
import { fileURLToPath } from 'node:url';
import { buildRtp, OPUS_SILENCE } from '../pipelines/mixer/rtp.ts';
import { encodeTone } from '../test/support/packets.ts';

const FRAME_MS = 20;
/** How often the one timer looks for due frames; frames due since are sent at once (catching up after a late tick). */
const TICK_MS = 5;
/** Each tone is a loop of this many seconds of pre-encoded frames. */
const LOOP_SECONDS = 2;

export interface AddPerformer {
  id: string;
  port: number;
  /** The tone it sends, in Hz (a loop of pre-encoded frames); 0 for Opus silence frames. */
  freq: number;
  payloadType?: number;
  ssrc?: number;
  host?: string;
}

export interface SenderHealth {
  performers: number;
  packets: number;
  /** Since the last health(): the latest a frame was sent after it was due, ms (a loaded machine delays the sender too). */
  maxLateMs: number;
  /** Since the last health(): frames sent more than 10 ms late. */
  lateFrames: number;
  cpuSeconds: number;
}

type Request =
  | { type: 'prepare'; freqs: number[]; burstFreqs?: { freq: number; seconds: number }[] }
  | ({ type: 'add' } & AddPerformer)
  | { type: 'remove'; id: string }
  | { type: 'burst'; id: string; freq: number; seconds: number }
  | { type: 'health' };

type Reply = { reqId: number; ok: true; value: unknown } | { reqId: number; ok: false; error: string };

// ---------------------------------------------------------------------------------------------------------------
// The child

interface Sending {
  port: number;
  host: string;
  payloadType: number;
  ssrc: number;
  seq: number;
  ts: number;
  loop: Buffer[];
  index: number;
  next: number;
  burst: { frames: Buffer[]; index: number; started: (wallMs: number) => void } | null;
}

async function child(): Promise<void> {
  const socket = dgram.createSocket('udp4');
  await new Promise<void>((r) => socket.bind(0, '127.0.0.1', () => r()));
  // Sends to a port nobody listens on (a performer being removed) fail with ICMP errors: expected.
  socket.on('error', () => undefined);
  socket.on('message', () => undefined); // RTCP from mediasoup
  const loops = new Map<number, Promise<Buffer[]>>();
  const bursts = new Map<string, Promise<Buffer[]>>();
  // 0 Hz: the one-frame silence the mixer's relays fill an empty slot with.
  const loopOf = (freq: number) =>
    loops.get(freq) ?? loops.set(freq, freq === 0 ? Promise.resolve([OPUS_SILENCE]) : encodeTone(freq, LOOP_SECONDS)).get(freq)!;
  const burstOf = (freq: number, seconds: number) => {
    const key = `${freq}/${seconds}`;
    return bursts.get(key) ?? bursts.set(key, encodeTone(freq, seconds)).get(key)!;
  };
  const sending = new Map<string, Sending>();
  let packets = 0;
  let maxLateMs = 0;
  let lateFrames = 0;

  const tick = () => {
    const now = performance.now();
    for (const s of sending.values()) {
      while (s.next <= now) {
        let payload: Buffer;
        if (s.burst) {
          const b = s.burst;
          if (b.index === 0) b.started(Date.now());
          payload = b.frames[b.index++]!;
          if (b.index >= b.frames.length) s.burst = null;
        } else {
          payload = s.loop[s.index++ % s.loop.length]!;
        }
        socket.send(buildRtp({ payloadType: s.payloadType, sequence: s.seq, timestamp: s.ts, ssrc: s.ssrc, payload }), s.port, s.host);
        packets++;
        const late = now - s.next;
        if (late > maxLateMs) maxLateMs = late;
        if (late > 10) lateFrames++;
        s.seq = (s.seq + 1) & 0xffff;
        s.ts = (s.ts + 960) >>> 0;
        s.next += FRAME_MS;
      }
    }
  };
  const timer = setInterval(tick, TICK_MS);

  const handle = async (req: Request): Promise<unknown> => {
    switch (req.type) {
      case 'prepare':
        await Promise.all([...req.freqs.map(loopOf), ...(req.burstFreqs ?? []).map((b) => burstOf(b.freq, b.seconds))]);
        return null;
      case 'add': {
        if (sending.has(req.id)) throw new Error(`performer ${req.id} exists`);
        const loop = await loopOf(req.freq);
        sending.set(req.id, {
          port: req.port,
          host: req.host ?? '127.0.0.1',
          payloadType: req.payloadType ?? 111,
          ssrc: req.ssrc ?? crypto.randomInt(1, 2 ** 31),
          seq: crypto.randomInt(0, 0x10000),
          ts: crypto.randomInt(0, 2 ** 31),
          loop,
          index: 0,
          next: performance.now(),
          burst: null,
        });
        return null;
      }
      case 'remove':
        sending.delete(req.id);
        return null;
      case 'burst': {
        const s = sending.get(req.id);
        if (!s) throw new Error(`no performer ${req.id}`);
        const frames = await burstOf(req.freq, req.seconds);
        return new Promise<number>((resolve) => {
          s.burst = { frames, index: 0, started: resolve };
        });
      }
      case 'health': {
        const u = process.cpuUsage();
        const h: SenderHealth = { performers: sending.size, packets, maxLateMs, lateFrames, cpuSeconds: (u.user + u.system) / 1e6 };
        maxLateMs = 0;
        lateFrames = 0;
        return h;
      }
    }
  };

  process.on('message', (msg: { reqId: number; req: Request }) => {
    handle(msg.req).then(
      (value) => process.send?.({ reqId: msg.reqId, ok: true, value } satisfies Reply),
      (err: unknown) => process.send?.({ reqId: msg.reqId, ok: false, error: String(err) } satisfies Reply),
    );
  });
  // The parent went away (or asked us to stop): nothing must keep sending.
  process.on('disconnect', () => {
    clearInterval(timer);
    socket.close();
    process.exit(0);
  });
  process.send?.({ reqId: 0, ok: true, value: 'ready' } satisfies Reply);
}

// ---------------------------------------------------------------------------------------------------------------
// The parent's handle

export class RtpSender {
  readonly #proc: ChildProcess;
  readonly #waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  readonly #exited: Promise<void>;
  #reqId = 0;

  private constructor(proc: ChildProcess) {
    this.#proc = proc;
    this.#exited = new Promise((r) => proc.once('exit', () => r()));
    proc.on('message', (m: Reply) => {
      const w = this.#waiting.get(m.reqId);
      if (!w) return;
      this.#waiting.delete(m.reqId);
      if (m.ok) w.resolve(m.value);
      else w.reject(new Error(m.error));
    });
    proc.once('exit', (code, signal) => {
      for (const w of this.#waiting.values()) w.reject(new Error(`the RTP sender exited (${code ?? signal})`));
      this.#waiting.clear();
    });
  }

  static async start(): Promise<RtpSender> {
    // The child runs under the same loader (tsx) as this process: fork passes process.execArgv on.
    const proc = fork(fileURLToPath(import.meta.url), ['--child'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const sender = new RtpSender(proc);
    await new Promise<void>((resolve, reject) => {
      sender.#waiting.set(0, { resolve: () => resolve(), reject });
    });
    return sender;
  }

  /** The sender's pid: its CPU is not the service's. */
  get pid(): number {
    return this.#proc.pid!;
  }

  #ask<T>(req: Request): Promise<T> {
    const reqId = ++this.#reqId;
    return new Promise<T>((resolve, reject) => {
      this.#waiting.set(reqId, { resolve: resolve as (v: unknown) => void, reject });
      this.#proc.send({ reqId, req });
    });
  }

  /** Encodes the tones (and bursts) ahead, so that adding performers later costs no encoding. */
  prepare(freqs: number[], burstFreqs: { freq: number; seconds: number }[] = []): Promise<void> {
    return this.#ask({ type: 'prepare', freqs, burstFreqs });
  }

  add(p: AddPerformer): Promise<void> {
    return this.#ask({ type: 'add', ...p });
  }

  remove(id: string): Promise<void> {
    return this.#ask({ type: 'remove', id });
  }

  /** Replaces the performer's next frames by a burst of another tone; resolves with the wall-clock ms it started. */
  burst(id: string, freq: number, seconds: number): Promise<number> {
    return this.#ask({ type: 'burst', id, freq, seconds });
  }

  /** The sender's figures; the lateness ones restart from zero. */
  health(): Promise<SenderHealth> {
    return this.#ask({ type: 'health' });
  }

  async stop(): Promise<void> {
    if (this.#proc.exitCode !== null || this.#proc.signalCode !== null) return;
    this.#proc.disconnect();
    const killer = setTimeout(() => this.#proc.kill('SIGKILL'), 3000);
    await this.#exited;
    clearTimeout(killer);
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url) && process.argv[2] === '--child') await child();
