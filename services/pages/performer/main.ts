// The performer page: join a stage with the microphone, hear the other performers, mute, leave.
// Bundled by esbuild for the browser. State for automation: document.body.dataset.state = idle|joining|publishing|error,
// and the connection in detail in document.body.dataset.link (see LinkState).
//
// Resilience: whatever drops the session (a lost or server-closed connection, a failed join, the server's `rejoin`),
// the page reconnects and joins again by itself with exponential backoff and jitter, at once when the browser comes
// back online. A network change (`online`, navigator.connection `change`) or a transport `failed`, or `disconnected`
// for 2 s, restarts ICE on that transport and keeps the same performer. Only the errors in FATAL_CODES stop it.
import { Device, type types as mc } from 'mediasoup-client';
import { io } from 'socket.io-client';
import type { CallView } from '../../shared/calls.ts';
import type { EncoderList, StageView } from '../../shared/rest.ts';
import type { PerformerInfo, StageStatus } from '../../shared/model.ts';
import type { StageContract, StageRequest, StageRequestName, StageResponse } from '../../shared/stage.ts';
import { requester, type ContractSocket } from '../client.ts';
import { nextNode, rememberNodes, samePageOn, takeCarriedNodes } from '../nodes.ts';
import { explainInsecureOrigin } from '../secure.ts';
import { setupLanguage, t, type Key } from '../i18n/index.ts';

// The page in the reader's language (en, ja) before anything else is shown.
setupLanguage();

type PageState = 'idle' | 'joining' | 'publishing' | 'error';
/**
 * The connection in detail (body[data-link]): idle (not on stage), connecting (opening the signaling connection),
 * reconnecting (waiting for the next try; body[data-attempt] counts them), offline (the same while the browser says it
 * has no network), joining (connected, joining the stage), on-stage, interrupted (on stage, but an audio path lost its
 * connectivity: ICE 'disconnected'), ice-restarting (on stage, repairing an audio path), error (gave up; #error says why).
 */
type LinkState =
  | 'idle'
  | 'connecting'
  | 'reconnecting'
  | 'offline'
  | 'joining'
  | 'on-stage'
  | 'interrupted'
  | 'ice-restarting'
  | 'error';

const REQUEST_TIMEOUT_MS = 10_000;
/** A live server answers restartIce at once; no answer within this means the connection is dead. */
const ICE_REQUEST_TIMEOUT_MS = 4_000;
/**
 * Reconnect backoff: 250 ms doubling, at most 2 s for the first FAST_RETRIES tries (about 12 s, so a short outage
 * never leaves the page waiting long once the path is back), then at most 10 s; each delay ×0.5–1 (jitter).
 */
const RETRY_BASE_MS = 250;
const RETRY_FAST_MAX_MS = 2_000;
const FAST_RETRIES = 8;
const RETRY_MAX_MS = 10_000;
/** Opening the signaling connection may take this long before the try counts as failed. */
const CONNECT_TIMEOUT_MS = 5_000;
/** A transport 'disconnected' this long gets an ICE restart ('failed' gets one at once). */
const ICE_DISCONNECTED_MS = 2_000;
/** A restarted transport still not connected after this long is restarted again; after MAX_ICE_RESTARTS, rejoin. */
const ICE_RESTART_SETTLE_MS = 8_000;
const MAX_ICE_RESTARTS = 3;

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const ui = {
  title: $<HTMLHeadingElement>('stage-title'),
  name: $<HTMLInputElement>('display-name'),
  raw: $<HTMLInputElement>('raw-audio'),
  join: $<HTMLButtonElement>('join'),
  mute: $<HTMLButtonElement>('mute'),
  leave: $<HTMLButtonElement>('leave'),
  startBroadcast: $<HTMLButtonElement>('start-broadcast'),
  stopBroadcast: $<HTMLButtonElement>('stop-broadcast'),
  onAir: $<HTMLSpanElement>('on-air'),
  status: $<HTMLParagraphElement>('status'),
  error: $<HTMLParagraphElement>('error'),
  meter: $<HTMLMeterElement>('level'),
  performers: $<HTMLUListElement>('performers'),
  audio: $<HTMLDivElement>('audio'),
  eventForm: $<HTMLFormElement>('event-form'),
  eventType: $<HTMLSelectElement>('event-type'),
  eventTitle: $<HTMLInputElement>('event-title'),
  eventArtist: $<HTMLInputElement>('event-artist'),
  postEvent: $<HTMLButtonElement>('post-event'),
  eventStatus: $<HTMLParagraphElement>('event-status'),
  callQueue: $<HTMLOListElement>('call-queue'),
  callsEmpty: $<HTMLParagraphElement>('calls-empty'),
  callError: $<HTMLParagraphElement>('call-error'),
  whipUrl: $<HTMLElement>('whip-url'),
  whipToken: $<HTMLElement>('whip-token'),
  copyWhipUrl: $<HTMLButtonElement>('copy-whip-url'),
  copyWhipToken: $<HTMLButtonElement>('copy-whip-token'),
  encoderState: $<HTMLParagraphElement>('encoder-state'),
  encoderLevel: $<HTMLMeterElement>('encoder-level'),
  encoderLevelLabel: $<HTMLLabelElement>('encoder-level-label'),
};

const stageId = decodeURIComponent(location.pathname.split('/').filter(Boolean)[1] ?? '');
/** This tab's resume token for the stage (sessionStorage: it survives a reload, and is not shared with other tabs). */
const RESUME_KEY = `stage-radio:resume:${stageId}`;
const params = new URLSearchParams(location.search);
{
  // Cluster mode: moved here from another node, with this tab's resume token (another origin has its own storage). It
  // is the newest: it replaces whatever this origin kept, and leaves the address at once.
  const carried = params.get('resume');
  if (carried !== null) {
    if (carried) sessionStorage.setItem(RESUME_KEY, carried);
    params.delete('resume');
    history.replaceState(null, '', `${location.pathname}?${params.toString()}${location.hash}`);
  }
}
const key = params.get('key') ?? '';
ui.name.value = params.get('name') ?? localStorage.getItem('displayName') ?? '';
ui.raw.checked = params.get('raw') === '1';

