// The timeline: chapters, tracks and markers posted by performers, comments from listeners, and who is speaking,
// each stamped on the broadcast's programme clock (mediaTime) and mapped to the stream's PROGRAM-DATE-TIME
// (startDate). Events are stored in PostgreSQL, sent to listeners live, and published as EXT-X-DATERANGE tags.
import crypto from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { DateRange } from '../../pipelines/hls/publisher.ts';
import type { Mixer } from '../../pipelines/mixer/mixer.ts';
import type { Db } from '../db/db.ts';
import { ArchiveRepo } from '../db/archive.ts';
import { TimelineRepo, type StoredEvent } from '../db/timeline.ts';
import { WriteBehind } from '../db/writeBehind.ts';
import type { Logger } from '../logger.ts';
import { RequestError } from '../sfu/errors.ts';
import type { StageRegistry } from '../sfu/registry.ts';
import type { Stage } from '../sfu/stage.ts';
import type { PerformerEvent, TimelineEvent } from '../shared/timeline.ts';
import type { StageService } from '../stages.ts';
import { toTimelineEvent } from './files.ts';

/**
 * A performer counts as speaking at this level. The AudioLevelObserver averages the packets' dBov values over its
 * 100 ms interval, silence counting as -127: speech at a usual -15 to -30 dBov passes once it fills about half of it.
 */
export const SPEAKING_THRESHOLD_DBOV = -65;
/**
 * Where speech starts and ends relative to the first and last loud report, measured against the performers' own
 * tracks (test/timeline/timeline.test.ts, tone bursts from Chromium): it starts ~0.27 s before the first loud report
 * and ends ~0.05 s before the last one (the reports lag the audio: the browser's level and the observer's interval).
 */
const ONSET_LEAD_S = 0.27;
const END_LEAD_S = 0.05;
/** Speaking stops after this long without a loud report. */
const SPEAKING_HANGOVER_S = 0.6;
/** A comment placed at the listener's playing position may be at most this far in the past. */
const MAX_COMMENT_AGE_S = 120;

type TimelineEvents = { event: [stageId: string, event: TimelineEvent] };

interface LiveTimeline {
  broadcastId: string;
  mixer: Mixer;
  ranges: DateRange[];
  speaking: Map<string, { since: number; lastLoud: number; event: StoredEvent }>;
  /** Ends speaking intervals when their hangover passes (the observer reports silence only once). */
  timer: NodeJS.Timeout | null;
}

/** How long a broadcast's end waits for its events to reach the database; a snapshot waits less. */
const END_WAIT_MS = 15_000;
const SNAPSHOT_WAIT_MS = 2_000;

export const DATERANGE_CLASS: Record<string, string> = {
  chapter: 'com.stage-radio.chapter',
  track: 'com.stage-radio.track',
  marker: 'com.stage-radio.marker',
};

export class TimelineService extends EventEmitter<TimelineEvents> {
  readonly repo: TimelineRepo;
  readonly #archive: ArchiveRepo;
  readonly #stages: StageService;
  readonly #log: Logger;
  readonly #live = new Map<string, LiveTimeline>();
  /** Writes in flight, so a broadcast's end waits for them. */
  readonly #writes = new Set<Promise<void>>();
  /** Events not in the database yet (it is unreachable): a snapshot still includes them. */
  readonly #unwritten = new Map<string, StoredEvent>();
  readonly #writer: WriteBehind;

