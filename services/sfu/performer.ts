import crypto from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { types as ms } from 'mediasoup';
import type { Logger } from '../logger.ts';
import type { PerformerInfo } from '../shared/model.ts';
import type { TransportInfo } from '../shared/stage.ts';
import { InvalidStateError, RequestError } from '../errors.ts';

type PerformerEvents = {
  consumerClosed: [consumerId: string, producerId: string];
  updated: [];
  '@close': [reason: string];
};

export type PerformerRole = PerformerInfo['role'];

export interface WebRtcTransportSettings {
  listenIp: string;
  announcedIp: string | undefined;
}

/**
 * One performer on a stage: a send transport with at most one audio producer, a receive transport with one consumer
 * per other performer. Created and owned by its Stage; close() cascades to every transport.
 */
export class Performer extends EventEmitter<PerformerEvents> {
  readonly id: string;
  readonly displayName: string;
  /**
   * caller: a listener on air through call-in, for the call's length only (their id is the call's); encoder: a WHIP
   * publisher (OBS, GStreamer…), one send transport only.
   */
  readonly role: PerformerRole;
  readonly joinedAt = new Date();
  /** This connection's session (a performer who resumes after a reconnect keeps their id and gets a new session). */
  readonly sessionId = crypto.randomUUID();
  readonly #router: ms.Router;
  readonly #log: Logger;
  readonly #rtc: WebRtcTransportSettings;
  readonly #transports = new Map<string, ms.WebRtcTransport>();
  readonly #consumers = new Map<string, ms.Consumer>();
  #sendTransport: ms.WebRtcTransport | null = null;
  #recvTransport: ms.WebRtcTransport | null = null;
  #producer: ms.Producer | null = null;
  #muted = false;
  #serverMuted = false;
  #closed = false;

  constructor(args: { id: string; displayName: string; role?: PerformerRole; router: ms.Router; rtc: WebRtcTransportSettings; log: Logger }) {
    super();
    this.id = args.id;
    this.displayName = args.displayName;
    this.role = args.role ?? 'performer';
    this.#router = args.router;
    this.#rtc = args.rtc;
    this.#log = args.log.child({ performerId: args.id });
  }

  get closed(): boolean {
    return this.#closed;
  }

  get producer(): ms.Producer | null {
    return this.#producer;
  }

  get muted(): boolean {
    return this.#muted;
  }

  /** The transport this performer sends on (null before it is made). */
  get sendTransport(): ms.WebRtcTransport | null {
    return this.#sendTransport;
  }

  get consumerCount(): number {
    return this.#consumers.size;
  }