class RequestFailed extends Error {
  constructor(
    readonly code: string,
    message: string,
    /** RATE_LIMITED: seconds to wait before trying again. */
    readonly retryAfterSeconds = 0,
    /** WRONG_NODE (cluster mode): the node that serves this stage. */
    readonly ownerUrl = '',
  ) {
    super(message);
  }
}

/** The node this page came from when it fled one that stopped answering: not to be sent back there at once. */
const fledFrom = new URLSearchParams(location.search).get('from');
/** Connection attempts that must fail in a row before the page tries another node of the cluster. */
const FAILOVER_AFTER = 3;
let unreachable = 0;

function sameOrigin(url: string, origin: string | null): boolean {
  try {
    return origin !== null && new URL(url).origin === origin;
  } catch {
    return false;
  }
}

/** Reopens the page on the next other node this tab knows of (none: false). */
function failOver(): boolean {
  const found = nextNode(stageId);
  if (!found || !followOwner(found.next, found.rest)) return false;
  wantOnStage = false;
  endSession();
  return true;
}

/**
 * Cluster mode: this stage is served by another node. The page moves there and joins at once (`join=1`), carrying the
 * name (the other node is another origin: this one's storage does not go with it).
 */
function followOwner(ownerUrl: string, nodes: string[] = []): boolean {
  const target = samePageOn(ownerUrl);
  if (!target) return false;
  target.searchParams.set('join', '1');
  if (nodes.length > 0) target.searchParams.set('nodes', nodes.join(' '));
  // The tab's resume token goes along (the other origin has its own storage): the performer stays the same there.
  const resume = sessionStorage.getItem(RESUME_KEY);
  if (resume) target.searchParams.set('resume', resume);
  const name = ui.name.value.trim();
  if (name) target.searchParams.set('name', name);
  setState('joining', t('performer.movingToOwner'));
  location.replace(target.toString());
  return true;
}

/** A step of a media session that was torn down meanwhile (a newer session, or none, took over). */
class Superseded extends Error {}

/** Errors after which trying again cannot help (STAGE_FULL only on a first join: on a rejoin the seat may be our own). */
const FATAL_CODES = new Set(['UNAUTHORIZED', 'NOT_FOUND', 'STAGE_FULL', 'BAD_REQUEST', 'MIC_DENIED', 'NO_MIC', 'REPLACED']);

/** The page's own words for the server's error codes (the server's messages stay English). */
const MESSAGES: Record<string, Key> = {
  UNAUTHORIZED: 'performer.error.UNAUTHORIZED',
  NOT_FOUND: 'performer.error.NOT_FOUND',
  STAGE_FULL: 'performer.error.STAGE_FULL',
  MIC_DENIED: 'performer.error.MIC_DENIED',
  NO_MIC: 'performer.error.NO_MIC',
  REPLACED: 'performer.error.REPLACED',
};

// Socket.IO's own reconnection is off: it does not retry after a server-side disconnect ('io server disconnect'), and
// one loop (scheduleRetry) for every kind of loss keeps the backoff, the attempt count and the display in one place.
const socket: ContractSocket<StageContract> = io('/stage', {
  transports: ['websocket'],
  reconnection: false,
  timeout: CONNECT_TIMEOUT_MS,
});
const send = requester<StageContract>(() => socket, REQUEST_TIMEOUT_MS);

/** A request's answer, or a RequestFailed with the server's (or the connection's) code. */
async function request<E extends StageRequestName>(event: E, payload: StageRequest<E>, timeoutMs = REQUEST_TIMEOUT_MS): Promise<StageResponse<E>> {
  const res = await send(event, payload, timeoutMs);
  if (res.ok) return res.data;
  const e = res.error;
  throw new RequestFailed(e.code, e.message, 'retryAfterSeconds' in e ? (e.retryAfterSeconds ?? 0) : 0, 'ownerUrl' in e ? (e.ownerUrl ?? '') : '');
}

interface Remote {
  info: PerformerInfo;
  consumer: mc.Consumer | null;
  audio: HTMLAudioElement | null;
  source: MediaStreamAudioSourceNode | null;
  li: HTMLLIElement;
}

let state: PageState = 'idle';
let link: LinkState = 'idle';
/** The user asked to be on stage (Join pressed, not left, no fatal error): the page keeps trying until it is. */
let wantOnStage = false;
/** Published at least once since Join was pressed: joins from then on are rejoins. */
let wasOnStage = false;
let device: Device | null = null;
let sendTransport: mc.Transport | null = null;
let recvTransport: mc.Transport | null = null;
let producer: mc.Producer | null = null;
let micStream: MediaStream | null = null;
let myId: string | null = null;
/** Joins this page has made (a rejoin after a loss, or after a reload in the same tab, counts again). */
let joins = 0;
let muted = false;
/** Bumped whenever the media session is torn down; the async steps of an older one stop (Superseded). */
let session = 0;
/** The session whose join is in flight (-1: none). */
let joinInFlight = -1;
/** The server holds a performer for this connection (join answered; not left, not dropped). */
let serverMember = false;
/** A socket.connect() of ours is in flight. */
let connecting = false;
let retryTimer: number | null = null;
let retryTicker: number | null = null;
let retryAt = 0;
let retryReason = '';
/** Tries since the session was last lost (reset once on stage). */
let attempt = 0;
/** Completed ICE restarts (a restartIce answered and applied to a transport), for diagnostics and tests. */
let iceRestarts = 0;
let lastDisconnect: string | null = null;
const linkHistory: { link: LinkState; at: number; attempt: number }[] = [];
/** Per transport: the 'disconnected' timer, the settle timer of a restart, restarts in a row, a restart under way. */
interface IceWatch {
  disconnected: number | null;
  settle: number | null;
  tries: number;
  repairing: boolean;
}
const iceWatch = new Map<mc.Transport, IceWatch>();
const remotes = new Map<string, Remote>();

