// Call-in: the call desk of every stage. A listener asks to speak (a request in the stage's queue); a performer accepts
// or declines it; an accepted caller joins the stage as a guest performer (role 'caller', the call's id as performer
// id: a mix slot, a track in the archive, heard by the performers through the SFU) for the call's length only.
//
// Each call is a child of the broadcast on air: it can only be requested while the stage is on air, and the
// broadcast's end ends it. Every step is recorded (call_request → call_accepted / call_declined / call_cancelled /
// call_expired → call_connected → call_tick per started minute → call_end), through the journaled write-behind, so
// a database outage or a crash loses none; the bill (started minutes × the stage's rate when the call was taken) is
// computed at call_end and stored with the call.
//
// One 1 s timer for the whole desk: it expires requests, ticks the calls on air (at connected + k × 60 s, stamped
// with that time, whatever the timer's phase), and ends calls whose RTP stopped.
import crypto from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Writes } from '../broadcast/services.ts';
import { CallRepo, callView, type CallRecord } from '../db/calls.ts';
import type { Db } from '../db/db.ts';
import { isDbUnavailable } from '../db/writeBehind.ts';
import { InvalidStateError, RequestError } from '../errors.ts';
import { RateLimiter } from '../limits.ts';
import type { Logger } from '../logger.ts';
import type { Performer } from '../sfu/performer.ts';
import type { StageRegistry } from '../sfu/registry.ts';
import type { Stage } from '../sfu/stage.ts';
import type { CallEndReason, CallEvent, CallEventType, CallRate, CallView } from '../shared/calls.ts';

export interface CallDeskSettings {
  /** Requests waiting per stage, at most. */
  queueMax: number;
  /** A request nobody takes within this long expires. */
  requestTtlMs: number;
  /** A caller on air whose RTP stops for this long has lost the network: the call ends (reason network). */
  rtpTimeoutMs: number;
  /** Call requests per client address: this many at once, then one per 60 / this s. */
  requestsPerMinute: number;
}

export const DEFAULT_CALL_SETTINGS: CallDeskSettings = { queueMax: 20, requestTtlMs: 120_000, rtpTimeoutMs: 10_000, requestsPerMinute: 5 };

/** A billed minute. Only tests of the desk's own arithmetic shorten it. */
const MINUTE_MS = 60_000;
const SWEEP_MS = 1_000;
/** An accepted caller has this long to send their first packet (the microphone prompt, ICE, DTLS). */
const ACCEPTED_CONNECT_MS = 30_000;

type DeskEvents = {
  /** A call changed (its caller's page hears it). */
  changed: [listenerId: string, call: CallView];
  /** A stage's queue (its waiting calls and those on air) changed (the performers' pages hear it). */
  queue: [stageId: string];
};

interface Call {
  record: CallRecord;
  listenerId: string;
  address: string;
  seq: number;
  muted: boolean;
  performer: Performer | null;
  /** Wall ms when the request expires (waiting only). */
  expiresAt: number;
  /** Wall ms of the next started minute (on air only). */
  nextTickAt: number;
  /** The transport's received bytes at the last check, and when they last grew. */
  lastBytes: number;
  lastBytesAt: number;
  /** The call's interval on the broadcast's timeline. */
  timelineId: string | null;
  /** The final write: the call is forgotten here once it is in the database. */
  written: Promise<boolean> | null;
}

const FINAL = new Set(['declined', 'cancelled', 'expired', 'ended']);

export class CallDesk extends EventEmitter<DeskEvents> {
  readonly #registry: StageRegistry;
  readonly #writes: Writes;
  readonly #rates: (stageId: string) => Promise<CallRate | null>;
  readonly #settings: CallDeskSettings;
  readonly #minuteMs: number;
  readonly #log: Logger;
  readonly #calls = new Map<string, Call>();
  /** The listener connection's open call (waiting, accepted or on air). */
  readonly #byListener = new Map<string, Call>();
  readonly #byAddress: RateLimiter;
  readonly #onStageOpened = (stage: Stage) => this.#watchStage(stage);
  #timer: NodeJS.Timeout | null;
  #sweeping = false;
  #closed = false;

