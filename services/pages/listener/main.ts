// The listener page: plays a stage's HLS and shows whether it is on air, and the broadcast's timeline (chapter, track,
// who is speaking, comments) in step with what the player plays. Public: no key.
// Bundled by esbuild for the browser. For automation: document.body.dataset.state = offair|loading|playing|ended|error
// ("offair": not playing, because nothing is on air or the listener has not pressed Play or has stopped),
// dataset.engine = hls.js|native, dataset.chapter = the current chapter's title ('' when none), and window.listenerDebug.
import HlsUmd from 'hls.js/dist/hls.js';
import type HlsClass from 'hls.js';
import type { DateRange, ErrorData, LevelDetails } from 'hls.js';
import { io } from 'socket.io-client';
import type { ListenContract } from '../../shared/listen.ts';
import type { StageStatus } from '../../shared/model.ts';
import type { StageView } from '../../shared/rest.ts';
import type { TimelineEvent, TimelineEventType } from '../../shared/timeline.ts';
import { requester, type ContractSocket } from '../client.ts';
import { nextNode, rememberNodes, samePageOn, takeCarriedNodes } from '../nodes.ts';
import { setupCallIn } from './call.ts';
import { setupLanguage, t, type Key } from '../i18n/index.ts';

// The page in the reader's language (en, ja) before anything else is shown.
setupLanguage();

// The UMD build carries hls.js's transmuxer worker inline (started from a blob: URL, hence the CSP's worker-src blob:);
// the ESM build would need the worker as a separate file. Its typings are those of the ESM build, hence the cast.
const Hls = HlsUmd as unknown as typeof HlsClass;

type PlayerState = 'offair' | 'loading' | 'playing' | 'ended' | 'error';

/** `?lowLatency=0`: play the live playlist as a classic one (whole segments, three target durations behind). */
const LOW_LATENCY = new URLSearchParams(location.search).get('lowLatency') !== '0';
document.body.dataset['lowLatency'] = String(LOW_LATENCY);

const POLL_MS = 5_000;
const RETRY_MS = 2_000;
/** After the stage has ended, a stream that makes no progress for this long is over even without an end tag. */
const ENDED_STALL_MS = 10_000;
/** Otherwise, a stream stuck this long (a stale playlist after the mixer restarted, say) is loaded afresh. */
const STALL_MS = 15_000;
const MAX_MEDIA_RECOVERIES = 2;

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const ui = {
  title: $<HTMLHeadingElement>('stage-title'),
  badge: $<HTMLSpanElement>('badge'),
  play: $<HTMLButtonElement>('play'),
  stop: $<HTMLButtonElement>('stop'),
  volume: $<HTMLInputElement>('volume'),
  status: $<HTMLParagraphElement>('status'),
  error: $<HTMLParagraphElement>('error'),
  audio: $<HTMLAudioElement>('player'),
  chapter: $<HTMLElement>('chapter'),
  track: $<HTMLElement>('track'),
  speaking: $<HTMLElement>('speaking'),
  comments: $<HTMLOListElement>('comments'),
  commentForm: $<HTMLFormElement>('comment-form'),
  commentName: $<HTMLInputElement>('comment-name'),
  commentText: $<HTMLInputElement>('comment-text'),
  commentSend: $<HTMLButtonElement>('comment-send'),
  commentError: $<HTMLParagraphElement>('comment-error'),
  behind: $<HTMLParagraphElement>('behind'),
};
const audio = ui.audio;

const stageId = decodeURIComponent(location.pathname.split('/').filter(Boolean)[1] ?? '');

// hls.js whenever Media Source Extensions work, even where the browser plays HLS itself (it behaves the same
// everywhere and feeds WebAudio reliably); the browser's own HLS (Safari before ManagedMediaSource) otherwise.
const engine: 'hls.js' | 'native' | null = Hls.isSupported()
  ? 'hls.js'
  : audio.canPlayType('application/vnd.apple.mpegurl') !== ''
    ? 'native'
    : null;
if (engine) document.body.dataset['engine'] = engine;

