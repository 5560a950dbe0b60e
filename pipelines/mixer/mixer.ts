import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { types as ms } from 'mediasoup';
import type { Log } from '../log.ts';
import { PLAYLIST_NAME, mixerInputOptions, mixerOggInputOptions, mixerOutputOptions, partDurationSeconds } from './ffmpegArgs.ts';
import { OggMixInput } from './oggInput.ts';
import { LiveHlsWriter } from '../hls/liveWriter.ts';
import { SupervisedFfmpeg } from '../ffmpeg/supervised.ts';
import { MIX_PAYLOAD_TYPE, buildMixerSdp } from './sdp.ts';
import { SlotRelay } from './slotRelay.ts';
import { TrackRecorder } from '../archive/track.ts';
import { reserveRtpPorts, waitForBoundPorts } from './udpPorts.ts';

/** How long FFmpeg may take to open its RTP inputs before the relays start anyway. */
const BIND_TIMEOUT_MS = 5000;

/** One FFmpeg run: where its timeline starts on the programme clock. A crash-restart begins a new run. */
export interface MixerRun {
  index: number;
  /** Seconds on the programme clock (the slots' line) of the first sample this run mixed. */
  startSeconds: number;
  /** Wall clock (ms since the epoch) when the run started receiving. */
  startedAtMs: number;
}

export interface MixerOptions {
  stageId: string;
  outDir: string;
  /** Fixed number of inputs; one per possible performer. */
  slots: number;
  segmentSeconds: number;
  /** Parts of LL-HLS: FFmpeg's fragments (rounded down to whole AAC frames). */
  partSeconds: number;
  /** List the parts (Low-Latency HLS), or only whole segments. */
  lowLatency: boolean;
  listSize: number;
  aacBitrateKbps: number;
  log: Log;
  /** Where each performer's isolated track is recorded (`<performerId>.opus`); none when unset. */
  tracksDir?: string;
  /** UDP ports FFmpeg's inputs must not use: the mediasoup workers' RTC port range. */
  avoidPorts?: readonly { min: number; max: number }[];
  /**
   * How the slots reach FFmpeg: `ogg` (the default), one pipe, an Ogg stream with an Opus stream per slot on stdin;
   * `rtp`, an RTP socket per slot (an SDP input), as before (docs/decisions.md, "Cost per stage: one pipe").
   */
  input?: 'ogg' | 'rtp';
  /**
   * The mix continues another one's HLS at the same address (a broadcast taken over from a node that died): the first
   * segment is number `msn`, after a DISCONTINUITY, and runs (init sections) are numbered from `run`, so no name the
   * other playlist used comes back. `discontinuitySequence`: the other playlist's last segment's discontinuity number.
   */
  continues?: { msn: number; run: number; discontinuitySequence: number } | null;
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
  /** The playlist players fetch. */
  readonly playlistPath: string;
  /** Cuts FFmpeg's fragmented MP4 into parts and segments, and publishes the live playlist (LL-HLS). */
  readonly publisher: LiveHlsWriter;
  readonly #opts: MixerOptions;
  readonly #log: Log;
  #relays: SlotRelay[] = [];
  readonly #ports: number[];
  readonly #ffmpeg: SupervisedFfmpeg;
  readonly #tracks = new Map<string, TrackRecorder>();
  readonly #runs: MixerRun[] = [];
  #nextRun = 0;
  /** The run of the FFmpeg started last. */
  #currentRun = 0;
  /** performance.now() and Date.now() at the programme clock's zero. */
  #originPerf = 0;
  #originWallMs = 0;
  #generation = 0;
  readonly #feeds = new Map<string, Feed>();
  /** Slots promised to attaches still in flight, so concurrent attaches never share a slot. */
  readonly #pending = new Map<string, { slot: number; done: Promise<number> }>();
  readonly #sdpPath: string | null;
  /** The one pipe (input `ogg`); null for RTP inputs. */
  readonly #pipe: OggMixInput | null;
  #router: ms.Router;
  #closed = false;

