// The listener page: plays a stage's HLS and shows whether it is on air. Public: no key.
// Bundled by esbuild for the browser. For automation: document.body.dataset.state = offair|loading|playing|ended|error
// ("offair": not playing, because nothing is on air or the listener has not pressed Play or has stopped),
// dataset.engine = hls.js|native, and window.listenerDebug.
import HlsUmd from 'hls.js/dist/hls.js';
import type HlsClass from 'hls.js';
import type { ErrorData } from 'hls.js';
import type { StageStatus } from '../../shared/protocol.ts';

// The UMD build carries hls.js's transmuxer worker inline (started from a blob: URL, hence the CSP's worker-src blob:);
// the ESM build would need the worker as a separate file. Its typings are those of the ESM build, hence the cast.
const Hls = HlsUmd as unknown as typeof HlsClass;

type PlayerState = 'offair' | 'loading' | 'playing' | 'ended' | 'error';

interface StageView {
  id: string;
  title: string;
  status: StageStatus;
  hlsUrl: string;
}

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

const BADGE: Record<StageStatus, string> = { live: 'On air', idle: 'Off air', ended: 'Ended' };

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
  ui.error.textContent = message;
  setState('error', '');
}

function finish(): void {
  stopEverything();
  setState('ended', 'The show has ended.');
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
  ui.badge.textContent = BADGE[s.status];
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
  if (!stage || !engine || attached || probing) return;
  probing = true;
  if (stage.status === 'live') setState('loading', 'Connecting…');
  const found = await livePlaylistExists(stage.hlsUrl);
  probing = false;
  if (!wantPlay || attached || !stage || stage.status === 'ended') return update();
  if (!found) {
    // Live but no playlist yet: the mix is starting, look again soon. Idle: the next status poll looks again.
    if (stage.status === 'live') retrySoon('Waiting for the stream…');
    else setState('offair', 'Nothing is on air right now. Playback starts when the show does.');
    return;
  }
  setState('loading', 'Loading…');
  attach(stage.hlsUrl);
  requestPlay();
}

function attach(url: string): void {
  attached = true;
  mediaRecoveries = 0;
  lastProgressAt = Date.now();
  if (engine === 'hls.js') {
    const h = new Hls({ enableWorker: true, backBufferLength: 30 });
    hls = h;
    h.on(Hls.Events.ERROR, (_event, data) => onHlsError(h, data));
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
        setState('offair', stage?.status === 'live' ? 'On air. Press Play to listen.' : 'Press Play to listen.');
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
  lost(data.type === Hls.ErrorTypes.NETWORK_ERROR ? 'Stream unreachable, retrying…' : 'Stream interrupted, retrying…');
}

/** Brings the player in line with the stage's status and the listener's wish. */
function update(): void {
  if (!stage || state === 'error' || state === 'ended') return;
  if (stage.status === 'ended') {
    // A stream still playing runs to its end (its end tag, or ENDED_STALL_MS without progress); otherwise it is over.
    if (!attached) finish();
    return;
  }
  if (attached || probing || retryTimer !== null) return;
  if (wantPlay) void start();
  else setState('offair', stage.status === 'live' ? 'On air. Press Play to listen.' : 'Off air.');
}

async function poll(): Promise<void> {
  pollTimer = null;
  try {
    const res = await fetch(`/api/stages/${encodeURIComponent(stageId)}`, { cache: 'no-store' });
    if (res.status === 404 || res.status === 400) return fail('This stage does not exist.');
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const view = (await res.json()) as StageView;
    stage = view;
    showStage(view);
    update();
  } catch {
    if (!stage) ui.status.textContent = 'Cannot reach the server, retrying…';
  }
  if (state !== 'error' && state !== 'ended') pollTimer = window.setTimeout(() => void poll(), POLL_MS);
}

audio.addEventListener('playing', () => {
  if (!attached) return;
  mediaRecoveries = 0;
  setState('playing', 'Playing');
});
audio.addEventListener('waiting', () => {
  if (attached && wantPlay) setState('loading', 'Buffering…');
});
audio.addEventListener('timeupdate', () => {
  if (audio.currentTime !== lastTime) {
    lastTime = audio.currentTime;
    lastProgressAt = Date.now();
  }
});
audio.addEventListener('ended', () => {
  if (attached) lost('The stream stopped, retrying…');
});
audio.addEventListener('error', () => {
  // hls.js reports its own errors; this is the browser's own HLS failing.
  if (attached && engine === 'native') lost('Stream unreachable, retrying…');
});

window.setInterval(() => {
  if (!attached) return;
  const stuckMs = Date.now() - lastProgressAt;
  if (stage?.status === 'ended' && stuckMs > ENDED_STALL_MS) finish();
  else if (stuckMs > STALL_MS) lost('The stream stalled, reconnecting…');
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
  setState('offair', 'Stopped.');
});

const savedVolume = Number(localStorage.getItem('listenerVolume') ?? '1');
ui.volume.valueAsNumber = Number.isFinite(savedVolume) ? Math.min(1, Math.max(0, savedVolume)) : 1;
applyVolume();
ui.volume.addEventListener('input', () => {
  applyVolume();
  localStorage.setItem('listenerVolume', String(ui.volume.valueAsNumber));
});

/** Read-only hooks for automated tests and diagnostics. */
declare global {
  interface Window {
    listenerDebug: {
      /** Spectrum (dB) of what the page plays, before the volume (hls.js engine only; empty before playback), bin width in Hz. */
      spectrum: () => { binHz: number; db: number[] };
      currentTime: () => number;
      engine: string;
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
};

if (!stageId) fail('This stage does not exist.');
else if (!engine) fail('This browser cannot play the stream (no HLS support).');
else {
  setState('loading', 'Loading…');
  void poll();
}