let state: PlayerState = 'loading';
let stage: StageView | null = null;
/** True while the listener wants sound. The page tries to play on its own at first; a refused autoplay clears it. */
let wantPlay = true;
let hls: HlsClass | null = null;
/** An engine holds the stream (loading, playing or buffering). */
let attached = false;
let probing = false;
let retryTimer: number | null = null;
let pollTimer: number | null = null;
let playSeq = 0;
let mediaRecoveries = 0;
let lastTime = 0;
let lastProgressAt = 0;

const BADGE: Record<StageStatus, Key> = { live: 'status.live', idle: 'status.idle', ended: 'status.ended' };

function setState(next: PlayerState, status: string): void {
  state = next;
  document.body.dataset['state'] = next;
  if (ui.status.textContent !== status) ui.status.textContent = status; // a live region: no repeats
  if (next !== 'error') ui.error.textContent = '';
  const over = next === 'ended' || next === 'error';
  ui.play.disabled = over || next === 'playing';
  ui.stop.disabled = over || !(wantPlay || attached);
}

function fail(message: string): void {
  stopEverything();
  socket?.disconnect();
  ui.error.textContent = message;
  setState('error', '');
}

function finish(): void {
  stopEverything();
  setState('ended', t('listener.ended'));
}

function stopEverything(): void {
  wantPlay = false;
  detach();
  if (retryTimer !== null) clearTimeout(retryTimer);
  retryTimer = null;
  if (pollTimer !== null) clearTimeout(pollTimer);
  pollTimer = null;
}

function showStage(s: StageView): void {
  ui.title.textContent = s.title;
  document.title = `${s.title} · listen`;
  ui.badge.textContent = t(BADGE[s.status]);
  ui.badge.dataset['status'] = s.status;
}

// --- the audio graph: what the page plays, for listenerDebug.spectrum() ---

let audioCtx: AudioContext | null = null;
let analyser: AnalyserNode | null = null;
let gain: GainNode | null = null;

/**
 * Routes the element through an AnalyserNode (before the volume) once the AudioContext runs (an element routed into a
 * suspended context would be silent). Only for hls.js: Safari's own HLS gives a MediaElementAudioSourceNode silence.
 * Once routed, the element's own volume no longer applies everywhere (Chromium ignores it), so a GainNode does it.
 */
function connectGraph(): void {
  if (engine !== 'hls.js' || analyser) return;
  audioCtx ??= new AudioContext();
  const ctx = audioCtx;
  if (ctx.state !== 'running') {
    ctx.onstatechange = () => {
      if (ctx.state === 'running') connectGraph();
    };
    void ctx.resume().catch(() => undefined);
    return;
  }
  ctx.onstatechange = null;
  const a = ctx.createAnalyser();
  a.fftSize = 8192;
  const g = ctx.createGain();
  ctx.createMediaElementSource(audio).connect(a);
  a.connect(g);
  g.connect(ctx.destination);
  analyser = a;
  gain = g;
  applyVolume();
}

function applyVolume(): void {
  const v = ui.volume.valueAsNumber;
  if (gain) {
    audio.volume = 1;
    gain.gain.value = v;
  } else {
    audio.volume = v;
  }
}

// --- playback ---

/** Whether a live playlist is there. One with an end tag is a finished run: nothing to join. */
async function livePlaylistExists(url: string): Promise<boolean> {
  try {
    const res = await fetch(url, { cache: 'no-store' });
    if (!res.ok) return false;
    const text = await res.text();
    return text.startsWith('#EXTM3U') && !/^#EXT-X-ENDLIST\b/m.test(text);
  } catch {
    return false;
  }
}