// Everything this performer hears goes through one analyser (tests read it; the level display could too).
const audioCtx = new AudioContext();
const hearing = audioCtx.createAnalyser();
hearing.fftSize = 8192;
const micAnalyser = audioCtx.createAnalyser();
micAnalyser.fftSize = 2048;
let micSource: MediaStreamAudioSourceNode | null = null;

let stageStatus: StageStatus = 'idle';

function showStageStatus(status: StageStatus): void {
  stageStatus = status;
  ui.onAir.dataset['status'] = status;
  ui.onAir.textContent = t(status === 'live' ? 'status.live' : status === 'ended' ? 'status.ended' : 'status.idle');
  document.body.dataset['stageStatus'] = status;
  ui.startBroadcast.disabled = state !== 'publishing' || status !== 'idle';
  ui.stopBroadcast.disabled = state !== 'publishing' || status !== 'live';
  // Chapters, tracks and markers belong to a broadcast: only while on air.
  ui.postEvent.disabled = state !== 'publishing' || status !== 'live';
}

/** On an insecure origin the microphone cannot be had: the page says so and where to go instead, and cannot join. */
const insecure = explainInsecureOrigin($<HTMLParagraphElement>('insecure'), 'performer');

function setState(next: PageState, status: string): void {
  state = next;
  document.body.dataset['state'] = next;
  ui.status.textContent = status;
  ui.join.disabled = next === 'joining' || next === 'publishing' || insecure;
  ui.leave.disabled = !wantOnStage;
  ui.mute.disabled = next !== 'publishing';
  showStageStatus(stageStatus);
  if (next !== 'error') ui.error.textContent = '';
}

function setLink(next: LinkState): void {
  document.body.dataset['attempt'] = String(attempt);
  if (next === link) return;
  link = next;
  document.body.dataset['link'] = next;
  linkHistory.push({ link: next, at: Date.now(), attempt });
  if (linkHistory.length > 200) linkHistory.shift();
}

function showError(code: string, message: string): void {
  const known = MESSAGES[code];
  ui.error.textContent = known ? t(known) : message;
  document.body.dataset['error'] = code;
  setLink('error');
  setState('error', t('performer.notOnStage'));
}

function renderPerformers(): void {
  for (const r of remotes.values()) {
    const role = r.info.role === 'caller' ? t('performer.role.caller') : r.info.role === 'encoder' ? t('performer.role.encoder') : '';
    r.li.textContent = `${r.info.displayName}${role}${r.info.muted ? t('performer.muted') : ''}${r.consumer ? '' : t('performer.connecting')}`;
  }
}

// --- call-in: the stage's queue, live (every performer sees it; the server checks every action) ---

let calls: CallView[] = [];

function waitedText(fromIso: string, now: number): string {
  const s = Math.max(0, Math.floor((now - Date.parse(fromIso)) / 1000));
  return s < 60 ? t('performer.waited.seconds', { s }) : t('performer.waited.minutes', { m: Math.floor(s / 60), s: String(s % 60).padStart(2, '0') });
}

function callButton(label: string, onClick: () => Promise<unknown>): HTMLButtonElement {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = label;
  b.addEventListener('click', () => {
    b.disabled = true;
    ui.callError.textContent = '';
    onClick().catch((err: unknown) => {
      ui.callError.textContent = err instanceof Error ? err.message : String(err);
      b.disabled = false;
    });
  });
  return b;
}

function renderCalls(): void {
  const now = Date.now();
  ui.callsEmpty.hidden = calls.length > 0;
  const items = calls.map((c) => {
    const li = document.createElement('li');
    li.dataset['callId'] = c.id;
    li.dataset['status'] = c.status;
    const who = document.createElement('strong');
    who.textContent = c.name;
    const what = document.createElement('span');
    what.className = 'call-topic';
    what.textContent = c.topic ? ` — ${c.topic}` : '';
    const when = document.createElement('span');
    when.className = 'call-time';
    when.dataset['since'] = c.status === 'waiting' ? c.requestedAt : (c.connectedAt ?? c.acceptedAt ?? c.requestedAt);
    when.dataset['label'] = t(c.status === 'waiting' ? 'performer.call.waiting' : c.status === 'on_air' ? 'performer.call.onAir' : 'performer.call.connecting');
    when.textContent = ` (${when.dataset['label']} ${waitedText(when.dataset['since'], now)})`;
    const buttons = document.createElement('span');
    buttons.className = 'buttons';
    if (c.status === 'waiting') {
      buttons.append(
        callButton(t('performer.call.accept'), () => request('acceptCall', { callId: c.id })),
        callButton(t('performer.call.decline'), () => request('declineCall', { callId: c.id })),
      );
    } else {
      const mute = callButton(t(c.muted ? 'performer.unmute' : 'performer.mute'), () => request('muteCall', { callId: c.id, muted: !c.muted }));
      mute.setAttribute('aria-pressed', String(c.muted));
      buttons.append(mute, callButton(t('performer.call.hangUp'), () => request('hangUpCall', { callId: c.id })));
    }
    li.append(who, what, when, buttons);
    return li;
  });
  ui.callQueue.replaceChildren(...items);
}

/** The waiting and on-air times move on every second (the list itself only when the queue changes). */
window.setInterval(() => {
  const now = Date.now();
  for (const el of ui.callQueue.querySelectorAll<HTMLElement>('.call-time')) {
    el.textContent = ` (${el.dataset['label'] ?? ''} ${waitedText(el.dataset['since'] ?? new Date().toISOString(), now)})`;
  }
}, 1000);