  info(): PerformerInfo {
    return { id: this.id, displayName: this.displayName, muted: this.#muted, producerId: this.#producer?.id ?? null, role: this.role };
  }

  async createTransport(direction: 'send' | 'recv'): Promise<TransportInfo> {
    this.#assertOpen();
    if ((direction === 'send' ? this.#sendTransport : this.#recvTransport) !== null) {
      throw new InvalidStateError(`a ${direction} transport already exists`);
    }
    const transport = await this.#router.createWebRtcTransport({
      listenIps: [{ ip: this.#rtc.listenIp, announcedIp: this.#rtc.announcedIp }],
      enableUdp: true,
      enableTcp: true,
      preferUdp: true,
      initialAvailableOutgoingBitrate: 600_000,
      appData: { performerId: this.id, direction },
    });
    if (this.#closed) {
      transport.close();
      throw new InvalidStateError('performer closed');
    }
    this.#transports.set(transport.id, transport);
    if (direction === 'send') this.#sendTransport = transport;
    else this.#recvTransport = transport;
    transport.on('dtlsstatechange', (state) => {
      if (state === 'failed' || state === 'closed') this.#log.warn('transport DTLS state', { transportId: transport.id, state });
    });
    transport.on('icestatechange', (state) => this.#log.debug('transport ICE state', { transportId: transport.id, state }));
    transport.observer.once('close', () => {
      this.#transports.delete(transport.id);
      if (this.#sendTransport === transport) this.#sendTransport = null;
      if (this.#recvTransport === transport) this.#recvTransport = null;
    });
    return {
      id: transport.id,
      iceParameters: transport.iceParameters,
      iceCandidates: transport.iceCandidates,
      dtlsParameters: transport.dtlsParameters,
    };
  }

  async connectTransport(transportId: string, dtlsParameters: ms.DtlsParameters): Promise<void> {
    await this.#transport(transportId).connect({ dtlsParameters });
  }

  async restartIce(transportId: string): Promise<ms.IceParameters> {
    return this.#transport(transportId).restartIce();
  }

  async produce(transportId: string, rtpParameters: ms.RtpParameters): Promise<ms.Producer> {
    const transport = this.#transport(transportId);
    if (transport !== this.#sendTransport) throw new RequestError('BAD_REQUEST', 'produce needs the send transport');
    if (this.#producer) throw new InvalidStateError('this performer already publishes audio');
    const producer = await transport.produce({ kind: 'audio', rtpParameters, paused: this.#serverMuted, appData: { performerId: this.id } });
    if (this.#closed) {
      producer.close();
      throw new InvalidStateError('performer closed');
    }
    this.#producer = producer;
    producer.observer.once('close', () => {
      if (this.#producer === producer) this.#producer = null;
    });
    this.#log.info('performer publishes audio', { producerId: producer.id });
    this.emit('updated');
    return producer;
  }

  async consume(producer: ms.Producer, producerPerformerId: string, rtpCapabilities: ms.RtpCapabilities): Promise<ms.Consumer> {
    this.#assertOpen();
    const transport = this.#recvTransport;
    if (!transport) throw new InvalidStateError('create the recv transport before consuming');
    if (producerPerformerId === this.id) throw new RequestError('BAD_REQUEST', 'a performer does not consume its own audio');
    if (!this.#router.canConsume({ producerId: producer.id, rtpCapabilities })) {
      throw new RequestError('BAD_REQUEST', 'these rtpCapabilities cannot consume the producer');
    }
    for (const c of this.#consumers.values()) {
      if (c.producerId === producer.id) throw new InvalidStateError('already consuming this producer');
    }
    const consumer = await transport.consume({
      producerId: producer.id,
      rtpCapabilities,
      paused: true,
      appData: { performerId: this.id, producerPerformerId },
    });
    if (this.#closed) {
      consumer.close();
      throw new InvalidStateError('performer closed');
    }
    this.#consumers.set(consumer.id, consumer);
    const drop = () => {
      if (!this.#consumers.delete(consumer.id)) return;
      if (!this.#closed) this.emit('consumerClosed', consumer.id, consumer.producerId);
    };
    consumer.on('producerclose', () => {
      consumer.close();
      drop();
    });
    consumer.on('transportclose', drop);
    return consumer;
  }

  async resumeConsumer(consumerId: string): Promise<void> {
    const consumer = this.#consumers.get(consumerId);
    if (!consumer) throw new RequestError('NOT_FOUND', `no consumer ${consumerId}`);
    await consumer.resume();
  }

  /**
   * Mute on the server (a caller muted by a performer): the producer is paused, so nothing of it reaches the mix or
   * the other performers whatever the browser sends. Shown to the others as muted.
   */
  async setServerMuted(muted: boolean): Promise<void> {
    this.#assertOpen();
    this.#serverMuted = muted;
    const producer = this.#producer;
    if (producer && !producer.closed) await (muted ? producer.pause() : producer.resume());
    this.setMuted(muted);
  }

  /** Mute is a flag the others see; the browser keeps sending encoded silence (track.enabled=false). */
  setMuted(muted: boolean): void {
    this.#assertOpen();
    if (this.#muted === muted) return;
    this.#muted = muted;
    this.emit('updated');
  }

  #transport(id: string): ms.WebRtcTransport {
    this.#assertOpen();
    const t = this.#transports.get(id);
    if (!t) throw new RequestError('NOT_FOUND', `no transport ${id} for this performer`);
    return t;
  }

  #assertOpen(): void {
    if (this.#closed) throw new InvalidStateError('performer closed');
  }

  /** Idempotent; closes every transport (and so the producer and consumers). */
  close(reason = 'left'): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const t of this.#transports.values()) t.close();
    this.#transports.clear();
    this.#consumers.clear();
    this.#producer = null;
    this.#log.info('performer closed', { reason });
    this.emit('@close', reason);
    this.removeAllListeners();
  }
}