/** Looks for the stream and plays it. A stage that is idle (not yet live) but has a playlist is played too. */
async function start(): Promise<void> {
  if (!stage || !engine || attached || probing || callIn.onAir()) return;
  probing = true;
  if (stage.status === 'live') setState('loading', t('listener.connecting'));
  const found = await livePlaylistExists(stage.hlsUrl);
  probing = false;
  if (callIn.onAir()) return; // a call took over meanwhile: the stream stays off
  if (!wantPlay || attached || !stage || stage.status === 'ended') return update();
  if (!found) {
    // Live but no playlist yet: the mix is starting, look again soon. Idle: the next status poll looks again.
    if (stage.status === 'live') retrySoon(t('listener.waitingStream'));
    else setState('offair', t('listener.nothingOnAir'));
    return;
  }
  setState('loading', t('listener.loading'));
  attach(stage.hlsUrl);
  requestPlay();
}

function attach(url: string): void {
  attached = true;
  mediaRecoveries = 0;
  lastProgressAt = Date.now();
  if (engine === 'hls.js') {
    // hls.js's defaults otherwise: lowLatencyMode is on, so on an LL-HLS playlist it starts PART-HOLD-BACK behind the
    // live edge and loads parts. Someone who fell behind (a stall) drifts back at up to 5 % faster, pitch preserved
    // (the media element's default), instead of staying behind for good.
    const h = new Hls({ enableWorker: true, backBufferLength: 30, maxLiveSyncPlaybackRate: 1.05, lowLatencyMode: LOW_LATENCY });
    hls = h;
    h.on(Hls.Events.ERROR, (_event, data) => onHlsError(h, data));
    // The playlist's EXT-X-DATERANGE tags: the timeline as the stream itself carries it.
    h.on(Hls.Events.LEVEL_LOADED, (_event, data) => onLevelDetails(data.details));
    h.on(Hls.Events.LEVEL_UPDATED, (_event, data) => onLevelDetails(data.details));
    h.attachMedia(audio);
    h.loadSource(url);
  } else {
    audio.src = url;
  }
}

function detach(): void {
  attached = false;
  playSeq++;
  if (hls) {
    hls.destroy();
    hls = null;
  } else if (audio.hasAttribute('src')) {
    audio.removeAttribute('src');
    audio.load();
  }
}

function requestPlay(): void {
  const seq = ++playSeq;
  audio.play().then(
    () => connectGraph(),
    (err: unknown) => {
      if (seq !== playSeq) return; // superseded, or interrupted by a detach
      if (err instanceof DOMException && err.name === 'NotAllowedError') {
        // Autoplay refused: wait for the Play button rather than keep loading a stream nobody hears.
        wantPlay = false;
        detach();
        setState('offair', stage?.status === 'live' ? t('listener.onAirPressPlay') : t('listener.pressPlay'));
      }
    },
  );
}

/** The stream broke or ran out. */
function lost(message: string): void {
  detach();
  if (stage?.status === 'ended') return finish();
  if (wantPlay) retrySoon(message);
  else update();
}

function retrySoon(message: string): void {
  setState('loading', message);
  if (retryTimer !== null) return;
  retryTimer = window.setTimeout(() => {
    retryTimer = null;
    if (wantPlay) void start();
  }, RETRY_MS);
}

function onHlsError(h: HlsClass, data: ErrorData): void {
  if (h !== hls || !data.fatal) return;
  if (data.type === Hls.ErrorTypes.MEDIA_ERROR && mediaRecoveries < MAX_MEDIA_RECOVERIES) {
    mediaRecoveries++;
    h.recoverMediaError();
    return;
  }
  lost(data.type === Hls.ErrorTypes.NETWORK_ERROR ? t('listener.unreachable') : t('listener.interrupted'));
}

/** Brings the player in line with the stage's status and the listener's wish. */
function update(): void {
  if (!stage || state === 'error' || state === 'ended') return;
  // On a call the show comes through the call; the stream comes back when it ends.
  if (callIn.onAir()) return;
  if (stage.status === 'ended') {
    // A stream still playing runs to its end (its end tag, or ENDED_STALL_MS without progress); otherwise it is over.
    if (!attached) finish();
    return;
  }
  if (attached || probing || retryTimer !== null) return;
  if (wantPlay) void start();
  else setState('offair', stage.status === 'live' ? t('listener.onAirPressPlay') : t('listener.offAir'));
}