  constructor(args: {
    registry: StageRegistry;
    writes: Writes;
    rates: (stageId: string) => Promise<CallRate | null>;
    settings?: Partial<CallDeskSettings>;
    log: Logger;
    /** Tests of the tick arithmetic only. */
    minuteMs?: number;
  }) {
    super();
    this.#registry = args.registry;
    this.#writes = args.writes;
    this.#rates = args.rates;
    this.#settings = { ...DEFAULT_CALL_SETTINGS, ...args.settings };
    this.#minuteMs = args.minuteMs ?? MINUTE_MS;
    this.#log = args.log.child({ component: 'calls' });
    this.#byAddress = new RateLimiter({ capacity: this.#settings.requestsPerMinute, perSecond: this.#settings.requestsPerMinute / 60 });
    this.#registry.on('stageOpened', this.#onStageOpened);
    for (const stage of this.#registry.stages) this.#watchStage(stage);
    this.#timer = setInterval(() => void this.#sweep(), SWEEP_MS);
  }

  #watchStage(stage: Stage): void {
    stage.on('onAirChanged', (live) => {
      if (!live) this.#endStage(stage.id, 'broadcast_ended');
    });
    stage.once('@close', () => this.#endStage(stage.id, 'broadcast_ended'));
  }

  // ---- what a listener does ----

  /** A listener asks to speak. One open request per listener connection; bounded queue; limited per address. */
  async request(args: {
    stageId: string;
    listenerId: string;
    address: string;
    name: string;
    topic?: string | undefined;
    /** Whether the listener's connection is still there and on this stage (checked after the rate is read). */
    stillThere?: () => boolean;
  }): Promise<CallView> {
    this.#assertOpen();
    if (this.#byListener.has(args.listenerId)) throw new InvalidStateError('you already have a call: cancel it or hang up first');
    const stage = this.#onAirStage(args.stageId);
    if (this.#waiting(args.stageId).length >= this.#settings.queueMax) {
      throw new RequestError('QUEUE_FULL', `the call queue is full (${this.#settings.queueMax} waiting); try again later`);
    }
    this.#byAddress.takeOrThrow(args.address, 'too many call requests from your address');
    const rate = await this.#rates(args.stageId);
    // Checked again: the rate came from the database, and the listener may have gone or moved meanwhile.
    if (args.stillThere && !args.stillThere()) throw new InvalidStateError('the connection left the stage before the request was taken');
    if (this.#byListener.has(args.listenerId)) throw new InvalidStateError('you already have a call: cancel it or hang up first');
    if (this.#waiting(args.stageId).length >= this.#settings.queueMax) {
      throw new RequestError('QUEUE_FULL', `the call queue is full (${this.#settings.queueMax} waiting); try again later`);
    }
    const broadcast = stage.broadcast;
    if (!broadcast || broadcast.closed) throw new InvalidStateError('the stage is not on air: calls are taken during a broadcast');
    const now = new Date();
    const call: Call = {
      record: {
        id: crypto.randomUUID(),
        stageId: args.stageId,
        broadcastId: broadcast.id,
        name: args.name,
        topic: args.topic ?? null,
        status: 'waiting',
        endReason: null,
        requestedAt: now.toISOString(),
        acceptedAt: null,
        connectedAt: null,
        endedAt: null,
        minutes: 0,
        rateMinor: rate?.amountMinor ?? null,
        currency: rate?.currency ?? null,
        billMinor: null,
        performerId: null,
      },
      listenerId: args.listenerId,
      address: args.address,
      seq: 0,
      muted: false,
      performer: null,
      expiresAt: now.getTime() + this.#settings.requestTtlMs,
      nextTickAt: 0,
      lastBytes: 0,
      lastBytesAt: 0,
      timelineId: null,
      written: null,
    };
    this.#calls.set(call.record.id, call);
    this.#byListener.set(args.listenerId, call);
    this.#record(call, 'call_request', now, { name: call.record.name, topic: call.record.topic });
    this.#log.info('call requested', { stageId: args.stageId, callId: call.record.id });
    this.#changed(call);
    return this.view(call);
  }

  /** The listener cancels their request, or hangs up their call. */
  cancel(listenerId: string, reason: 'caller' | 'network' = 'caller'): void {
    const call = this.#byListener.get(listenerId);
    if (!call) throw new RequestError('NOT_FOUND', 'you have no call');
    if (call.record.status === 'waiting') this.#finish(call, 'cancelled', reason, 'call_cancelled');
    else this.#finish(call, 'ended', reason, 'call_end');
  }

  /** The listener connection is gone: its call ends (a request is cancelled). */
  listenerGone(listenerId: string, reason: 'caller' | 'network'): void {
    if (this.#byListener.has(listenerId)) this.cancel(listenerId, reason);
  }

  /** The caller's performer on the stage (their media requests go to it), once accepted. */
  callerOf(listenerId: string): Performer {
    const call = this.#byListener.get(listenerId);
    if (!call?.performer || call.performer.closed) throw new RequestError('NOT_JOINED', 'you are not on air: your call has not been accepted');
    return call.performer;
  }

  /** The stage the listener's call is on (its media requests use it, whatever the connection subscribed to since). */
  callStageOf(listenerId: string): string | null {
    return this.#byListener.get(listenerId)?.record.stageId ?? null;
  }

  /** The caller published their microphone: applies a mute, and watches for the first RTP (call_connected). */
  produced(listenerId: string): void {
    const call = this.#byListener.get(listenerId);
    const producer = call?.performer?.producer;
    if (!call || !producer) return;
    producer.on('trace', (trace) => {
      if (trace.type !== 'rtp' || call.record.connectedAt !== null || FINAL.has(call.record.status)) return;
      void producer.enableTraceEvent([]).catch(() => undefined);
      this.#connected(call, new Date());
    });
    void producer.enableTraceEvent(['rtp']).catch((err: unknown) => this.#log.warn('could not watch the caller’s RTP', { error: String(err) }));
  }

  // ---- what a performer does (the signaling checks that the connection is a performer of this stage) ----

  accept(stageId: string, callId: string, byPerformerId: string): CallView {
    const call = this.#callOn(stageId, callId);
    if (call.record.status !== 'waiting') throw new InvalidStateError(`the call is ${call.record.status}, not waiting`);
    const stage = this.#onAirStage(stageId);
    // Takes a performer slot (and so a mix slot): STAGE_FULL when there is none, and the call stays waiting.
    let performer: Performer;
    try {
      performer = stage.addPerformer(call.record.id, call.record.name, 'caller');
    } catch (err) {
      if (err instanceof RequestError && err.code === 'STAGE_FULL') {
        throw new RequestError('STAGE_FULL', `cannot take the call: ${err.message}; a caller takes a performer's place`);
      }
      throw err;
    }
    call.performer = performer;
    performer.once('@close', (reason) => {
      if (FINAL.has(call.record.status)) return;
      this.#finish(call, 'ended', reason === 'stage closed' ? 'broadcast_ended' : 'server', 'call_end');
    });
    const now = new Date();
    call.record.status = 'accepted';
    call.record.acceptedAt = now.toISOString();
    call.record.performerId = performer.id;
    call.lastBytesAt = now.getTime();
    this.#record(call, 'call_accepted', now, { by: byPerformerId });
    this.#log.info('call accepted', { stageId, callId, by: byPerformerId });
    this.#changed(call);
    return this.view(call);
  }

  decline(stageId: string, callId: string, byPerformerId: string): CallView {
    const call = this.#callOn(stageId, callId);
    if (call.record.status !== 'waiting') throw new InvalidStateError(`the call is ${call.record.status}, not waiting`);
    this.#finish(call, 'declined', 'host', 'call_declined', { by: byPerformerId });
    return this.view(call);
  }

  async mute(stageId: string, callId: string, muted: boolean): Promise<CallView> {
    const call = this.#callOn(stageId, callId);
    if (call.record.status !== 'accepted' && call.record.status !== 'on_air') throw new InvalidStateError(`the call is ${call.record.status}, not on air`);
    call.muted = muted;
    await call.performer?.setServerMuted(muted);
    this.#changed(call);
    return this.view(call);
  }

  hangUp(stageId: string, callId: string, byPerformerId: string): CallView {
    const call = this.#callOn(stageId, callId);
    if (call.record.status !== 'accepted' && call.record.status !== 'on_air') throw new InvalidStateError(`the call is ${call.record.status}, not on air`);
    this.#finish(call, 'ended', 'host', 'call_end', { by: byPerformerId });
    return this.view(call);
  }

  // ---- views ----

  view(call: Call): CallView {
    return callView(call.record, call.muted);
  }

  /** A stage's open calls (waiting, accepted, on air), oldest request first. */
  queue(stageId: string): CallView[] {
    return [...this.#calls.values()]
      .filter((c) => c.record.stageId === stageId && !FINAL.has(c.record.status))
      .sort((a, b) => a.record.requestedAt.localeCompare(b.record.requestedAt))
      .map((c) => this.view(c));
  }

  /** Calls the database may not have yet (their latest state), by id: REST shows these over the stored rows. */
  pending(stageId?: string): CallView[] {
    return [...this.#calls.values()].filter((c) => stageId === undefined || c.record.stageId === stageId).map((c) => this.view(c));
  }

  /** How many calls wait and how many are on air (accepted or connected), over every stage. */
  counts(): { waiting: number; onAir: number; byStage: Map<string, { waiting: number; onAir: number }> } {
    let waiting = 0;
    let onAir = 0;
    const byStage = new Map<string, { waiting: number; onAir: number }>();
    for (const c of this.#calls.values()) {
      const s = c.record.status;
      if (s !== 'waiting' && s !== 'accepted' && s !== 'on_air') continue;
      const e = byStage.get(c.record.stageId) ?? { waiting: 0, onAir: 0 };
      if (s === 'waiting') {
        waiting++;
        e.waiting++;
      } else {
        onAir++;
        e.onAir++;
      }
      byStage.set(c.record.stageId, e);
    }
    return { waiting, onAir, byStage };
  }

  /** A stage's waiting calls in queue order, with their listeners. */
  waitingOn(stageId: string): { listenerId: string; call: CallView }[] {
    return this.#waiting(stageId)
      .sort((a, b) => a.record.requestedAt.localeCompare(b.record.requestedAt))
      .map((c) => ({ listenerId: c.listenerId, call: this.view(c) }));
  }

  /** The listener's open call, or null. */
  callOf(listenerId: string): CallView | null {
    const c = this.#byListener.get(listenerId);
    return c ? this.view(c) : null;
  }

  // ---- internals ----

  #assertOpen(): void {
    if (this.#closed) throw new RequestError('UNAVAILABLE', 'the server is shutting down');
  }

  #onAirStage(stageId: string): Stage {
    const stage = this.#registry.get(stageId);
    if (!stage || !stage.broadcast || stage.broadcast.closed) throw new InvalidStateError('the stage is not on air: calls are taken during a broadcast');
    return stage;
  }

  #callOn(stageId: string, callId: string): Call {
    const call = this.#calls.get(callId);
    if (!call || call.record.stageId !== stageId) throw new RequestError('NOT_FOUND', `no open call ${callId} on this stage`);
    return call;
  }

  #waiting(stageId: string): Call[] {
    return [...this.#calls.values()].filter((c) => c.record.stageId === stageId && c.record.status === 'waiting');
  }

  #connected(call: Call, at: Date): void {
    if (call.record.status !== 'accepted') return;
    call.record.status = 'on_air';
    call.record.connectedAt = at.toISOString();
    call.record.minutes = 1;
    call.nextTickAt = at.getTime() + this.#minuteMs;
    call.lastBytesAt = Date.now();
    this.#record(call, 'call_connected', at, {});
    this.#record(call, 'call_tick', at, { minute: 1 });
    const broadcast = this.#registry.get(call.record.stageId)?.broadcast;
    call.timelineId = broadcast && !broadcast.closed ? broadcast.timeline.callStarted({ callId: call.record.id, name: call.record.name, topic: call.record.topic }) : null;
    this.#log.info('call on air', { stageId: call.record.stageId, callId: call.record.id });
    this.#changed(call);
  }

  async #sweep(): Promise<void> {
    if (this.#sweeping) return;
    this.#sweeping = true;
    try {
      await this.#sweepOnce();
    } catch (err) {
      this.#log.error('call sweep failed', { error: err instanceof Error ? err.stack : String(err) });
    } finally {
      this.#sweeping = false;
    }
  }

  async #sweepOnce(): Promise<void> {
    const now = Date.now();
    for (const call of [...this.#calls.values()]) {
      const { status } = call.record;
      if (status === 'waiting' && now >= call.expiresAt) {
        this.#finish(call, 'expired', 'expired', 'call_expired');
        continue;
      }
      if (status === 'on_air') this.#tickUpTo(call, now);
      if (status === 'accepted' || status === 'on_air') await this.#checkRtp(call, now);
    }
  }

  /** Records every started minute up to `now` (the sweep, and the call's end: a minute that began is billed). */
  #tickUpTo(call: Call, now: number): void {
    const connected = Date.parse(call.record.connectedAt ?? '');
    const due = startedMinutes(connected, now, this.#minuteMs);
    while (call.record.minutes < due) {
      call.record.minutes++;
      this.#record(call, 'call_tick', new Date(connected + (call.record.minutes - 1) * this.#minuteMs), { minute: call.record.minutes });
    }
    call.nextTickAt = connected + call.record.minutes * this.#minuteMs;
  }

  /** No RTP (or no connection at all after acceptance) for rtpTimeoutMs: the caller's network is gone. */
  async #checkRtp(call: Call, now: number): Promise<void> {
    // The producer's own RTP count (kept while it is paused by a mute), not the transport's: ICE keepalives reach
    // a transport whose audio has stopped.
    const producer = call.performer?.producer;
    let bytes = call.lastBytes;
    if (producer && !producer.closed) {
      try {
        bytes = (await producer.getStats()).reduce((sum, s) => sum + (s.byteCount ?? 0), 0);
      } catch {
        // Closed meanwhile: the performer's close ends the call.
      }
    }
    if (FINAL.has(call.record.status)) return;
    if (bytes !== call.lastBytes) {
      call.lastBytes = bytes;
      call.lastBytesAt = now;
      // mediasoup emits no RTP trace while a producer is paused: a caller muted before their first packet connects here.
      if (call.record.status === 'accepted' && bytes > 0 && call.muted) this.#connected(call, new Date());
      return;
    }
    // Before the first RTP, the caller is given the request's time to the connect (getUserMedia, ICE, DTLS).
    const limit = call.record.status === 'accepted' ? Math.max(this.#settings.rtpTimeoutMs, ACCEPTED_CONNECT_MS) : this.#settings.rtpTimeoutMs;
    if (now - call.lastBytesAt >= limit) {
      this.#log.warn('caller lost: no RTP', { callId: call.record.id, forMs: now - call.lastBytesAt });
      this.#finish(call, 'ended', 'network', 'call_end');
    }
  }

  #finish(call: Call, status: 'declined' | 'cancelled' | 'expired' | 'ended', reason: CallEndReason, type: CallEventType, data: CallEvent['data'] = {}): void {
    if (FINAL.has(call.record.status)) return;
    const now = new Date();
    const wasOnAir = call.record.status === 'on_air';
    if (wasOnAir) this.#tickUpTo(call, now.getTime());
    call.record.status = status;
    call.record.endReason = reason;
    call.record.endedAt = now.toISOString();
    if (call.record.rateMinor !== null) call.record.billMinor = call.record.minutes * call.record.rateMinor;
    if (call.timelineId) {
      const broadcast = this.#registry.get(call.record.stageId)?.broadcast;
      broadcast?.timeline.callEnded(call.timelineId);
      call.timelineId = null;
    }
    const performer = call.performer;
    call.performer = null;
    performer?.close('call ended');
    if (this.#byListener.get(call.listenerId) === call) this.#byListener.delete(call.listenerId);
    call.written = this.#record(call, type, now, { reason, minutes: call.record.minutes, ...data, ...(call.record.billMinor !== null ? { billMinor: call.record.billMinor } : {}) });
    void call.written.then(() => {
      if (this.#calls.get(call.record.id) === call) this.#calls.delete(call.record.id);
    });
    this.#log.info('call over', { callId: call.record.id, status, reason, minutes: call.record.minutes, wasOnAir });
    this.#changed(call);
  }

  #record(call: Call, type: CallEventType, at: Date, data: CallEvent['data']): Promise<boolean> {
    call.seq++;
    return this.#writes.write('call.record', { call: { ...call.record }, event: { seq: call.seq, type, at: at.toISOString(), data } });
  }

  #changed(call: Call): void {
    this.emit('changed', call.listenerId, this.view(call));
    this.emit('queue', call.record.stageId);
  }

  #endStage(stageId: string, reason: CallEndReason): void {
    for (const call of [...this.#calls.values()]) {
      if (call.record.stageId !== stageId || FINAL.has(call.record.status)) continue;
      if (call.record.status === 'waiting') this.#finish(call, 'cancelled', reason, 'call_cancelled');
      else this.#finish(call, 'ended', reason, 'call_end');
    }
  }

  /**
   * Ends every open call (reason server) and stops the timer. Idempotent. Shutdown calls it before it ends the
   * broadcasts, so that calls end as `server`, not `broadcast_ended`.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    this.#registry.off('stageOpened', this.#onStageOpened);
    for (const call of [...this.#calls.values()]) {
      if (call.record.status === 'waiting') this.#finish(call, 'cancelled', 'server', 'call_cancelled');
      else this.#finish(call, 'ended', 'server', 'call_end');
    }
    this.removeAllListeners();
  }
}

/** Minutes begun between a call's connection and `nowMs`: 1 from the first instant, 2 from one minute on, and so on. */
export function startedMinutes(connectedAtMs: number, nowMs: number, minuteMs = MINUTE_MS): number {
  if (!Number.isFinite(connectedAtMs) || nowMs < connectedAtMs) return 0;
  return Math.floor((nowMs - connectedAtMs) / minuteMs) + 1;
}

/**
 * The stages' call rates from the database, remembered: while the database is unreachable, a stage whose rate was read
 * before keeps taking calls at that rate (one never read answers UNAVAILABLE).
 */
export function storedRates(db: Pick<Db, 'query'>): (stageId: string) => Promise<CallRate | null> {
  const repo = new CallRepo(db);
  const known = new Map<string, CallRate | null>();
  return async (stageId) => {
    try {
      const rate = await repo.rate(stageId);
      known.set(stageId, rate);
      return rate;
    } catch (err) {
      if (isDbUnavailable(err) && known.has(stageId)) return known.get(stageId)!;
      throw err;
    }
  };
}
