// A broadcast's live timeline: chapters, tracks and markers posted by performers, listeners' comments, and who is
// speaking, each stamped on the broadcast's programme clock and published three ways: to the database (journaled
// write-behind), to listeners (the app's timeline bus), and into the live playlist as EXT-X-DATERANGE tags.
// A child of its Broadcast: made when it goes on air, closed (open speaking intervals ended, timer stopped) with it.
import crypto from 'node:crypto';
import type { DateRange } from '../../pipelines/hls/dateRange.ts';
import type { StoredEvent } from '../db/timeline.ts';
import { TimelineRepo } from '../db/timeline.ts';
import { toStoredEventJson } from '../db/writes.ts';
import type { Logger } from '../logger.ts';
import type { PerformerEvent, TimelineEvent, TimelineSnapshot } from '../shared/timeline.ts';
import { toDateRange, toTimelineEvent } from '../timeline/files.ts';
import type { Writes } from './services.ts';

/**
 * A performer counts as speaking at this level. The AudioLevelObserver averages the packets' dBov values over its
 * 100 ms interval, silence counting as -127: speech at a usual -15 to -30 dBov passes once it fills about half of it.
 */
export const SPEAKING_THRESHOLD_DBOV = -65;
/**
 * Where speech starts and ends relative to the first and last loud report (the reports lag the audio: the browser's
 * level and the observer's interval), measured against the performers' own tracks. Speech starts ~0.27 s before the
 * first loud report: fitted on Chromium tone bursts (test/timeline/timeline.test.ts), it holds on espeak-ng speech
 * (test/timeline/speech.test.ts: median onset error per voice -0.01 to +0.05 s, 7 runs).
 * Speech ends ~0.08 s after the last loud report. The tones' fit (0.05 s before it) ended intervals a median 0.13 s
 * early on speech (why is not pinned down: a tone stops at full level, a phrase fades, its last 100 ms ~10 dB below
 * its speech level). -0.08 was fitted on the en and de voices of 4 runs (68 phrase ends) and checked on the held-out
 * en-us and fr voices: 0.137 s early in those runs, 0.011 s in 3 later ones (en and de then: 0.016 s).
 */
export const ONSET_LEAD_S = 0.27;
export const END_LEAD_S = -0.08;
/** Speaking stops after this long without a loud report. */
export const SPEAKING_HANGOVER_S = 0.6;
/** A comment placed at the listener's playing position may be at most this far in the past. */
const MAX_COMMENT_AGE_S = 120;
/** How long closing waits for this timeline's writes to reach the database (they stay journaled either way). */
const CLOSE_WAIT_MS = 5_000;

/** The programme clock and the playlist this timeline writes into (the broadcast's mixer). */
export interface TimelineClock {
  readonly originWallMs: number;
  programmeSeconds(): number;
  lineSeconds(performerId?: string): number;
  /** Where a performer's newest audio sits on the programme clock (their slot's line, late when their packets are). */
  newestAudioSeconds(performerId: string): number;
  readonly publisher: { readonly originDate: string | null; setDateRanges(ranges: readonly DateRange[]): void };
}

export interface LiveTimelineArgs {
  broadcastId: string;
  stageId: string;
  clock: TimelineClock;
  writes: Writes;
  /** Every event as it happens (the app's timeline bus: listeners, admin). */
  publish: (event: TimelineEvent) => void;
  displayName: (performerId: string) => string;
  log: Logger;
}

interface Speaking {
  since: number;
  lastLoud: number;
  event: StoredEvent;
}

export class LiveTimeline {
  readonly broadcastId: string;
  readonly #a: LiveTimelineArgs;
  readonly #ranges: DateRange[] = [];
  readonly #speaking = new Map<string, Speaking>();
  /** Calls on air: their open interval. */
  readonly #calls = new Map<string, StoredEvent>();
  /** Events not in the database yet (it is unreachable): a snapshot still includes them. */
  readonly #unwritten = new Map<string, StoredEvent>();
  readonly #writes = new Set<Promise<boolean>>();
  /** Ends speaking intervals when their hangover passes (the observer reports silence only once). */
  #timer: NodeJS.Timeout | null;
  #closed = false;

  constructor(args: LiveTimelineArgs) {
    this.broadcastId = args.broadcastId;
    this.#a = args;
    this.#timer = setInterval(() => this.#endQuiet(), 100);
  }

  /** PROGRAM-DATE-TIME of programme time 0: the first segment's, or the mixer's origin before it exists. */
  get originDate(): string {
    const { clock } = this.#a;
    return clock.publisher.originDate ?? new Date(clock.originWallMs).toISOString();
  }