  private constructor(router: ms.Router, opts: MixerOptions, ports: number[], sdpPath: string | null, log: Log) {
    this.stageId = opts.stageId;
    this.#router = router;
    this.#opts = opts;
    this.#ports = ports;
    this.#sdpPath = sdpPath;
    this.#pipe = sdpPath === null ? new OggMixInput(opts.slots) : null;
    this.#log = log;
    this.playlistPath = path.join(opts.outDir, PLAYLIST_NAME);
    this.publisher = new LiveHlsWriter({
      dir: opts.outDir,
      playlistName: PLAYLIST_NAME,
      segmentSeconds: opts.segmentSeconds,
      partSeconds: partDurationSeconds(opts.partSeconds),
      lowLatency: opts.lowLatency,
      listSize: opts.listSize,
      originWallMs: () => this.#originWallMs,
      runStartSeconds: (run) => this.runStart(run),
      continues: opts.continues ? { msn: opts.continues.msn, discontinuitySequence: opts.continues.discontinuitySequence } : null,
      log,
    });
    this.#nextRun = opts.continues?.run ?? 0;
    this.#ffmpeg = new SupervisedFfmpeg(
      {
        input: sdpPath ?? 'pipe:0',
        inputOptions: sdpPath ? mixerInputOptions() : mixerOggInputOptions(),
        // Each run's fragmented MP4 goes to the writer; a restart is a new run (a DISCONTINUITY, a new init section).
        // Every FFmpeg start is a run, numbered as the writer numbers them, even one that dies before its slots are
        // released (it mixed nothing; it has no entry in `runs`).
        output: () => this.publisher.runStream((this.#currentRun = this.#nextRun++)),
        outputOptions: () => mixerOutputOptions({ ...opts, inputs: opts.slots }),
      },
      log,
    );
    // While FFmpeg restarts, the relays hold what they would have sent; the new run starts with it.
    this.#ffmpeg.on('died', () => {
      this.#generation++;
      if (this.#pipe) this.#pipe.end();
      else for (const r of this.#relays) r.hold();
    });
    this.#ffmpeg.on('started', (_pid, restart) => {
      if (this.#pipe) this.#beginPipe(restart);
      else if (restart) void this.#resume(this.#generation);
    });
  }

  /**
   * Starts FFmpeg, waits until it listens on every slot, and only then starts the slots' line: the programme clock's
   * zero is the first sample FFmpeg mixes, so tracks and the mix share one timeline.
   */
  static async start(router: ms.Router, opts: MixerOptions): Promise<Mixer> {
    const log = opts.log.child({ component: 'mixer' });
    await fs.mkdir(opts.outDir, { recursive: true });
    if (opts.tracksDir) await fs.mkdir(opts.tracksDir, { recursive: true });
    const rtp = opts.input === 'rtp';
    const ports = rtp ? await reserveRtpPorts(opts.slots, opts.avoidPorts) : [];
    const sdpPath = rtp ? path.join(opts.outDir, '.mix.sdp') : null;
    if (sdpPath) await fs.writeFile(sdpPath, buildMixerSdp(ports));
    const mixer = new Mixer(router, opts, ports, sdpPath, log);
    try {
      mixer.#ffmpeg.start(false);
      // RTP inputs lose what comes before FFmpeg listens; the pipe holds it until FFmpeg reads (and the pipe's first
      // packets are the line's first: the programme clock's zero is still the first sample FFmpeg mixes).
      if (rtp) {
        const bound = await waitForBoundPorts(ports, BIND_TIMEOUT_MS);
        if (!bound) log.warn('ffmpeg did not open its RTP inputs in time; starting the slots anyway', { timeoutMs: BIND_TIMEOUT_MS });
      }
      const startMs = performance.now();
      for (let i = 0; i < opts.slots; i++) {
        const common = { index: i, payloadType: MIX_PAYLOAD_TYPE, ssrc: crypto.randomInt(1, 2 ** 32 - 1), startMs };
        mixer.#relays.push(await SlotRelay.open(mixer.#pipe ? { ...common, sink: mixer.#pipe } : { ...common, targetPort: ports[i]! }));
      }
      mixer.#originPerf = startMs;
      mixer.#originWallMs = Date.now() - (performance.now() - startMs);
      mixer.#runs.push({ index: opts.continues?.run ?? 0, startSeconds: 0, startedAtMs: mixer.#originWallMs });
      return mixer;
    } catch (err) {
      await mixer.stop().catch(() => undefined);
      throw err;
    }
  }