function addRemote(info: PerformerInfo): void {
  let r = remotes.get(info.id);
  if (!r) {
    const li = document.createElement('li');
    li.dataset['performerId'] = info.id;
    ui.performers.append(li);
    r = { info, consumer: null, audio: null, source: null, li };
    remotes.set(info.id, r);
  }
  r.info = info;
  renderPerformers();
  if (info.producerId && !r.consumer) void consumeRemote(r, info.producerId);
}

function dropConsumer(r: Remote): void {
  r.consumer?.close();
  r.consumer = null;
  r.source?.disconnect();
  r.source = null;
  if (r.audio) {
    r.audio.srcObject = null;
    r.audio.remove();
    r.audio = null;
  }
}

function removeRemote(id: string): void {
  const r = remotes.get(id);
  if (!r) return;
  dropConsumer(r);
  r.li.remove();
  remotes.delete(id);
}

async function consumeRemote(r: Remote, producerId: string): Promise<void> {
  if (!device || !recvTransport) return;
  const transport = recvTransport;
  try {
    const c = await request('consume', { producerId, rtpCapabilities: device.recvRtpCapabilities as StageRequest<'consume'>['rtpCapabilities'] });
    if (transport !== recvTransport || !remotes.has(r.info.id) || r.consumer) return;
    const consumer = await transport.consume({
      id: c.consumerId,
      producerId: c.producerId,
      kind: 'audio',
      rtpParameters: c.rtpParameters as mc.RtpParameters,
    });
    r.consumer = consumer;
    const stream = new MediaStream([consumer.track]);
    // The <audio> element plays it; WebAudio only gets remote WebRTC audio when an element is also playing it.
    const audio = document.createElement('audio');
    audio.autoplay = true;
    audio.srcObject = stream;
    audio.dataset['performerId'] = r.info.id;
    ui.audio.append(audio);
    r.audio = audio;
    void audio.play().catch(() => undefined);
    r.source = audioCtx.createMediaStreamSource(stream);
    r.source.connect(hearing);
    await request('resumeConsumer', { consumerId: consumer.id });
    renderPerformers();
  } catch (err) {
    console.warn('consume failed', err);
  }
}

async function openMic(): Promise<MediaStream> {
  const processing = !ui.raw.checked;
  try {
    return await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: processing, noiseSuppression: processing, autoGainControl: processing, channelCount: 1 },
    });
  } catch (err) {
    const name = (err as DOMException).name;
    if (name === 'NotAllowedError' || name === 'SecurityError') throw new RequestFailed('MIC_DENIED', 'microphone denied');
    if (name === 'NotFoundError') throw new RequestFailed('NO_MIC', 'no microphone');
    throw err;
  }
}

function teardownMedia(): void {
  calls = [];
  renderCalls();
  for (const w of iceWatch.values()) clearIceTimers(w);
  iceWatch.clear();
  for (const r of remotes.values()) r.li.remove();
  for (const r of remotes.values()) dropConsumer(r);
  remotes.clear();
  producer?.close();
  producer = null;
  sendTransport?.close();
  sendTransport = null;
  recvTransport?.close();
  recvTransport = null;
  device = null;
  myId = null;
}

function connectHandler(t: mc.Transport): void {
  t.on('connect', ({ dtlsParameters }, ok, fail) => {
    request('connectTransport', { transportId: t.id, dtlsParameters: dtlsParameters as StageRequest<'connectTransport'>['dtlsParameters'] })
      .then(() => ok())
      .catch(fail);
  });
  iceWatch.set(t, { disconnected: null, settle: null, tries: 0, repairing: false });
  t.on('connectionstatechange', (s) => onTransportState(t, s));
}

function clearIceTimers(w: IceWatch): void {
  if (w.disconnected !== null) clearTimeout(w.disconnected);
  if (w.settle !== null) clearTimeout(w.settle);
  w.disconnected = null;
  w.settle = null;
}

function onTransportState(t: mc.Transport, s: mc.ConnectionState): void {
  const w = iceWatch.get(t);
  if (!w || t.closed) return;
  if (w.disconnected !== null) clearTimeout(w.disconnected);
  w.disconnected = null;
  if (s === 'connected') {
    w.tries = 0;
    w.repairing = false;
  } else if (s === 'disconnected') {
    // Often a blip that heals by itself; if it lasts, the path is gone: restart ICE.
    w.disconnected = window.setTimeout(() => void restartIce(t, 'the audio connection was interrupted'), ICE_DISCONNECTED_MS);
  } else if (s === 'failed') {
    void restartIce(t, 'the audio connection failed');
  }
  showOnStage();
}

/** New ICE credentials from the server and new checks on this transport: same performer, same producer and consumers. */
async function restartIce(t: mc.Transport, why: string, fresh = false): Promise<void> {
  const w = iceWatch.get(t);
  if (!w || t.closed) return;
  if (fresh) w.tries = 0;
  if (w.tries >= MAX_ICE_RESTARTS) {
    recover(`${why}; ICE restarts did not repair it`);
    return;
  }
  if (w.repairing && w.settle === null) return; // a restart is being requested right now
  clearIceTimers(w);
  w.tries++;
  w.repairing = true;
  showOnStage();
  const my = session;
  try {
    const { iceParameters } = await request('restartIce', { transportId: t.id }, ICE_REQUEST_TIMEOUT_MS);
    if (my !== session || t.closed) return;
    await t.restartIce({ iceParameters: iceParameters as mc.IceParameters });
    if (my !== session || t.closed) return;
    iceRestarts++;
    // A transport that never connected (a receive transport with nothing to receive yet) has no ICE to redo.
    if (t.connectionState === 'new') w.repairing = false;
    // Chromium keeps the old candidate pair until the new checks succeed: 'connected' may never change, so check later.
    w.settle = window.setTimeout(() => {
      w.settle = null;
      if (my !== session || t.closed) return;
      if (t.connectionState === 'connected' || t.connectionState === 'new') {
        w.tries = 0;
        w.repairing = false;
        showOnStage();
      } else {
        void restartIce(t, 'the ICE restart did not reconnect');
      }
    }, t.connectionState === 'connected' ? 1_000 : ICE_RESTART_SETTLE_MS);
  } catch (err) {
    if (my !== session) return;
    w.repairing = false;
    const code = err instanceof RequestFailed ? err.code : 'ERROR';
    if (code === 'DISCONNECTED') return; // the socket's 'disconnect' handler recovers
    if (code === 'TIMEOUT') {
      // The connection looks open but nothing answers (e.g. a half-open TCP connection after a network change).
      socket.disconnect();
      recover('the server stopped answering', true);
      return;
    }
    recover(`could not repair the audio connection (${code})`);
  } finally {
    if (my === session) showOnStage();
  }
}

