// WHIP ingest (RFC 9725): an encoder (OBS, GStreamer, a browser WHIP client) publishes its audio into a stage as a
// performer of role 'encoder'. Each publisher is a WHIP resource: one performer with one send transport and one Opus
// producer, in the performer list, the mix, the SFU, the archive (its own track), counted towards the stage's limit.
// It ends on DELETE, when its path dies (DTLS failed or closed, no RTP for WHIP_RTP_TIMEOUT_SECONDS), or with its
// stage. One 1 s timer for all of them reads each producer's RTP byte count.
import crypto from 'node:crypto';
import type { types as ms } from 'mediasoup';
import type { Admission } from '../admission.ts';
import { RequestError } from '../errors.ts';
import { KeyedLimits, type SharedBuckets } from '../limits.ts';
import type { Logger } from '../logger.ts';
import type { Performer } from '../sfu/performer.ts';
import type { StageRegistry } from '../sfu/registry.ts';
import type { StageCatalog } from '../stages/catalog.ts';
import type { EncoderView } from '../shared/rest.ts';
import { buildAnswer, dtlsRoles, parseOffer, SdpError } from './sdp.ts';

/** A publisher has this long from the answer to its first RTP packet (ICE, DTLS; OBS gathers only after the answer). */
const CONNECT_MS = 30_000;
const SWEEP_MS = 1_000;

export interface WhipSettings {
  /** A publisher whose RTP stops this long is removed (its path died). */
  rtpTimeoutMs: number;
  /** POSTs per client address per minute (a stage takes twice as many), right key or wrong. */
  attemptsPerMinute: number;
}

interface Resource {
  id: string;
  stageId: string;
  performer: Performer;
  createdAt: number;
  lastBytes: number;
  lastBytesAt: number;
  published: boolean;
}

export class WhipIngest {
  readonly #registry: StageRegistry;
  readonly #stages: StageCatalog;
  readonly #admission: Admission;
  readonly #settings: WhipSettings;
  readonly #log: Logger;
  readonly #limits: KeyedLimits;
  readonly #resources = new Map<string, Resource>();
  #timer: NodeJS.Timeout | null;
  #sweeping = false;
  #closed = false;

  constructor(args: {
    registry: StageRegistry;
    stages: StageCatalog;
    admission: Admission;
    settings: WhipSettings;
    log: Logger;
    /** Cluster mode: the attempt limits' buckets, shared by every node. */
    sharedLimits?: SharedBuckets | null;
  }) {
    this.#registry = args.registry;
    this.#stages = args.stages;
    this.#admission = args.admission;
    this.#settings = args.settings;
    this.#log = args.log.child({ component: 'whip' });
    this.#limits = new KeyedLimits(args.settings.attemptsPerMinute, 2, args.sharedLimits ? { buckets: args.sharedLimits, name: 'whip' } : null);
    this.#timer = setInterval(() => void this.#sweep(), SWEEP_MS);
  }