  /** A run of FFmpeg reading the pipe: what was held goes first; a restart is a new run from the held packets' start. */
  #beginPipe(restart: boolean): void {
    const stdin = this.#ffmpeg.stdin;
    if (!stdin || !this.#pipe || this.#closed) return;
    const startTs = this.#pipe.begin(stdin);
    if (!restart) return;
    const ts = startTs ?? this.#relays[0]?.timestampAt(performance.now()) ?? 0;
    const run: MixerRun = { index: this.#currentRun, startSeconds: ts / 48000, startedAtMs: Date.now() };
    this.#runs.push(run);
    this.#log.info('mixer run started', { run: run.index, startSeconds: run.startSeconds });
  }

  async #resume(generation: number): Promise<void> {
    const ok = await waitForBoundPorts(this.#ports, BIND_TIMEOUT_MS, () => generation !== this.#generation || this.#closed);
    if (generation !== this.#generation || this.#closed) return;
    if (!ok) this.#log.warn('restarted ffmpeg did not open its RTP inputs in time; releasing the slots anyway');
    const starts = this.#relays.map((r) => r.release()).filter((t): t is number => t !== null);
    const startTs = starts.length > 0 ? Math.min(...starts) : this.#relays[0]?.timestampAt(performance.now()) ?? 0;
    const run: MixerRun = { index: this.#currentRun, startSeconds: startTs / 48000, startedAtMs: Date.now() };
    this.#runs.push(run);
    this.#log.info('mixer run started', { run: run.index, startSeconds: run.startSeconds });
  }

  /** Where run `index` starts on the programme clock; null for a run that never mixed (or not yet). */
  runStart(index: number): number | null {
    return this.#runs.find((r) => r.index === index)?.startSeconds ?? null;
  }

  /** The FFmpeg runs that mixed, in order (a crash-restart adds one); `index` is the writer's run number. */
  get runs(): readonly MixerRun[] {
    return this.#runs;
  }

  /** Wall clock (ms since the epoch) of the programme clock's zero. */
  get originWallMs(): number {
    return this.#originWallMs;
  }

  /** Seconds on the programme clock now. */
  programmeSeconds(): number {
    return (performance.now() - this.#originPerf) / 1000;
  }

  /**
   * Where a performer's audio is on the programme clock now: the end of the last frame their slot carried (the line
   * follows their packets, so this includes any lag of their slot behind the wall clock). Programme time now for
   * anyone not on air.
   */
  lineSeconds(performerId?: string): number {
    const feed = performerId ? this.#feeds.get(performerId) : undefined;
    const relay = feed ? this.#relays[feed.slot] : undefined;
    return relay ? relay.timestampAt(performance.now()) / 48000 : this.programmeSeconds();
  }

  /**
   * Where a performer's newest audio sits on the programme clock: the end of the last frame their slot carried, behind
   * the wall clock by however late their packets arrive (a starved sender lags; the mix and their track place the
   * audio on this line, not on the wall clock). Programme time now for anyone not on air.
   */
  newestAudioSeconds(performerId: string): number {
    const feed = this.#feeds.get(performerId);
    const relay = feed ? this.#relays[feed.slot] : undefined;
    return relay ? relay.lineEnd / 48000 : this.programmeSeconds();
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

  /** The one pipe's own counts (null with RTP inputs): silence it put in to line slots up, bytes FFmpeg did not read. */
  pipeStats(): { paddedFrames: number; droppedBytes: number } | null {
    return this.#pipe ? { paddedFrames: this.#pipe.paddedFrames, droppedBytes: this.#pipe.droppedBytes } : null;
  }

  /** Feeds a performer's producer into a free slot. Idempotent per performer. */
  async attach(performerId: string, producer: ms.Producer, displayName = performerId): Promise<number> {
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
    const done = this.#connect(performerId, producer, slot, displayName).finally(() => this.#pending.delete(performerId));
    this.#pending.set(performerId, { slot, done });
    return done;
  }

  async #connect(performerId: string, producer: ms.Producer, slot: number, displayName: string): Promise<number> {
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
      this.#tapTrack(performerId, displayName, slot);
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
    const relay = this.#relays[feed.slot];
    if (relay) relay.tap = null;
    feed.transport.close();
    this.#log.info('performer off air', { performerId, slot: feed.slot });
  }

  #tapTrack(performerId: string, displayName: string, slot: number): void {
    const dir = this.#opts.tracksDir;
    const relay = this.#relays[slot];
    if (!dir || !relay) return;
    let track = this.#tracks.get(performerId);
    if (!track) {
      track = TrackRecorder.open(path.join(dir, `${trackFileName(performerId)}`), performerId, displayName);
      this.#tracks.set(performerId, track);
    }
    const t = track;
    relay.tap = (ts, payload) => t.push(ts, payload);
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
    const endTs = Math.round(this.programmeSeconds() * 48000);
    // Each step in its own try: whatever fails (a full disk, say), nothing is left running: no process, socket,
    // timer or watcher. The first error is rethrown at the end.
    const errors: unknown[] = [];
    const step = async (fn: () => Promise<unknown> | unknown) => {
      try {
        await fn();
      } catch (err) {
        errors.push(err);
      }
    };
    await step(() => this.#ffmpeg.stop());
    this.#pipe?.close();
    for (const r of this.#relays) await step(() => r.close());
    await step(() =>
      Promise.all([...this.#tracks.values()].map((t) => t.close(endTs).catch((err: unknown) => {
        this.#log.error('could not finish a performer track', { performerId: t.performerId, error: String(err) });
      }))),
    );
    // FFmpeg has finished its last fragment and its output has ended: the writer closes the last segment, ENDLIST.
    await step(() => this.publisher.end());
    if (this.#sdpPath) await step(() => fs.rm(this.#sdpPath!, { force: true }));
    this.#log.info('mix stopped', { restarts: this.#ffmpeg.restarts, ...(errors.length > 0 ? { errors: errors.map(String) } : {}) });
    if (errors.length > 0) throw errors[0];
  }
}

/** Performer ids are url-safe already; anything else is replaced so the name is always a plain file name. */
export function trackFileName(performerId: string): string {
  return `${performerId.replace(/[^A-Za-z0-9_-]/g, '_')}.opus`;
}
