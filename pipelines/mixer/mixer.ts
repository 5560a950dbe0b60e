import crypto from 'node:crypto';
import dgram from 'node:dgram';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { types as ms } from 'mediasoup';
import type { Logger } from '../../services/logger.ts';
import { endPlaylist } from '../hls/playlist.ts';
import { PLAYLIST_NAME, mixerInputOptions, mixerOutputOptions } from './ffmpegArgs.ts';
import { SupervisedFfmpeg } from './ffmpegProcess.ts';
import { MIX_PAYLOAD_TYPE, buildMixerSdp } from './sdp.ts';
import { SlotRelay } from './slotRelay.ts';

export interface MixerOptions {
  stageId: string;
  outDir: string;
  /** Fixed number of inputs; one per possible performer. */
  slots: number;
  segmentSeconds: number;
  listSize: number;
  aacBitrateKbps: number;
  log: Logger;
}

interface Feed {
  slot: number;
  transport: ms.PlainTransport;
  consumer: ms.Consumer;
}

/**
 * The on-air mix of one stage. FFmpeg reads a fixed set of Opus inputs (slots); each slot is fed by a SlotRelay that
 * never stops sending, so performers joining, leaving, muting or dropping never stall amix or restart FFmpeg.
 * A performer is attached to a free slot through a PlainTransport consumer.
 */
export class Mixer {
  readonly stageId: string;
  readonly playlistPath: string;
  readonly #opts: MixerOptions;
  readonly #log: Logger;
  readonly #relays: SlotRelay[];
  readonly #ffmpeg: SupervisedFfmpeg;
  readonly #feeds = new Map<string, Feed>();
  /** Slots promised to attaches still in flight, so concurrent attaches never share a slot. */
  readonly #pending = new Map<string, { slot: number; done: Promise<number> }>();
  readonly #sdpPath: string;
  #router: ms.Router;
  #closed = false;