/** Polls that must fail in a row (a second apart) before the page tries another node of the cluster. */
const FAILOVER_AFTER = 2;
let unreachable = 0;
{
  // Nodes the page came through knew of: kept until this node's own subscribe answers with its list.
  const params = new URLSearchParams(location.search);
  if (takeCarriedNodes(stageId, params)) {
    const rest = params.toString();
    history.replaceState(null, '', `${location.pathname}${rest ? `?${rest}` : ''}${location.hash}`);
  }
}

/** Cluster mode: this node stopped answering; the page reopens itself on another one it knows of (none: false). */
function failOver(): boolean {
  const found = nextNode(stageId);
  const target = found && samePageOn(found.next);
  if (!found || !target) return false;
  if (found.rest.length > 0) target.searchParams.set('nodes', found.rest.join(' '));
  stopEverything();
  ui.status.textContent = t('listener.movingNode');
  location.replace(target.toString());
  return true;
}

async function poll(): Promise<void> {
  pollTimer = null;
  try {
    const res = await fetch(`/api/stages/${encodeURIComponent(stageId)}`, { cache: 'no-store' });
    if (res.status === 404 || res.status === 400) return fail(t('listener.noStage'));
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const view = (await res.json()) as StageView;
    unreachable = 0;
    stage = view;
    showStage(view);
    update();
  } catch {
    unreachable++;
    if (unreachable >= FAILOVER_AFTER && navigator.onLine && failOver()) return;
    if (!stage) ui.status.textContent = t('listener.noServer');
  }
  // After a failure, sooner: a node that stopped answering is left within seconds (cluster mode).
  if (state !== 'error' && state !== 'ended') pollTimer = window.setTimeout(() => void poll(), unreachable > 0 ? 1_000 : POLL_MS);
}

audio.addEventListener('playing', () => {
  if (!attached) return;
  mediaRecoveries = 0;
  setState('playing', t('listener.playing'));
});
audio.addEventListener('waiting', () => {
  if (attached && wantPlay) setState('loading', t('listener.buffering'));
});
audio.addEventListener('timeupdate', () => {
  if (audio.currentTime !== lastTime) {
    lastTime = audio.currentTime;
    lastProgressAt = Date.now();
  }
});
audio.addEventListener('ended', () => {
  if (attached) lost(t('listener.stopped'));
});
audio.addEventListener('error', () => {
  // hls.js reports its own errors; this is the browser's own HLS failing.
  if (attached && engine === 'native') lost(t('listener.unreachable'));
});

window.setInterval(() => {
  if (!attached) return;
  const stuckMs = Date.now() - lastProgressAt;
  if (stage?.status === 'ended' && stuckMs > ENDED_STALL_MS) finish();
  else if (stuckMs > STALL_MS) lost(t('listener.stalled'));
}, 1_000);

ui.play.addEventListener('click', () => {
  wantPlay = true;
  // Inside the click: lets the AudioContext start, and blesses the element for the play() that follows the
  // playlist check (Safari wants the first play() of an element within a gesture).
  connectGraph();
  if (attached) return requestPlay();
  audio.play().catch(() => undefined);
  if (!stage) return;
  if (stage.status === 'ended') return finish();
  if (retryTimer === null && !probing) void start();
});
ui.stop.addEventListener('click', () => {
  wantPlay = false;
  if (retryTimer !== null) clearTimeout(retryTimer);
  retryTimer = null;
  detach();
  setState('offair', t('listener.stoppedByYou'));
});

const savedVolume = Number(localStorage.getItem('listenerVolume') ?? '1');
ui.volume.valueAsNumber = Number.isFinite(savedVolume) ? Math.min(1, Math.max(0, savedVolume)) : 1;
applyVolume();
ui.volume.addEventListener('input', () => {
  applyVolume();
  localStorage.setItem('listenerVolume', String(ui.volume.valueAsNumber));
});

// --- the timeline: scheduled against what the player plays ---

type EventSource = 'socket' | 'hls';