/** While publishing: the status line and data-link say whether an audio path is interrupted or being repaired. */
function showOnStage(): void {
  if (state !== 'publishing') return;
  const repairing = [...iceWatch.values()].some((w) => w.repairing);
  const interrupted = [...iceWatch.keys()].some((t) => !t.closed && (t.connectionState === 'disconnected' || t.connectionState === 'failed'));
  const name = ui.name.value.trim();
  if (repairing) {
    setLink('ice-restarting');
    ui.status.textContent = t('performer.onStage.repairing', { name });
  } else if (interrupted || !navigator.onLine) {
    setLink('interrupted');
    ui.status.textContent = t(interrupted ? 'performer.onStage.interrupted' : 'performer.onStage.offline', { name });
  } else {
    setLink('on-stage');
    ui.status.textContent = t('performer.onStageAs', { name });
  }
}

/** The browser came back online or changed networks. */
function networkChanged(why: string): void {
  // Going offline fires navigator.connection 'change' too: nothing to try until 'online'.
  if (!wantOnStage || !navigator.onLine) return;
  if (retryTimer !== null || connecting || !socket.connected) {
    // Waiting to retry, or connecting over the old network: try now, with the backoff started afresh.
    attempt = 0;
    retryNow();
    return;
  }
  // Connected: the audio paths may be bound to the old network; new ICE checks find the new one.
  if (state === 'publishing') {
    for (const t of [sendTransport, recvTransport]) if (t) void restartIce(t, why, true);
  }
}

async function joinOnce(my: number): Promise<void> {
  /** Throws once the session this join belongs to has been torn down. */
  const current = (): void => {
    if (my !== session) throw new Superseded();
  };
  setLink('joining');
  setState('joining', attempt > 0 ? t('performer.rejoining', { attempt }) : t('performer.joining'));
  micStream ??= await openMic();
  current();
  const track = micStream.getAudioTracks()[0];
  if (!track) throw new RequestFailed('NO_MIC', 'no audio track');
  track.enabled = !muted;
  if (!micSource) {
    micSource = audioCtx.createMediaStreamSource(micStream);
    micSource.connect(micAnalyser);
  }
  const resume = sessionStorage.getItem(RESUME_KEY);
  const joined = await request('join', { stageId, key, displayName: ui.name.value.trim(), ...(resume ? { resume } : {}) });
  // The next join (a reload of this tab, a lost connection, a replaced media server) continues as this performer.
  sessionStorage.setItem(RESUME_KEY, joined.resumeToken);
  // Cluster mode: where to go if this node stops answering (the list as of this join).
  if (joined.nodes) rememberNodes(stageId, joined.nodes);
  document.body.dataset['resumed'] = String(joined.resumed);
  if (my !== session) {
    // Torn down while the join was answered: the server must not keep this performer.
    void request('leave', {}).catch(() => undefined);
    throw new Superseded();
  }
  serverMember = true;
  joins++;
  myId = joined.performerId;
  stageStatus = joined.stage.status;
  ui.title.textContent = joined.stage.title;
  document.title = t('performer.docTitle', { title: joined.stage.title });
  const dev = new Device();
  await dev.load({ routerRtpCapabilities: joined.routerRtpCapabilities as mc.RtpCapabilities });
  current();
  device = dev;

  const sendInfo = await request('createTransport', { direction: 'send' });
  current();
  const send = dev.createSendTransport({
    id: sendInfo.id,
    iceParameters: sendInfo.iceParameters as mc.IceParameters,
    iceCandidates: sendInfo.iceCandidates as mc.IceCandidate[],
    dtlsParameters: sendInfo.dtlsParameters as mc.DtlsParameters,
  });
  sendTransport = send;
  connectHandler(send);
  send.on('produce', ({ rtpParameters }, ok, fail) => {
    request('produce', { transportId: send.id, kind: 'audio', rtpParameters: rtpParameters as StageRequest<'produce'>['rtpParameters'] })
      .then(({ producerId }) => ok({ id: producerId }))
      .catch(fail);
  });

  const recvInfo = await request('createTransport', { direction: 'recv' });
  current();
  const recv = dev.createRecvTransport({
    id: recvInfo.id,
    iceParameters: recvInfo.iceParameters as mc.IceParameters,
    iceCandidates: recvInfo.iceCandidates as mc.IceCandidate[],
    dtlsParameters: recvInfo.dtlsParameters as mc.DtlsParameters,
  });
  recvTransport = recv;
  connectHandler(recv);

  // DTX off: a performer's packets must never stop (the mixer depends on it); mute sends encoded silence instead.
  const produced = await send.produce({ track, codecOptions: { opusStereo: false, opusDtx: false, opusFec: true }, stopTracks: false });
  if (my !== session) {
    produced.close();
    throw new Superseded();
  }
  producer = produced;
  for (const p of joined.performers) addRemote(p);
  if (muted) await request('setMuted', { muted: true });
  current();
  attempt = 0;
  wasOnStage = true;
  setState('publishing', '');
  showOnStage();
}

function clearRetry(): void {
  if (retryTimer !== null) clearTimeout(retryTimer);
  if (retryTicker !== null) clearInterval(retryTicker);
  retryTimer = null;
  retryTicker = null;
}