  constructor(args: { db: Db; stages: StageService; registry: StageRegistry; log: Logger; writes?: WriteBehind }) {
    super();
    this.repo = new TimelineRepo(args.db);
    this.#writer = args.writes ?? new WriteBehind({ db: args.db, log: args.log });
    this.#archive = new ArchiveRepo(args.db);
    this.#stages = args.stages;
    this.#log = args.log.child({ component: 'timeline' });
    args.registry.on('stageOpened', (stage) => this.#watch(stage));
  }

  /** The stage went on air: its timeline starts. */
  begin(stageId: string, broadcastId: string, mixer: Mixer): void {
    const prev = this.#live.get(stageId);
    if (prev?.timer) clearInterval(prev.timer);
    const live: LiveTimeline = { broadcastId, mixer, ranges: [], speaking: new Map(), timer: null };
    live.timer = setInterval(() => this.#endQuiet(stageId, live), 100);
    this.#live.set(stageId, live);
  }

  #endQuiet(stageId: string, live: LiveTimeline): void {
    const now = live.mixer.programmeSeconds();
    for (const [performerId, cur] of live.speaking) {
      if (now - cur.lastLoud >= SPEAKING_HANGOVER_S) this.#stopSpeaking(stageId, live, performerId, cur.lastLoud - END_LEAD_S);
    }
  }

  /** The stage went off air: open speaking intervals close, and every write is done. */
  async end(stageId: string): Promise<void> {
    const live = this.#live.get(stageId);
    if (live) {
      if (live.timer) clearInterval(live.timer);
      const now = live.mixer.programmeSeconds();
      for (const performerId of [...live.speaking.keys()]) this.#stopSpeaking(stageId, live, performerId, now);
      this.#live.delete(stageId);
    }
    await this.#settled(END_WAIT_MS);
  }

  /** Waits for the writes queued so far, at most `ms` (the database may be unreachable for longer). */
  async #settled(ms: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled([...this.#writes]),
      new Promise<void>((resolve) => (timer = setTimeout(resolve, ms))),
    ]);
    clearTimeout(timer);
  }

  /** Stops every timer (the app is closing; live stages were stopped first). Idempotent. */
  async close(): Promise<void> {
    for (const live of this.#live.values()) if (live.timer) clearInterval(live.timer);
    this.#live.clear();
    await this.#settled(END_WAIT_MS);
  }

  #store(e: StoredEvent): void {
    this.#unwritten.set(e.id, e);
    const p = this.#writer.write('timeline event', (db) => new TimelineRepo(db).insert([e])).then((written) => {
      if (this.#unwritten.get(e.id) === e) this.#unwritten.delete(e.id);
      if (!written) this.#log.error('could not store a timeline event', { eventId: e.id, type: e.type });
    });
    this.#writes.add(p);
    void p.finally(() => this.#writes.delete(p));
  }

  /** PROGRAM-DATE-TIME of programme time 0: the first segment's, or the mixer's origin before it exists. */
  #originDate(live: LiveTimeline): string {
    return live.mixer.publisher.originDate ?? new Date(live.mixer.originWallMs).toISOString();
  }

  #toPublic(live: LiveTimeline | null, e: StoredEvent, originDate: string | null = null): TimelineEvent {
    return toTimelineEvent(e, live ? this.#originDate(live) : originDate);
  }

  #requireLive(stageId: string): LiveTimeline {
    const live = this.#live.get(stageId);
    if (!live || this.#stages.liveBroadcast(stageId) !== live.broadcastId) {
      throw new RequestError('INVALID_STATE', 'the stage is not on air: events belong to a broadcast');
    }
    return live;
  }

  /**
   * A performer's chapter, track or marker, placed where the performer's audio is on the programme clock right now
   * (their slot's line: the moment they speak at the microphone reaches the mix as they post).
   */
  post(stageId: string, input: PerformerEvent, author: { kind: 'performer' | 'admin'; performerId?: string; displayName?: string }): TimelineEvent {
    const live = this.#requireLive(stageId);
    const mediaTime = live.mixer.lineSeconds(author.performerId);
    const data: StoredEvent['data'] =
      input.type === 'chapter' ? { title: input.title }
      : input.type === 'track' ? { title: input.title, ...(input.artist ? { artist: input.artist } : {}) }
      : { ...(input.label ? { label: input.label } : {}) };
    if (author.displayName) data['name'] = author.displayName;
    const e: StoredEvent = {
      id: crypto.randomUUID(),
      broadcastId: live.broadcastId,
      stageId,
      type: input.type,
      at: new Date(live.mixer.originWallMs + mediaTime * 1000),
      mediaTime,
      endMediaTime: null,
      authorKind: author.kind,
      authorId: author.performerId ?? null,
      data,
    };
    this.#store(e);
    const event = this.#toPublic(live, e);
    live.ranges.push(toDateRange(event));
    live.mixer.publisher.setDateRanges(live.ranges);
    this.emit('event', stageId, event);
    return event;
  }

  /**
   * A listener's comment, placed where their player was when they sent it (its PROGRAM-DATE-TIME), clamped to the last
   * two minutes; at the programme's live edge without one.
   */
  comment(stageId: string, input: { text: string; name: string; playingDate?: string | undefined }, listenerId: string): TimelineEvent {
    const live = this.#requireLive(stageId);
    const now = live.mixer.programmeSeconds();
    let mediaTime = now;
    if (input.playingDate) {
      const origin = Date.parse(this.#originDate(live));
      const t = (Date.parse(input.playingDate) - origin) / 1000;
      if (Number.isFinite(t)) mediaTime = Math.min(now, Math.max(now - MAX_COMMENT_AGE_S, t, 0));
    }
    const e: StoredEvent = {
      id: crypto.randomUUID(),
      broadcastId: live.broadcastId,
      stageId,
      type: 'comment',
      at: new Date(live.mixer.originWallMs + mediaTime * 1000),
      mediaTime,
      endMediaTime: null,
      authorKind: 'listener',
      authorId: listenerId,
      data: { text: input.text, name: input.name },
    };
    this.#store(e);
    const event = this.#toPublic(live, e);
    this.emit('event', stageId, event);
    return event;
  }

  /** The stage's current (or last) broadcast with its events, for a listener that subscribes. */
  async snapshot(stageId: string, limit = 500): Promise<{ broadcastId: string | null; originDate: string | null; events: TimelineEvent[] }> {
    const live = this.#live.get(stageId);
    if (live) {
      await this.#settled(SNAPSHOT_WAIT_MS);
      const events = this.#withUnwritten(live.broadcastId, await this.repo.list(live.broadcastId, limit), limit);
      return { broadcastId: live.broadcastId, originDate: this.#originDate(live), events: events.flatMap((e) => this.#expand(live, e)) };
    }
    const last = (await this.#archive.recordingsForStage(stageId))[0];
    if (!last) return { broadcastId: null, originDate: null, events: [] };
    const origin = last.originAt?.toISOString() ?? null;
    const events = await this.repo.list(last.id, limit);
    return { broadcastId: last.id, originDate: origin, events: events.flatMap((e) => this.#expand(null, e, origin)) };
  }

  /** The stored events plus those still waiting for the database (newer versions win), in programme order. */
  #withUnwritten(broadcastId: string, stored: StoredEvent[], limit: number): StoredEvent[] {
    const pending = [...this.#unwritten.values()].filter((e) => e.broadcastId === broadcastId);
    if (pending.length === 0) return stored;
    const byId = new Map(stored.map((e) => [e.id, e]));
    for (const e of pending) byId.set(e.id, e);
    return [...byId.values()].sort((a, b) => a.mediaTime - b.mediaTime).slice(-limit);
  }

  /** A stored speaking interval is two changes for a listener (start, stop); anything else is itself. */
  #expand(live: LiveTimeline | null, e: StoredEvent, origin: string | null = null): TimelineEvent[] {
    const first = this.#toPublic(live, e, origin);
    if (e.type !== 'speaking' || e.endMediaTime === null) return [first];
    const stop = this.#toPublic(live, { ...e, id: `${e.id}:end`, mediaTime: e.endMediaTime, data: { ...e.data, speaking: false } }, origin);
    return [first, stop];
  }

  /** Speaking changes from the stage's AudioLevelObserver, on the programme clock. */
  #watch(stage: Stage): void {
    stage.on('audioLevels', (levels) => {
      const live = this.#live.get(stage.id);
      if (!live) return;
      const now = live.mixer.programmeSeconds();
      const loud = new Set(levels.filter((l) => l.volume > SPEAKING_THRESHOLD_DBOV).map((l) => l.performerId));
      for (const performerId of loud) {
        const cur = live.speaking.get(performerId);
        if (cur) {
          cur.lastLoud = now;
          continue;
        }
        // The level is the average over the last interval: the speech began within it.
        const start = Math.max(0, now - ONSET_LEAD_S);
        const displayName = stage.performers.find((p) => p.id === performerId)?.displayName ?? performerId;
        const e: StoredEvent = {
          id: crypto.randomUUID(),
          broadcastId: live.broadcastId,
          stageId: stage.id,
          type: 'speaking',
          at: new Date(live.mixer.originWallMs + start * 1000),
          mediaTime: start,
          endMediaTime: null,
          authorKind: 'server',
          authorId: performerId,
          data: { performerId, displayName, speaking: true },
        };
        live.speaking.set(performerId, { since: start, lastLoud: now, event: e });
        this.emit('event', stage.id, this.#toPublic(live, e));
      }
      this.#endQuiet(stage.id, live);
    });
  }

  #stopSpeaking(stageId: string, live: LiveTimeline, performerId: string, end: number): void {
    const cur = live.speaking.get(performerId);
    if (!cur) return;
    live.speaking.delete(performerId);
    const interval: StoredEvent = { ...cur.event, endMediaTime: Math.max(cur.since, end) };
    this.#store(interval);
    this.emit('event', stageId, this.#toPublic(live, { ...cur.event, id: `${cur.event.id}:end`, mediaTime: interval.endMediaTime!, data: { ...cur.event.data, speaking: false } }));
  }
}

export function toDateRange(e: TimelineEvent): DateRange {
  const attributes: Record<string, string> = {};
  if (e.data.title) attributes['X-TITLE'] = e.data.title;
  if (e.data.artist) attributes['X-ARTIST'] = e.data.artist;
  if (e.data.label) attributes['X-LABEL'] = e.data.label;
  if (e.data.name) attributes['X-BY'] = e.data.name;
  return { id: e.id, class: DATERANGE_CLASS[e.type] ?? `com.stage-radio.${e.type}`, startDate: e.startDate!, attributes, ...(e.type === 'marker' ? { durationSeconds: 0 } : {}) };
}