interface KnownEvent {
  id: string;
  type: TimelineEventType;
  /** From the server (Socket.IO); from the playlist's DATERANGE alone until the server's copy arrives. */
  event: TimelineEvent;
  /** When it plays: the stream's PROGRAM-DATE-TIME (epoch ms), or null while unknown. */
  startMs: number | null;
  /** Arrival order, to break ties between events with the same start. */
  seq: number;
  sources: EventSource[];
  arrivedAtMs: number;
  arrivedBySource: Partial<Record<EventSource, number>>;
  shownAtMs: number | null;
  shownAtPlayingDateMs: number | null;
}

const TICK_MS = 100;
const MAX_COMMENTS = 50;
const DATERANGE_TYPES: Record<string, TimelineEventType> = {
  'com.stage-radio.chapter': 'chapter',
  'com.stage-radio.track': 'track',
  'com.stage-radio.marker': 'marker',
};

const events = new Map<string, KnownEvent>();
/** The events with a known start, by start then arrival; rebuilt when events change. */
let ordered: KnownEvent[] = [];
let orderDirty = false;
let eventSeq = 0;
let broadcastId: string | null = null;
let originMs: number | null = null;
/** The last playing position seen: the timeline stays where the player stopped. */
let lastPlayingMs: number | null = null;

interface TimelineView {
  chapter: KnownEvent | null;
  track: KnownEvent | null;
  speaking: string[];
  comments: KnownEvent[];
}
let view: TimelineView = { chapter: null, track: null, speaking: [], comments: [] };
let shownCommentsKey = '';

function parseMs(iso: string | null | undefined): number | null {
  if (!iso) return null;
  const ms = Date.parse(iso);
  return Number.isFinite(ms) ? ms : null;
}

/** Where the event plays: its startDate, or the broadcast's origin + its programme time. */
function startOf(e: TimelineEvent): number | null {
  return parseMs(e.startDate) ?? (originMs !== null && Number.isFinite(e.mediaTime) ? originMs + e.mediaTime * 1000 : null);
}

function recordEvent(e: TimelineEvent, source: EventSource, startMs: number | null): void {
  const now = Date.now();
  const known = events.get(e.id);
  if (!known) {
    events.set(e.id, {
      id: e.id,
      type: e.type,
      event: e,
      startMs,
      seq: eventSeq++,
      sources: [source],
      arrivedAtMs: now,
      arrivedBySource: { [source]: now },
      shownAtMs: null,
      shownAtPlayingDateMs: null,
    });
    orderDirty = true;
    return;
  }
  if (!known.sources.includes(source)) {
    known.sources.push(source);
    known.arrivedBySource[source] = now;
  }
  if (source === 'socket') {
    // The server's copy is complete (the tag carries only a few attributes); the tag's START-DATE stays in charge.
    known.event = e;
    known.type = e.type;
    if (!known.sources.includes('hls') && startMs !== null && startMs !== known.startMs) {
      known.startMs = startMs;
      orderDirty = true;
    }
  } else if (startMs !== null && startMs !== known.startMs) {
    known.startMs = startMs;
    orderDirty = true;
  }
}

function fromSocket(e: TimelineEvent): void {
  recordEvent(e, 'socket', startOf(e));
}

/** A DATERANGE tag of the live playlist: its ID is the event's id. */
function fromDateRange(r: DateRange): void {
  const type = DATERANGE_TYPES[r.class];
  if (!type || !r.isValid) return;
  const startMs = r.startDate.getTime();
  if (!Number.isFinite(startMs)) return;
  const attr = r.attr as Record<string, unknown>;
  const text = (k: string) => (typeof attr[k] === 'string' ? (attr[k] as string) : undefined);
  const data: TimelineEvent['data'] = {};
  const title = text('X-TITLE');
  const artist = text('X-ARTIST');
  const label = text('X-LABEL');
  const by = text('X-BY');
  if (title !== undefined) data.title = title;
  if (artist !== undefined) data.artist = artist;
  if (label !== undefined) data.label = label;
  if (by !== undefined) data.name = by;
  const known = events.get(r.id);
  const e: TimelineEvent = known?.event ?? {
    id: r.id,
    type,
    at: r.startDate.toISOString(),
    mediaTime: originMs !== null ? (startMs - originMs) / 1000 : NaN,
    startDate: r.startDate.toISOString(),
    data,
  };
  recordEvent(e, 'hls', startMs);
}