  private constructor(router: ms.Router, opts: MixerOptions, relays: SlotRelay[], sdpPath: string, log: Logger) {
    this.stageId = opts.stageId;
    this.#router = router;
    this.#opts = opts;
    this.#relays = relays;
    this.#sdpPath = sdpPath;
    this.#log = log;
    this.playlistPath = path.join(opts.outDir, PLAYLIST_NAME);
    this.#ffmpeg = new SupervisedFfmpeg(
      {
        input: sdpPath,
        inputOptions: mixerInputOptions(),
        output: this.playlistPath,
        outputOptions: (restart) => mixerOutputOptions({ ...opts, inputs: opts.slots, restart }),
      },
      log,
    );
  }

  static async start(router: ms.Router, opts: MixerOptions): Promise<Mixer> {
    const log = opts.log.child({ component: 'mixer' });
    await fs.mkdir(opts.outDir, { recursive: true });
    const ports = await reserveRtpPorts(opts.slots);
    const startMs = performance.now();
    const relays: SlotRelay[] = [];
    try {
      for (let i = 0; i < opts.slots; i++) {
        relays.push(await SlotRelay.open({ index: i, payloadType: MIX_PAYLOAD_TYPE, ssrc: crypto.randomInt(1, 2 ** 32 - 1), targetPort: ports[i]!, startMs }));
      }
      const sdpPath = path.join(opts.outDir, '.mix.sdp');
      await fs.writeFile(sdpPath, buildMixerSdp(ports));
      const mixer = new Mixer(router, opts, relays, sdpPath, log);
      mixer.#ffmpeg.start(false);
      return mixer;
    } catch (err) {
      for (const r of relays) r.close();
      throw err;
    }
  }

  get ffmpeg(): SupervisedFfmpeg {
    return this.#ffmpeg;
  }

  get attached(): ReadonlyMap<string, { slot: number }> {
    return this.#feeds;
  }

  /** The relays' local UDP ports (where mediasoup sends each slot's RTP). */
  relayPorts(): number[] {
    return this.#relays.map((r) => r.port);
  }

  relayStats(): { slot: number; realPackets: number; silencePackets: number }[] {
    return this.#relays.map((r) => ({ slot: r.index, ...r.stats }));
  }

  /** Feeds a performer's producer into a free slot. Idempotent per performer. */
  async attach(performerId: string, producer: ms.Producer): Promise<number> {
    if (this.#closed) throw new Error('mixer closed');
    const inFlight = this.#pending.get(performerId);
    if (inFlight) return inFlight.done;
    const existing = this.#feeds.get(performerId);
    if (existing && existing.consumer.producerId === producer.id && !existing.consumer.closed) return existing.slot;
    if (existing) this.detach(performerId);
    // Chosen synchronously: two performers attached at once must never be given the same slot.
    const used = new Set([...this.#feeds.values(), ...this.#pending.values()].map((f) => f.slot));
    const slot = this.#relays.findIndex((_, i) => !used.has(i));
    if (slot < 0) throw new Error('no free mixer slot');
    const done = this.#connect(performerId, producer, slot).finally(() => this.#pending.delete(performerId));
    this.#pending.set(performerId, { slot, done });
    return done;
  }

  async #connect(performerId: string, producer: ms.Producer, slot: number): Promise<number> {
    const router = this.#router;
    const transport = await router.createPlainTransport({ listenIp: { ip: '127.0.0.1' }, rtcpMux: true, comedia: false });
    try {
      await transport.connect({ ip: '127.0.0.1', port: this.#relays[slot]!.port });
      const consumer = await transport.consume({ producerId: producer.id, rtpCapabilities: router.rtpCapabilities, paused: false });
      if (this.#closed || this.#feeds.has(performerId) || producer.closed) {
        transport.close();
        return this.#feeds.get(performerId)?.slot ?? -1;
      }
      const feed: Feed = { slot, transport, consumer };
      this.#feeds.set(performerId, feed);
      const drop = () => {
        if (this.#feeds.get(performerId) === feed) this.detach(performerId);
      };
      consumer.on('producerclose', drop);
      consumer.on('transportclose', drop);
      this.#log.info('performer on air', { performerId, slot });
      return slot;
    } catch (err) {
      transport.close();
      throw err;
    }
  }

  /** Frees the performer's slot; the relay fills silence from then on. */
  detach(performerId: string): void {
    const feed = this.#feeds.get(performerId);
    if (!feed) return;
    this.#feeds.delete(performerId);
    feed.transport.close();
    this.#log.info('performer off air', { performerId, slot: feed.slot });
  }

  /** After the stage moved to a new router (worker death): feeds died with the old one; slots keep filling silence. */
  setRouter(router: ms.Router): void {
    for (const id of [...this.#feeds.keys()]) this.detach(id);
    this.#router = router;
  }

  /** Idempotent: stops FFmpeg (its last segment finished), ends the playlist, releases every port and transport. */
  async stop(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const id of [...this.#feeds.keys()]) this.detach(id);
    await this.#ffmpeg.stop();
    for (const r of this.#relays) r.close();
    await endPlaylist(this.playlistPath);
    await fs.rm(this.#sdpPath, { force: true });
    this.#log.info('mix stopped', { restarts: this.#ffmpeg.restarts });
  }
}

/** Finds n free even UDP ports on loopback whose odd neighbour (FFmpeg's RTCP port) is free too. */
async function reserveRtpPorts(n: number): Promise<number[]> {
  const held: dgram.Socket[] = [];
  const ports: number[] = [];
  const bind = (port: number) =>
    new Promise<dgram.Socket | null>((resolve) => {
      const s = dgram.createSocket('udp4');
      s.once('error', () => {
        s.close();
        resolve(null);
      });
      s.bind(port, '127.0.0.1', () => resolve(s));
    });
  try {
    for (let tries = 0; ports.length < n && tries < n * 50; tries++) {
      const a = await bind(0);
      if (!a) continue;
      const p = a.address().port;
      if (p % 2 !== 0 || p >= 65535) {
        held.push(a);
        continue;
      }
      const b = await bind(p + 1);
      if (!b) {
        held.push(a);
        continue;
      }
      held.push(a, b);
      ports.push(p);
    }
  } finally {
    for (const s of held) s.close();
  }
  if (ports.length < n) throw new Error('could not reserve RTP ports for the mixer');
  return ports;
}
