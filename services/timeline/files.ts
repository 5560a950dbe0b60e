// The archive's timeline files: timeline.json (every event and each performer's speaking intervals) and
// chapters.vtt (WebVTT chapters), both on the recording's clock.
import type { DateRange } from '../../pipelines/hls/dateRange.ts';
import type { StoredEvent } from '../db/timeline.ts';
import type { TimelineEvent } from '../shared/timeline.ts';

/** The CLASS of each kind of event's EXT-X-DATERANGE (live playlist and VOD). */
export const DATERANGE_CLASS: Record<string, string> = {
  chapter: 'com.stage-radio.chapter',
  track: 'com.stage-radio.track',
  marker: 'com.stage-radio.marker',
  call: 'com.stage-radio.call',
};

export function toDateRange(e: TimelineEvent): DateRange {
  const attributes: Record<string, string> = {};
  if (e.data.title) attributes['X-TITLE'] = e.data.title;
  if (e.data.artist) attributes['X-ARTIST'] = e.data.artist;
  if (e.data.label) attributes['X-LABEL'] = e.data.label;
  if (e.data.name) attributes['X-BY'] = e.data.name;
  return { id: e.id, class: DATERANGE_CLASS[e.type] ?? `com.stage-radio.${e.type}`, startDate: e.startDate!, attributes, ...(e.type === 'marker' ? { durationSeconds: 0 } : {}) };
}

export interface TimelineFile {
  version: 1;
  broadcastId: string;
  stageId: string;
  /** PROGRAM-DATE-TIME of programme time 0 (the first segment's), or the mixer's origin when unknown. */
  originDate: string | null;
  durationSeconds: number;
  /** Chapters, tracks, markers and comments in programme order. */
  events: TimelineEvent[];
  /** Who spoke when: [start, end] seconds on the programme clock. */
  speaking: { performerId: string; displayName: string; intervals: [number, number][] }[];
  /** Callers on air (call-in): seconds on the programme clock; the caller's track is `track:<callId>`. */
  calls: { callId: string; name: string; topic: string | null; start: number; end: number }[];
}

const r3 = (x: number) => Number(x.toFixed(3));

export function toTimelineEvent(e: StoredEvent, originDate: string | null): TimelineEvent {
  return {
    id: e.id,
    type: e.type,
    at: e.at.toISOString(),
    mediaTime: r3(e.mediaTime),
    startDate: originDate ? new Date(Date.parse(originDate) + Math.round(e.mediaTime * 1000)).toISOString() : null,
    data: e.data,
  };
}

export function buildTimelineFile(args: {
  broadcastId: string;
  stageId: string;
  originDate: string | null;
  durationSeconds: number;
  events: readonly StoredEvent[];
}): TimelineFile {
  const sorted = [...args.events].sort((a, b) => a.mediaTime - b.mediaTime || a.id.localeCompare(b.id));
  const speaking = new Map<string, { performerId: string; displayName: string; intervals: [number, number][] }>();
  for (const e of sorted) {
    if (e.type !== 'speaking') continue;
    const performerId = String(e.data['performerId'] ?? e.authorId ?? '');
    const entry = speaking.get(performerId) ?? { performerId, displayName: String(e.data['displayName'] ?? performerId), intervals: [] };
    const end = Math.min(args.durationSeconds, e.endMediaTime ?? args.durationSeconds);
    if (end > e.mediaTime) entry.intervals.push([r3(e.mediaTime), r3(end)]);
    speaking.set(performerId, entry);
  }
  const calls = sorted
    .filter((e) => e.type === 'call')
    .map((e) => ({
      callId: String(e.data['callId'] ?? e.authorId ?? ''),
      name: String(e.data['name'] ?? ''),
      topic: typeof e.data['title'] === 'string' ? e.data['title'] : null,
      start: r3(e.mediaTime),
      end: r3(Math.min(args.durationSeconds, e.endMediaTime ?? args.durationSeconds)),
    }));
  return {
    version: 1,
    broadcastId: args.broadcastId,
    stageId: args.stageId,
    originDate: args.originDate,
    durationSeconds: r3(args.durationSeconds),
    events: sorted.filter((e) => e.type !== 'speaking' && e.type !== 'call').map((e) => toTimelineEvent(e, args.originDate)),
    speaking: [...speaking.values()],
    calls,
  };
}

/** hh:mm:ss.ttt */
export function vttTime(seconds: number): string {
  const ms = Math.max(0, Math.round(seconds * 1000));
  const h = Math.floor(ms / 3_600_000);
  const m = Math.floor((ms % 3_600_000) / 60_000);
  const s = Math.floor((ms % 60_000) / 1000);
  const t = ms % 1000;
  return `${String(h).padStart(2, '0')}:${String(m).padStart(2, '0')}:${String(s).padStart(2, '0')}.${String(t).padStart(3, '0')}`;
}

/** Cue text: no blank lines and no "-->" (either would end or break the cue); & and < escaped as WebVTT requires. */
function cueText(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/-->/g, '--&gt;').replace(/\s*\n\s*/g, ' ');
}

/** WebVTT chapters: each chapter from its start to the next one's (or the end of the recording). */
export function buildChaptersVtt(events: readonly StoredEvent[], durationSeconds: number): string {
  const chapters = events.filter((e) => e.type === 'chapter').sort((a, b) => a.mediaTime - b.mediaTime);
  const out = ['WEBVTT', ''];
  if (chapters.length === 0) out.push('NOTE no chapters were marked in this broadcast', '');
  let n = 0;
  chapters.forEach((c, i) => {
    const start = Math.min(Math.max(0, c.mediaTime), durationSeconds);
    const end = Math.min(chapters[i + 1]?.mediaTime ?? durationSeconds, durationSeconds);
    if (end - start < 0.001) return;
    out.push(String(++n), `${vttTime(start)} --> ${vttTime(end)}`, cueText(String(c.data['title'] ?? 'Chapter')), '');
  });
  return out.join('\n');
}