function onLevelDetails(details: LevelDetails): void {
  for (const r of Object.values(details.dateRanges)) if (r) fromDateRange(r);
  tick();
}

/** The PROGRAM-DATE-TIME of what the player plays now, or null when it cannot tell. */
/** How far behind the live programme the listener is (its playing position's PROGRAM-DATE-TIME against now). */
function showBehind(): void {
  const playing = document.body.dataset['state'] === 'playing' ? playingMs() : null;
  const behind = playing === null ? null : Math.max(0, (Date.now() - playing) / 1000);
  ui.behind.hidden = behind === null;
  if (behind !== null) ui.behind.textContent = t('listener.behind', { seconds: behind < 10 ? behind.toFixed(1) : Math.round(behind) });
  document.body.dataset['behind'] = behind === null ? '' : behind.toFixed(2);
}
window.setInterval(showBehind, 500);

function playingMs(): number | null {
  if (!attached) return null;
  if (hls) {
    const d = hls.playingDate;
    const ms = d ? d.getTime() : NaN;
    return Number.isFinite(ms) ? ms : null;
  }
  // Safari's own HLS: the date of currentTime 0 (from EXT-X-PROGRAM-DATE-TIME), NaN when the stream has none.
  const start = (audio as HTMLAudioElement & { getStartDate?: () => Date }).getStartDate?.();
  const ms = start ? start.getTime() + audio.currentTime * 1000 : NaN;
  return Number.isFinite(ms) ? ms : null;
}

function sortEvents(): void {
  if (!orderDirty) return;
  ordered = [...events.values()].filter((k) => k.startMs !== null).sort((a, b) => a.startMs! - b.startMs! || a.seq - b.seq);
  orderDirty = false;
}

function trackText(k: KnownEvent): string {
  const { title, artist } = k.event.data;
  return artist ? `${title ?? ''} — ${artist}` : (title ?? '');
}

function markShown(k: KnownEvent, at: number): void {
  if (k.shownAtMs !== null) return;
  k.shownAtMs = Date.now();
  k.shownAtPlayingDateMs = at;
}

/** Brings the timeline's display to the player's position. */
function tick(): void {
  const now = playingMs();
  if (now !== null) lastPlayingMs = now;
  const at = lastPlayingMs;
  sortEvents();
  let chapter: KnownEvent | null = null;
  let track: KnownEvent | null = null;
  const speakers = new Map<string, KnownEvent>();
  const comments: KnownEvent[] = [];
  if (at !== null) {
    for (const k of ordered) {
      if (k.startMs! > at) break;
      if (k.type === 'chapter') chapter = k;
      else if (k.type === 'track') track = k;
      else if (k.type === 'speaking') speakers.set(k.event.data.performerId ?? k.event.data.displayName ?? k.id, k);
      else if (k.type === 'comment') comments.push(k);
    }
  }
  const speaking = [...speakers.values()]
    .filter((k) => k.event.data.speaking === true)
    .map((k) => k.event.data.displayName ?? k.event.data.performerId ?? '?')
    .sort((a, b) => a.localeCompare(b));
  const latest = comments.slice(-MAX_COMMENTS).reverse();
  view = { chapter, track, speaking, comments: latest };
  render(at);
}

function setText(el: HTMLElement, text: string): void {
  if (el.textContent !== text) el.textContent = text;
}