/** Backoff before try number n (0-based): exponential, capped low for the first tries, with jitter. */
function retryDelay(n: number): number {
  const cap = n < FAST_RETRIES ? RETRY_FAST_MAX_MS : RETRY_MAX_MS;
  return Math.min(cap, RETRY_BASE_MS * 2 ** n) * (0.5 + Math.random() * 0.5);
}

/** Drops the media session (telling the server when it still holds our performer on a live connection). */
function endSession(): void {
  session++;
  if (serverMember && socket.connected) void request('leave', {}).catch(() => undefined);
  serverMember = false;
  teardownMedia();
}

/**
 * The session is lost: drop it and try again after the backoff (at once when `now`; not before `atLeastMs`, e.g. a
 * server's RATE_LIMITED wait), unless the user left.
 */
function recover(reason: string, now = false, atLeastMs = 0): void {
  endSession();
  if (!wantOnStage) {
    clearRetry();
    if (link !== 'error') setLink('idle');
    return;
  }
  scheduleRetry(reason, now, atLeastMs);
}

function scheduleRetry(reason: string, now: boolean, atLeastMs = 0): void {
  clearRetry();
  const delay = Math.max(atLeastMs, now ? 0 : retryDelay(attempt));
  attempt++;
  retryReason = reason;
  retryAt = Date.now() + delay;
  retryTimer = window.setTimeout(retryNow, delay);
  retryTicker = window.setInterval(showRetry, 250);
  showRetry();
}

/** The status line while waiting: why, which try is next, and in how long. */
function showRetry(): void {
  const offline = !navigator.onLine;
  setLink(offline ? 'offline' : 'reconnecting');
  const secs = Math.max(0, (retryAt - Date.now()) / 1000).toFixed(1);
  setState('joining', t(offline ? 'performer.retry.offline' : 'performer.retry.reconnecting', { reason: retryReason, attempt, secs }));
}

/** Next try, now: connect first if needed (the 'connect' handler then joins). */
function retryNow(): void {
  clearRetry();
  if (!wantOnStage) return;
  if (socket.connected) {
    void join();
    return;
  }
  if (!navigator.onLine && attempt > 0) {
    // The browser has no network at all: this try cannot work. Count it and wait ('online' tries at once).
    scheduleRetry(retryReason, false);
    return;
  }
  setLink('connecting');
  setState('joining', attempt > 0 ? t('performer.retry.connecting', { reason: retryReason, attempt }) : t('performer.connectingNow'));
  if (connecting) socket.disconnect(); // abandon a try still hanging on the old network
  connecting = true;
  socket.connect();
}

async function join(): Promise<void> {
  wantOnStage = true;
  if (joinInFlight === session) return;
  clearRetry();
  if (!socket.connected) {
    retryNow();
    return;
  }
  const my = session;
  joinInFlight = my;
  try {
    await joinOnce(my);
  } catch (err) {
    if (my !== session || err instanceof Superseded) return; // whoever tore the session down takes care of what is next
    const code = err instanceof RequestFailed ? err.code : 'ERROR';
    const message = err instanceof Error ? err.message : String(err);
    if (err instanceof RequestFailed && code === 'WRONG_NODE' && sameOrigin(err.ownerUrl, fledFrom)) {
      // The cluster still names the node this page left (it stopped answering a moment ago): its stages move within
      // seconds (docs/cluster.md); ask again here.
      recover(t('performer.stageMoving'), false, 2000);
      return;
    }
    if (err instanceof RequestFailed && code === 'WRONG_NODE' && followOwner(err.ownerUrl)) {
      wantOnStage = false;
      endSession();
      return;
    }
    if (FATAL_CODES.has(code) && !(code === 'STAGE_FULL' && wasOnStage)) {
      wantOnStage = false;
      clearRetry();
      endSession();
      showError(code, message);
      return;
    }
    // The server still holds a performer for this connection: endSession() tells it to leave before the next join.
    if (code === 'ALREADY_JOINED') serverMember = true;
    // RATE_LIMITED says how long to wait: never sooner than that.
    const wait = err instanceof RequestFailed ? err.retryAfterSeconds * 1000 : 0;
    recover(code === 'DISCONNECTED' ? 'connection lost' : message, false, wait);
  } finally {
    if (joinInFlight === my) joinInFlight = -1;
  }
}

async function leave(): Promise<void> {
  wantOnStage = false;
  wasOnStage = false;
  // Leaving on purpose ends this performer: a later join is a new one.
  sessionStorage.removeItem(RESUME_KEY);
  clearRetry();
  session++;
  if (serverMember) await request('leave', {}).catch(() => undefined);
  serverMember = false;
  teardownMedia();
  micSource?.disconnect();
  micSource = null;
  micStream?.getTracks().forEach((t) => t.stop());
  micStream = null;
  setLink('idle');
  setState('idle', t('performer.left'));
}

async function toggleMute(): Promise<void> {
  muted = !muted;
  // track.enabled=false keeps Opus packets (silence) flowing, so the mix never waits on this performer.
  micStream?.getAudioTracks().forEach((t) => (t.enabled = !muted));
  ui.mute.textContent = t(muted ? 'performer.unmute' : 'performer.mute');
  ui.mute.setAttribute('aria-pressed', String(muted));
  if (myId) await request('setMuted', { muted }).catch(() => undefined);
}

