// Synthetic performers: FFmpeg encodes a tone to Opus RTP and sends it into a mediasoup PlainTransport producer,
// as a browser's packets would arrive (20 ms frames, no DTX). FFmpeg's RTCP goes to a socket of the sender's own,
// never to the RTP port + 1: that port may be another sender's PlainTransport, which (comedia) would lock onto the
// first source it hears, this sender's RTCP, and drop its own sender's RTP.
import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import dgram from 'node:dgram';
import type { types as ms } from 'mediasoup';
import { sineGainDb } from './media.ts';

export class SyntheticPerformer {
  readonly freq: number;
  readonly producer: ms.Producer;
  readonly #transport: ms.PlainTransport;
  readonly #proc: ChildProcess;
  readonly #exited: Promise<void>;
  readonly #rtcpSink: dgram.Socket;

  private constructor(freq: number, transport: ms.PlainTransport, producer: ms.Producer, proc: ChildProcess, rtcpSink: dgram.Socket) {
    this.freq = freq;
    this.#rtcpSink = rtcpSink;
    this.#transport = transport;
    this.producer = producer;
    this.#proc = proc;
    this.#exited = new Promise((r) => proc.once('exit', () => r()));
  }

  static async start(router: ms.Router, freq: number, opts: { levelDb?: number } = {}): Promise<SyntheticPerformer> {
    const transport = await router.createPlainTransport({ listenIp: { ip: '127.0.0.1' }, rtcpMux: true, comedia: true });
    const ssrc = crypto.randomInt(1, 2 ** 31);
    const producer = await transport.produce({
      kind: 'audio',
      rtpParameters: {
        codecs: [{ mimeType: 'audio/opus', payloadType: 111, clockRate: 48000, channels: 2, parameters: {} }],
        encodings: [{ ssrc }],
      },
    });
    const level = opts.levelDb ?? -12;
    const rtcpSink = dgram.createSocket('udp4');
    rtcpSink.on('message', () => undefined);
    await new Promise<void>((resolve) => rtcpSink.bind(0, '127.0.0.1', () => resolve()));
    const proc = spawn(
      'ffmpeg',
      ['-v', 'error', '-re', '-f', 'lavfi', '-i', `sine=frequency=${freq}:sample_rate=48000`, '-af', `volume=${sineGainDb(level)}dB`,
        '-ac', '1', '-c:a', 'libopus', '-b:a', '64k', '-application', 'lowdelay', '-frame_duration', '20',
        '-payload_type', '111', '-ssrc', String(ssrc), '-f', 'rtp', `rtp://127.0.0.1:${transport.tuple.localPort}?rtcpport=${rtcpSink.address().port}`],
      { stdio: ['ignore', 'ignore', 'inherit'] },
    );
    return new SyntheticPerformer(freq, transport, producer, proc, rtcpSink);
  }

  /** Stops the sender and closes its transport (and so its producer). */
  async stop(): Promise<void> {
    if (this.#proc.exitCode === null && this.#proc.signalCode === null) this.#proc.kill('SIGKILL');
    await this.#exited;
    this.#transport.close();
    try {
      this.#rtcpSink.close();
    } catch {
      // closed already
    }
  }
}