function render(at: number | null): void {
  const chapterTitle = view.chapter?.event.data.title ?? '';
  setText(ui.chapter, chapterTitle || '—');
  if (document.body.dataset['chapter'] !== chapterTitle) document.body.dataset['chapter'] = chapterTitle;
  const track = view.track ? trackText(view.track) : '';
  setText(ui.track, track || '—');
  setText(ui.speaking, view.speaking.length ? view.speaking.join(', ') : '—');
  if (at !== null) {
    if (view.chapter) markShown(view.chapter, at);
    if (view.track) markShown(view.track, at);
    for (const k of view.comments) markShown(k, at);
    for (const k of ordered) {
      if (k.startMs! > at) break;
      if (k.type === 'speaking' || k.type === 'marker') markShown(k, at);
    }
  }
  const key = view.comments.map((k) => k.id).join(',');
  if (key === shownCommentsKey) return;
  shownCommentsKey = key;
  ui.comments.replaceChildren(
    ...view.comments.map((k) => {
      const li = document.createElement('li');
      li.dataset['id'] = k.id;
      const name = document.createElement('span');
      name.className = 'name';
      name.textContent = k.event.data.name ?? t('listener.anonymous');
      const text = document.createElement('span');
      text.className = 'text';
      text.textContent = k.event.data.text ?? '';
      li.append(name, ': ', text);
      return li;
    }),
  );
}

// --- the timeline's connection: Socket.IO /listen ---

const REQUEST_TIMEOUT_MS = 10_000;
let socket: ContractSocket<ListenContract> | null = null;
let subscribeTimer: number | null = null;

const request = requester<ListenContract>(() => socket, REQUEST_TIMEOUT_MS);

// Call-in: while the caller is on air the stream is stopped (their page plays the show over WebRTC).
/** Whether the listener wanted the stream when a call took over (it comes back after the call only if so). */
let wantedBeforeCall = false;
const callIn = setupCallIn({
  socket: () => socket,
  request,
  stopStream: () => {
    wantedBeforeCall = wantPlay || attached;
    detach();
    if (retryTimer !== null) clearTimeout(retryTimer);
    retryTimer = null;
    setState('offair', t('listener.onAirInCall'));
  },
  resumeStream: () => {
    if (!stage || stage.status === 'ended') return update();
    wantPlay = wantedBeforeCall;
    if (wantPlay) void start();
    else update();
  },
});

/** Takes the stage's timeline so far (again after every reconnection: nothing is missed). */
async function subscribe(): Promise<void> {
  if (subscribeTimer !== null) clearTimeout(subscribeTimer);
  subscribeTimer = null;
  const res = await request('subscribe', { stageId });
  if (!res.ok) {
    // An unknown stage has no timeline; anything else is tried again.
    if (res.error.code === 'NOT_FOUND') socket?.disconnect();
    else subscribeTimer = window.setTimeout(() => void subscribe(), RETRY_MS);
    return;
  }
  const { data } = res;
  if (data.nodes) rememberNodes(stageId, data.nodes);
  callIn.subscribed();
  if (broadcastId !== null && data.broadcastId !== broadcastId) {
    // Another broadcast: the previous one's events are not this stream's.
    events.clear();
    ordered = [];
    broadcastId = data.broadcastId;
  }
  originMs = parseMs(data.originDate);
  for (const e of data.events) fromSocket(e);
  // Events known before the origin was: their start may now be derived.
  for (const k of events.values()) {
    if (k.startMs === null) {
      k.startMs = startOf(k.event);
      orderDirty = true;
    }
  }
  orderDirty = true;
  tick();
}

function connectTimeline(): void {
  const s: ContractSocket<ListenContract> = io('/listen', {
    transports: ['websocket'],
    reconnectionDelay: 500,
    reconnectionDelayMax: 8_000,
    randomizationFactor: 0.5,
  });
  socket = s;
  callIn.bind(s);
  s.on('connect', () => void subscribe());
  s.on('timelineEvent', ({ event }) => {
    fromSocket(event);
    tick();
  });
  s.on('stageStatus', ({ status }) => {
    if (stage && stage.status !== status) {
      stage = { ...stage, status };
      showStage(stage);
      update();
    }
    // A new broadcast (or its end) comes with a new origin and events.
    void subscribe();
  });
}

ui.commentName.value = localStorage.getItem('listenerName') ?? '';
ui.commentForm.addEventListener('submit', (ev) => {
  ev.preventDefault();
  void sendComment();
});