  /** Publishers now, by stage (for views and tests). */
  resources(stageId?: string): { id: string; stageId: string; performerId: string; published: boolean }[] {
    return [...this.#resources.values()]
      .filter((r) => stageId === undefined || r.stageId === stageId)
      .map((r) => ({ id: r.id, stageId: r.stageId, performerId: r.performer.id, published: r.published }));
  }

  /**
   * A stage's encoders as its performer page shows them: connecting (answered, no audio yet) or publishing, with the
   * level of their audio (dBov; null when quiet or unknown).
   */
  view(stageId: string): EncoderView[] {
    const levels = new Map((this.#registry.get(stageId)?.levels ?? []).map((l) => [l.performerId, l.volume]));
    return [...this.#resources.values()]
      .filter((r) => r.stageId === stageId)
      .sort((a, b) => a.createdAt - b.createdAt)
      .map((r) => ({
        id: r.id,
        name: r.performer.displayName,
        state: r.published ? 'publishing' : 'connecting',
        since: new Date(r.createdAt).toISOString(),
        levelDbov: levels.get(r.id) ?? null,
        levelKnown: r.performer.producer?.rtpParameters.headerExtensions?.some((e) => e.uri === 'urn:ietf:params:rtp-hdrext:ssrc-audio-level') ?? false,
      }));
  }

  /**
   * A POST: checks the key, the offer and the stage's room, makes the publisher and answers. Throws RequestError (its
   * code maps to the status) or SdpError (400 / 422). Nothing is left behind when it throws.
   */
  async publish(args: { stageId: string; key: string; name: string; address: string; offer: string }): Promise<{ resourceId: string; answer: string; performerId: string }> {
    if (this.#closed) throw new RequestError('UNAVAILABLE', 'the server is shutting down');
    this.#admission.assertAccepting();
    const wait = await this.#limits.takeShared(args.address, args.stageId);
    if (wait > 0) throw new RequestError('RATE_LIMITED', `too many WHIP attempts; retry in ${wait} s`, wait);
    await this.#stages.authorize(args.stageId, args.key);
    const offer = parseOffer(args.offer);
    const stage = await this.#registry.open(args.stageId);
    await stage.whenReady();
    const id = crypto.randomUUID();
    const performer = stage.addPerformer(id, args.name, 'encoder');
    try {
      const info = await performer.createTransport('send');
      const { remoteRole } = dtlsRoles(offer.setup);
      await performer.connectTransport(info.id, { role: remoteRole, fingerprints: [offer.fingerprint as ms.DtlsFingerprint] });
      const rtpParameters: ms.RtpParameters = {
        mid: offer.audio.mid,
        codecs: [{ mimeType: 'audio/opus', payloadType: offer.audio.payloadType, clockRate: 48000, channels: 2, parameters: offer.audio.parameters, rtcpFeedback: [] }],
        headerExtensions: offer.audio.headerExtensions.map((e) => ({ uri: e.uri as ms.RtpHeaderExtensionParameters['uri'], id: e.id })),
        encodings: [offer.audio.ssrc !== null ? { ssrc: offer.audio.ssrc } : {}],
        rtcp: { ...(offer.audio.cname ? { cname: offer.audio.cname } : {}), reducedSize: true },
      };
      try {
        await performer.produce(info.id, rtpParameters);
      } catch (err) {
        throw new SdpError(422, `the offer's audio cannot be received: ${err instanceof Error ? err.message : String(err)}`);
      }
      const dtls = info.dtlsParameters as ms.DtlsParameters;
      const fingerprint = dtls.fingerprints.find((f) => f.algorithm === 'sha-256') ?? dtls.fingerprints[0]!;
      const answer = buildAnswer(
        offer,
        {
          iceParameters: info.iceParameters as ms.IceParameters,
          iceCandidates: info.iceCandidates as ms.IceCandidate[],
          fingerprint,
        },
        String(crypto.randomInt(1, 2 ** 47)),
      );
      const now = Date.now();
      const resource: Resource = { id, stageId: args.stageId, performer, createdAt: now, lastBytes: 0, lastBytesAt: now, published: false };
      this.#resources.set(id, resource);
      performer.once('@close', () => this.#resources.delete(id));
      const transport = performer.sendTransport;
      transport?.on('dtlsstatechange', (state) => {
        if (state === 'failed' || state === 'closed') this.#remove(resource, `DTLS ${state}`);
      });
      this.#log.info('WHIP publisher on stage', { stageId: args.stageId, resourceId: id, name: args.name });
      return { resourceId: id, answer, performerId: id };
    } catch (err) {
      performer.close('WHIP offer refused');
      throw err;
    }
  }

  /** A DELETE on the resource (the stage's performer key, as for the POST). */
  async unpublish(args: { stageId: string; resourceId: string; key: string }): Promise<void> {
    await this.#stages.checkKey(args.stageId, args.key);
    const r = this.#resources.get(args.resourceId);
    if (!r || r.stageId !== args.stageId) throw new RequestError('NOT_FOUND', 'no such WHIP session on this stage');
    this.#remove(r, 'stopped by the encoder (DELETE)');
  }

  #remove(r: Resource, reason: string): void {
    if (!this.#resources.delete(r.id)) return;
    this.#log.info('WHIP publisher off stage', { stageId: r.stageId, resourceId: r.id, reason });
    r.performer.close(reason);
  }

  async #sweep(): Promise<void> {
    if (this.#sweeping) return;
    this.#sweeping = true;
    try {
      const now = Date.now();
      for (const r of [...this.#resources.values()]) {
        const producer = r.performer.producer;
        let bytes = r.lastBytes;
        if (producer && !producer.closed) {
          try {
            bytes = (await producer.getStats()).reduce((sum, s) => sum + (s.byteCount ?? 0), 0);
          } catch {
            // closed meanwhile
          }
        }
        if (bytes !== r.lastBytes) {
          r.lastBytes = bytes;
          r.lastBytesAt = now;
          r.published = true;
          continue;
        }
        const limit = r.published ? this.#settings.rtpTimeoutMs : Math.max(this.#settings.rtpTimeoutMs, CONNECT_MS);
        if (now - r.lastBytesAt >= limit) this.#remove(r, r.published ? 'no RTP (the path died)' : 'never connected');
      }
    } catch (err) {
      this.#log.error('WHIP sweep failed', { error: err instanceof Error ? err.stack : String(err) });
    } finally {
      this.#sweeping = false;
    }
  }

  /** Removes every publisher and stops the timer. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    for (const r of [...this.#resources.values()]) this.#remove(r, 'server shutting down');
  }
}