socket.on('performerJoined', ({ performer }) => addRemote(performer));
socket.on('performerUpdated', ({ performer }) => addRemote(performer));
socket.on('performerLeft', ({ performerId }) => removeRemote(performerId));
socket.on('consumerClosed', ({ producerId }) => {
  for (const r of remotes.values()) if (r.consumer?.producerId === producerId) dropConsumer(r);
  renderPerformers();
});
socket.on('rejoin', ({ reason }) => {
  // The server dropped our performer already (e.g. its media worker died): join again on this connection.
  serverMember = false;
  recover(reason);
});
socket.on('replaced', () => {
  // This performer went on in another window (it joined with this tab's resume token): this one steps back.
  wantOnStage = false;
  wasOnStage = false;
  serverMember = false;
  clearRetry();
  endSession();
  showError('REPLACED', 'this performer continued in another window');
});
socket.on('stageStatus', ({ status }) => showStageStatus(status));
socket.on('callQueue', ({ calls: next }) => {
  calls = next;
  renderCalls();
});
socket.on('audioLevels', ({ levels }) => {
  const speaking = new Set(levels.filter((l) => l.volume > -50).map((l) => l.performerId));
  for (const r of remotes.values()) r.li.classList.toggle('speaking', speaking.has(r.info.id));
});
socket.on('disconnect', (reason) => {
  lastDisconnect = reason;
  if (reason === 'io client disconnect') return; // ours: whoever called disconnect() decides what is next
  // The server's performer went with the connection. 'io server disconnect' is retried like any other loss.
  serverMember = false;
  recover(reason === 'io server disconnect' ? 'the server closed the connection' : 'connection lost');
});
socket.on('connect_error', () => {
  connecting = false;
  unreachable++;
  // Cluster mode: this node has stopped answering and others are known: the page moves to one, which serves the
  // stage or sends it on to the node that does (a stage whose node died moves within seconds).
  if (wantOnStage && unreachable >= FAILOVER_AFTER && navigator.onLine && failOver()) return;
  if (wantOnStage) recover('cannot reach the server');
});
socket.on('connect', () => {
  unreachable = 0;
  connecting = false;
  if (wantOnStage) void join();
});
window.addEventListener('online', () => {
  showOnStage();
  networkChanged('back online');
});
window.addEventListener('offline', () => {
  if (retryTimer !== null) showRetry();
  else showOnStage();
});
(navigator as Navigator & { connection?: EventTarget }).connection?.addEventListener('change', () => networkChanged('the network changed'));

function startJoin(): void {
  if (!ui.name.value.trim()) {
    ui.error.textContent = t('performer.nameFirst');
    ui.name.focus();
    return;
  }
  localStorage.setItem('displayName', ui.name.value.trim());
  void audioCtx.resume();
  attempt = 0;
  wasOnStage = false;
  void join();
}
ui.join.addEventListener('click', startJoin);
// Sent here from another node of the cluster (after pressing Join there, or when its node stopped answering).
const movedHere = params.get('join') === '1';
if (movedHere) {
  params.delete('join');
  // Nodes the page came through knew of: kept until this node's own join answers with its list.
  takeCarriedNodes(stageId, params);
  params.delete('from');
  history.replaceState(null, '', `${location.pathname}?${params.toString()}${location.hash}`);
}
// A reload while on stage (this tab holds a resume token), or moved here: join at once, as the same performer if the
// tab has a token.
if ((movedHere || sessionStorage.getItem(RESUME_KEY)) && ui.name.value.trim()) startJoin();
ui.leave.addEventListener('click', () => void leave());
for (const [button, event] of [[ui.startBroadcast, 'startBroadcast'], [ui.stopBroadcast, 'stopBroadcast']] as const) {
  button.addEventListener('click', () => {
    button.disabled = true;
    request(event, {}).then(
      ({ status }) => showStageStatus(status),
      (err: unknown) => {
        ui.error.textContent = err instanceof Error ? err.message : String(err);
        showStageStatus(stageStatus);
      },
    );
  });
}
ui.mute.addEventListener('click', () => void toggleMute());

// Timeline: a chapter, track or marker placed where this performer's audio is now.
ui.eventForm.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const type = ui.eventType.value;
  const title = ui.eventTitle.value.trim();
  const artist = ui.eventArtist.value.trim();
  const payload: StageRequest<'postEvent'> =
    type === 'chapter' ? { type: 'chapter', title }
    : type === 'track' ? { type: 'track', title, ...(artist ? { artist } : {}) }
    : { type: 'marker', ...(title ? { label: title } : {}) };
  ui.postEvent.disabled = true;
  request('postEvent', payload).then(
    ({ event }) => {
      const what = event.type === 'marker' ? t('performer.kind.marker') : t(event.type === 'chapter' ? 'performer.event.chapter' : 'performer.event.track', { title: event.data.title ?? '' });
      ui.eventStatus.textContent = t('performer.event.at', { what, seconds: event.mediaTime.toFixed(1) });
      ui.eventStatus.dataset['eventId'] = event.id;
      ui.eventTitle.value = '';
      ui.eventArtist.value = '';
      showStageStatus(stageStatus);
    },
    (err: unknown) => {
      ui.eventStatus.textContent = err instanceof Error ? err.message : String(err);
      delete ui.eventStatus.dataset['eventId'];
      showStageStatus(stageStatus);
    },
  );
});

// Level meter of the own microphone (RMS in dBFS), updated each frame.
const micBuf = new Float32Array(micAnalyser.fftSize);
function drawMeter(): void {
  micAnalyser.getFloatTimeDomainData(micBuf);
  let sum = 0;
  for (const v of micBuf) sum += v * v;
  const db = micSource ? 10 * Math.log10(sum / micBuf.length + 1e-12) : -100;
  ui.meter.value = Math.max(-60, Math.min(0, db));
  requestAnimationFrame(drawMeter);
}
requestAnimationFrame(drawMeter);

// --- "Use OBS or another encoder": the WHIP URL and token, and what the stage's encoders are doing (polled) ---

const ENCODER_POLL_MS = 1000;
let encoders: EncoderList['encoders'] = [];

function copyButton(button: HTMLButtonElement, text: () => string): void {
  button.addEventListener('click', () => {
    void navigator.clipboard?.writeText(text()).then(
      () => {
        button.textContent = t('common.copied');
        window.setTimeout(() => (button.textContent = t('common.copy')), 1500);
      },
      () => undefined,
    );
  });
}