async function sendComment(): Promise<void> {
  const text = ui.commentText.value;
  const name = ui.commentName.value;
  ui.commentError.textContent = '';
  ui.commentSend.disabled = true;
  try {
    const now = playingMs() ?? lastPlayingMs;
    const res = await request('comment', { text, name, ...(now !== null ? { playingDate: new Date(now).toISOString() } : {}) });
    if (!res.ok) {
      ui.commentError.textContent = res.error.message;
      return;
    }
    localStorage.setItem('listenerName', name);
    if (ui.commentText.value === text) ui.commentText.value = '';
    fromSocket(res.data.event);
    tick();
  } finally {
    ui.commentSend.disabled = false;
  }
}

window.setInterval(tick, TICK_MS);
audio.addEventListener('timeupdate', tick);
audio.addEventListener('seeked', tick);

/** Read-only hooks for automated tests and diagnostics. */
declare global {
  interface Window {
    listenerDebug: {
      /** Spectrum (dB) of what the page plays, before the volume (hls.js engine only; empty before playback), bin width in Hz. */
      spectrum: () => { binHz: number; db: number[] };
      currentTime: () => number;
      engine: string;
      /** Whether the player element is playing the stream. */
      streamPlaying: () => boolean;
      /** Call-in: the call's state (also body[data-call]), its id, and what the caller hears over WebRTC. */
      call: () => { state: string; callId: string | null; onAir: boolean; firstPacketSentMs: number | null };
      callHearingSpectrum: () => { binHz: number; db: number[] };
      /** The timeline as the page shows it, at the player's position (PROGRAM-DATE-TIME). */
      timeline: () => {
        playingDate: string | null;
        chapter: string | null;
        track: string | null;
        speaking: string[];
        comments: { id: string; text: string; name: string }[];
        events: {
          id: string;
          type: TimelineEventType;
          startDate: string | null;
          sources: EventSource[];
          arrivedAtMs: number;
          /** Wall ms of each source's first delivery. */
          arrivedBySource: Partial<Record<EventSource, number>>;
          shownAtMs: number | null;
          shownAtPlayingDateMs: number | null;
        }[];
      };
    };
  }
}
window.listenerDebug = {
  spectrum: () => {
    if (!analyser || !audioCtx) return { binHz: 0, db: [] };
    const buf = new Float32Array(analyser.frequencyBinCount);
    analyser.getFloatFrequencyData(buf);
    return { binHz: audioCtx.sampleRate / analyser.fftSize, db: Array.from(buf) };
  },
  currentTime: () => audio.currentTime,
  engine: engine ?? 'none',
  streamPlaying: () => attached && !audio.paused,
  call: () => ({ state: callIn.state(), callId: callIn.callId(), onAir: callIn.onAir(), firstPacketSentMs: callIn.firstPacketSentMs() }),
  callHearingSpectrum: () => callIn.hearingSpectrum(),
  timeline: () => ({
    playingDate: lastPlayingMs !== null ? new Date(lastPlayingMs).toISOString() : null,
    chapter: view.chapter?.event.data.title ?? null,
    track: view.track ? trackText(view.track) : null,
    speaking: [...view.speaking],
    comments: view.comments.map((k) => ({ id: k.id, text: k.event.data.text ?? '', name: k.event.data.name ?? '' })),
    events: [...events.values()].map((k) => ({
      id: k.id,
      type: k.type,
      startDate: k.startMs !== null ? new Date(k.startMs).toISOString() : null,
      sources: [...k.sources],
      arrivedAtMs: k.arrivedAtMs,
      arrivedBySource: { ...k.arrivedBySource },
      shownAtMs: k.shownAtMs,
      shownAtPlayingDateMs: k.shownAtPlayingDateMs,
    })),
  }),
};

document.body.dataset['chapter'] = '';
if (!stageId) fail(t('listener.noStage'));
else if (!engine) fail(t('listener.noHls'));
else {
  setState('loading', t('listener.loading'));
  void poll();
  connectTimeline();
}