  #store(e: StoredEvent): void {
    this.#unwritten.set(e.id, e);
    const p = this.#a.writes.write('timeline.event', toStoredEventJson(e)).then((written) => {
      if (this.#unwritten.get(e.id) === e) this.#unwritten.delete(e.id);
      if (!written) this.#a.log.error('could not store a timeline event', { eventId: e.id, type: e.type });
      return written;
    });
    this.#writes.add(p);
    void p.finally(() => this.#writes.delete(p));
  }

  #newEvent(type: StoredEvent['type'], mediaTime: number, author: Pick<StoredEvent, 'authorKind' | 'authorId'>, data: StoredEvent['data']): StoredEvent {
    return {
      id: crypto.randomUUID(),
      broadcastId: this.broadcastId,
      stageId: this.#a.stageId,
      type,
      at: new Date(this.#a.clock.originWallMs + mediaTime * 1000),
      mediaTime,
      endMediaTime: null,
      ...author,
      data,
    };
  }

  #assertOpen(): void {
    if (this.#closed) throw new Error('the broadcast has ended');
  }

  /**
   * A performer's chapter, track or marker, placed where the performer's audio is on the programme clock right now
   * (their slot's line: the moment they speak at the microphone reaches the mix as they post).
   */
  post(input: PerformerEvent, author: { kind: 'performer' | 'admin'; performerId?: string; displayName?: string }): TimelineEvent {
    this.#assertOpen();
    const mediaTime = this.#a.clock.lineSeconds(author.performerId);
    const data: StoredEvent['data'] =
      input.type === 'chapter' ? { title: input.title }
      : input.type === 'track' ? { title: input.title, ...(input.artist ? { artist: input.artist } : {}) }
      : { ...(input.label ? { label: input.label } : {}) };
    if (author.displayName) data['name'] = author.displayName;
    const e = this.#newEvent(input.type, mediaTime, { authorKind: author.kind, authorId: author.performerId ?? null }, data);
    this.#store(e);
    const event = toTimelineEvent(e, this.originDate);
    this.#ranges.push(toDateRange(event));
    this.#a.clock.publisher.setDateRanges(this.#ranges);
    this.#a.publish(event);
    return event;
  }

  /**
   * A listener's comment, placed where their player was when they sent it (its PROGRAM-DATE-TIME), clamped to the last
   * two minutes; at the programme's live edge without one.
   */
  comment(input: { text: string; name: string; playingDate?: string | undefined }, listenerId: string): TimelineEvent {
    this.#assertOpen();
    const now = this.#a.clock.programmeSeconds();
    let mediaTime = now;
    if (input.playingDate) {
      const t = (Date.parse(input.playingDate) - Date.parse(this.originDate)) / 1000;
      if (Number.isFinite(t)) mediaTime = Math.min(now, Math.max(now - MAX_COMMENT_AGE_S, t, 0));
    }
    const e = this.#newEvent('comment', mediaTime, { authorKind: 'listener', authorId: listenerId }, { text: input.text, name: input.name });
    this.#store(e);
    const event = toTimelineEvent(e, this.originDate);
    this.#a.publish(event);
    return event;
  }

  /**
   * Speaking changes from the stage's AudioLevelObserver (its 100 ms reports), on the programme clock. A report is
   * placed where the performer's newest audio sits in the mix (their slot's line), not at the wall clock: a performer
   * whose packets arrive late (a starved browser) is heard, and recorded, that much later.
   */
  levels(levels: readonly { performerId: string; volume: number }[]): void {
    if (this.#closed) return;
    for (const { performerId } of levels.filter((l) => l.volume > SPEAKING_THRESHOLD_DBOV)) {
      const now = this.#a.clock.newestAudioSeconds(performerId);
      const cur = this.#speaking.get(performerId);
      if (cur) {
        cur.lastLoud = now;
        continue;
      }
      // The level is the average over the last interval: the speech began within it.
      const start = Math.max(0, now - ONSET_LEAD_S);
      const displayName = this.#a.displayName(performerId);
      const e = this.#newEvent('speaking', start, { authorKind: 'server', authorId: performerId }, { performerId, displayName, speaking: true });
      this.#speaking.set(performerId, { since: start, lastLoud: now, event: e });
      this.#a.publish(toTimelineEvent(e, this.originDate));
    }
    this.#endQuiet();
  }

  #endQuiet(): void {
    for (const [performerId, cur] of this.#speaking) {
      const now = this.#a.clock.newestAudioSeconds(performerId);
      if (now - cur.lastLoud >= SPEAKING_HANGOVER_S) this.#stopSpeaking(performerId, cur.lastLoud - END_LEAD_S);
    }
  }

  #stopSpeaking(performerId: string, end: number): void {
    const cur = this.#speaking.get(performerId);
    if (!cur) return;
    this.#speaking.delete(performerId);
    const interval: StoredEvent = { ...cur.event, endMediaTime: Math.max(cur.since, end) };
    this.#store(interval);
    const stop = { ...cur.event, id: `${cur.event.id}:end`, mediaTime: interval.endMediaTime!, data: { ...cur.event.data, speaking: false } };
    this.#a.publish(toTimelineEvent(stop, this.originDate));
  }

  /**
   * A caller is on air (their first RTP reached the server): an open `call` interval from where their audio is on the
   * programme clock, with a DATERANGE in the live playlist. Returns its id for callEnded().
   */
  callStarted(call: { callId: string; name: string; topic: string | null }): string | null {
    if (this.#closed) return null;
    const start = this.#a.clock.lineSeconds(call.callId);
    const data: StoredEvent['data'] = { callId: call.callId, performerId: call.callId, name: call.name, ...(call.topic ? { title: call.topic } : {}) };
    const e = this.#newEvent('call', start, { authorKind: 'server', authorId: call.callId }, data);
    this.#calls.set(e.id, e);
    this.#store(e);
    const event = toTimelineEvent(e, this.originDate);
    this.#ranges.push(toDateRange(event));
    this.#a.clock.publisher.setDateRanges(this.#ranges);
    this.#a.publish(event);
    return e.id;
  }

  /** The call's interval ends where the caller's audio is now (or at the programme's end when the broadcast closes). */
  callEnded(eventId: string, at?: number): void {
    const open = this.#calls.get(eventId);
    if (!open) return;
    this.#calls.delete(eventId);
    const end = Math.max(open.mediaTime, at ?? this.#a.clock.lineSeconds(String(open.data['callId'])));
    const interval: StoredEvent = { ...open, endMediaTime: end };
    this.#store(interval);
    const i = this.#ranges.findIndex((r) => r.id === open.id);
    if (i >= 0) {
      // The same ID with the same attributes and now a DURATION (RFC 8216 §4.4.5.1: a later tag may add attributes).
      this.#ranges[i] = { ...this.#ranges[i]!, durationSeconds: Number((end - open.mediaTime).toFixed(3)) };
      this.#a.clock.publisher.setDateRanges(this.#ranges);
    }
    this.#a.publish(toTimelineEvent({ ...open, id: `${open.id}:end`, mediaTime: end, data: { ...open.data, ended: true } }, this.originDate));
  }

  /** The broadcast's events so far (the stored ones and those still waiting for the database), for a subscriber. */
  async snapshot(repo: TimelineRepo, limit = 500): Promise<TimelineSnapshot> {
    await this.#settled(2_000);
    const stored = await repo.list(this.broadcastId, limit);
    const byId = new Map(stored.map((e) => [e.id, e]));
    for (const e of this.#unwritten.values()) byId.set(e.id, e);
    const events = [...byId.values()].sort((a, b) => a.mediaTime - b.mediaTime).slice(-limit);
    return { broadcastId: this.broadcastId, originDate: this.originDate, events: events.flatMap((e) => expandEvent(e, this.originDate)) };
  }

  async #settled(ms: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.allSettled([...this.#writes]), new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
    clearTimeout(timer);
  }

  /** Off air: open speaking and call intervals end now, the timer stops; waits (a while) for its writes. Idempotent. */
  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      if (this.#timer) clearInterval(this.#timer);
      this.#timer = null;
      const now = this.#a.clock.programmeSeconds();
      for (const performerId of [...this.#speaking.keys()]) this.#stopSpeaking(performerId, now);
      for (const id of [...this.#calls.keys()]) this.callEnded(id, now);
    }
    await this.#settled(CLOSE_WAIT_MS);
  }
}

/** A stored speaking or call interval is two changes for a listener (start, end); anything else is itself. */
export function expandEvent(e: StoredEvent, originDate: string | null): TimelineEvent[] {
  const first = toTimelineEvent(e, originDate);
  if ((e.type !== 'speaking' && e.type !== 'call') || e.endMediaTime === null) return [first];
  const end: StoredEvent['data'] = e.type === 'speaking' ? { speaking: false } : { ended: true };
  return [first, toTimelineEvent({ ...e, id: `${e.id}:end`, mediaTime: e.endMediaTime, data: { ...e.data, ...end } }, originDate)];
}