function showEncoders(list: EncoderList): void {
  ui.whipUrl.textContent = list.whipUrl;
  encoders = list.encoders;
  const publishing = encoders.filter((e) => e.state === 'publishing');
  const state = publishing.length > 0 ? 'publishing' : encoders.length > 0 ? 'connecting' : 'waiting';
  ui.encoderState.dataset['state'] = state;
  ui.encoderState.textContent =
    state === 'publishing' ? t('performer.encoder.publishing', { names: publishing.map((e) => e.name).join(', ') })
    : state === 'connecting' ? t('performer.encoder.connected', { names: encoders.map((e) => e.name).join(', ') })
    : t('performer.encoder.waiting');
  const level = Math.max(-127, ...publishing.map((e) => e.levelDbov ?? -127));
  ui.encoderLevel.value = Math.max(-70, level);
  // The level comes from the RTP audio-level extension, which OBS does not send (browsers do).
  const unknown = publishing.length > 0 && publishing.every((e) => !e.levelKnown);
  ui.encoderLevelLabel.hidden = unknown;
  if (unknown) ui.encoderState.textContent += ` ${t('performer.encoder.noLevel')}`;
}

async function pollEncoders(): Promise<void> {
  try {
    const res = await fetch(`/api/stages/${encodeURIComponent(stageId)}/encoders`, { headers: { authorization: `Bearer ${key}` }, cache: 'no-store' });
    if (res.ok) showEncoders((await res.json()) as EncoderList);
  } catch {
    // the next poll tries again
  } finally {
    window.setTimeout(() => void pollEncoders(), ENCODER_POLL_MS);
  }
}

ui.whipUrl.textContent = `${location.origin}/whip/${encodeURIComponent(stageId)}`;
ui.whipToken.textContent = key;
copyButton(ui.copyWhipUrl, () => ui.whipUrl.textContent ?? '');
copyButton(ui.copyWhipToken, () => key);

/** Read-only hooks for automated tests and diagnostics. */
declare global {
  interface Window {
    stageDebug: {
      performerId: () => string | null;
      /** Joins this page has made since it loaded (each rejoin counts). */
      joins: () => number;
      remotes: () => PerformerInfo[];
      /** The stage's open calls as this page shows them. */
      calls: () => CallView[];
      /** The stage's WHIP encoders as the panel shows them. */
      encoders: () => EncoderList['encoders'];
      /** Magnitude spectrum (dB) of everything this page hears, with the bin width in Hz. */
      hearingSpectrum: () => { binHz: number; db: number[] };
      sampleRate: number;
      /** The connection in detail (also body[data-link]), and every change of it: when and at which try. */
      link: () => LinkState;
      linkHistory: () => { link: LinkState; at: number; attempt: number }[];
      /** Completed ICE restarts since the page loaded. */
      iceRestarts: () => number;
      /** The reason Socket.IO gave for the last disconnect (e.g. 'io server disconnect', 'transport close'). */
      lastDisconnect: () => string | null;
      /** The Socket.IO connection's id (the server's socket.id), null while disconnected. */
      socketId: () => string | null;
      /** Runs the network-change handler (as on `online` or a navigator.connection `change`). */
      simulateNetworkChange: () => void;
      /** Per transport: its id, connection state and the local ICE username fragment (changes with each ICE restart). */
      transports: () => Promise<{ direction: 'send' | 'recv'; id: string; state: string; localUfrag: string | null }[]>;
    };
  }
}
window.stageDebug = {
  performerId: () => myId,
  joins: () => joins,
  remotes: () => [...remotes.values()].map((r) => r.info),
  calls: () => calls.map((c) => ({ ...c })),
  encoders: () => encoders.map((e) => ({ ...e })),
  hearingSpectrum: () => {
    const buf = new Float32Array(hearing.frequencyBinCount);
    hearing.getFloatFrequencyData(buf);
    return { binHz: audioCtx.sampleRate / hearing.fftSize, db: Array.from(buf) };
  },
  sampleRate: audioCtx.sampleRate,
  link: () => link,
  linkHistory: () => linkHistory.map((h) => ({ ...h })),
  iceRestarts: () => iceRestarts,
  lastDisconnect: () => lastDisconnect,
  socketId: () => socket.id ?? null,
  simulateNetworkChange: () => networkChanged('the network changed'),
  transports: async () => {
    const out = [];
    for (const [direction, t] of [['send', sendTransport], ['recv', recvTransport]] as const) {
      if (!t || t.closed) continue;
      let localUfrag: string | null = null;
      for (const s of (await t.getStats()).values() as IterableIterator<Record<string, unknown>>) {
        if (s['type'] === 'transport' && typeof s['iceLocalUsernameFragment'] === 'string') localUfrag = s['iceLocalUsernameFragment'];
      }
      out.push({ direction, id: t.id, state: t.connectionState, localUfrag });
    }
    return out;
  },
};

/**
 * The stage's public view (GET /api/stages/:id), so that the page shows the stage's title and its real on-air state
 * from the first paint, before anyone joins; the join's answer and the stage's events take over from there.
 */
async function showStageBeforeJoin(): Promise<void> {
  try {
    const res = await fetch(`/api/stages/${encodeURIComponent(stageId)}`, { cache: 'no-store' });
    if (!res.ok) return;
    const view = (await res.json()) as StageView;
    // Joined meanwhile: the join's answer is newer.
    if (state !== 'idle') return;
    ui.title.textContent = view.title;
    document.title = t('performer.docTitle', { title: view.title });
    showStageStatus(view.status);
  } catch {
    // Not reachable now: the join says what is wrong.
  }
}

if (!stageId || !key) showError('UNAUTHORIZED', 'missing stage id or key');
else if (insecure) {
  setState('idle', t('performer.openOverHttps'));
  void showStageBeforeJoin();
  void pollEncoders();
} else {
  setState('idle', t('performer.ready'));
  void showStageBeforeJoin();
  void pollEncoders();
}
