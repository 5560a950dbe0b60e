// The performer page: join a stage with the microphone, hear the other performers, mute, leave.
// Bundled by esbuild for the browser. State for automation: document.body.dataset.state = idle|joining|publishing|error.
import { Device, type types as mc } from 'mediasoup-client';
import { io, type Socket } from 'socket.io-client';
import type {
  StageStatus,
  Ack,
  ClientToServerEvents,
  PerformerInfo,
  RequestName,
  RequestPayload,
  ResponseData,
  ServerToClientEvents,
} from '../../shared/protocol.ts';

type PageState = 'idle' | 'joining' | 'publishing' | 'error';

const REQUEST_TIMEOUT_MS = 10_000;
const RETRY_BASE_MS = 500;
const RETRY_MAX_MS = 8_000;

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
};

const stageId = decodeURIComponent(location.pathname.split('/').filter(Boolean)[1] ?? '');
const params = new URLSearchParams(location.search);
const key = params.get('key') ?? '';
ui.name.value = params.get('name') ?? localStorage.getItem('displayName') ?? '';
ui.raw.checked = params.get('raw') === '1';

class RequestFailed extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** Errors after which trying again cannot help. */
const FATAL_CODES = new Set(['UNAUTHORIZED', 'NOT_FOUND', 'STAGE_FULL', 'BAD_REQUEST', 'MIC_DENIED', 'NO_MIC']);

const MESSAGES: Record<string, string> = {
  UNAUTHORIZED: 'This performer link has the wrong key. Ask the host for a new link.',
  NOT_FOUND: 'This stage does not exist.',
  STAGE_FULL: 'The stage is full. Try again when someone leaves.',
  MIC_DENIED: 'Microphone access was denied. Allow it in the browser and press "Join stage" again.',
  NO_MIC: 'No microphone was found.',
};

const socket: Socket<ServerToClientEvents, ClientToServerEvents> = io('/stage', {
  transports: ['websocket'],
  reconnectionDelay: RETRY_BASE_MS,
  reconnectionDelayMax: RETRY_MAX_MS,
  randomizationFactor: 0.5,
});

function request<E extends RequestName>(event: E, payload: RequestPayload<E>): Promise<ResponseData[E]> {
  return new Promise((resolve, reject) => {
    const emit = socket.timeout(REQUEST_TIMEOUT_MS).emit as unknown as (
      e: E,
      p: RequestPayload<E>,
      cb: (err: Error | null, res: Ack<ResponseData[E]>) => void,
    ) => void;
    emit.call(socket.timeout(REQUEST_TIMEOUT_MS), event, payload, (err, res) => {
      if (err) reject(new RequestFailed('TIMEOUT', `${event} timed out`));
      else if (res.ok) resolve(res.data);
      else reject(new RequestFailed(res.error.code, res.error.message));
    });
  });
}

interface Remote {
  info: PerformerInfo;
  consumer: mc.Consumer | null;
  audio: HTMLAudioElement | null;
  source: MediaStreamAudioSourceNode | null;
  li: HTMLLIElement;
}

let state: PageState = 'idle';
let wantOnStage = false;
let device: Device | null = null;
let sendTransport: mc.Transport | null = null;
let recvTransport: mc.Transport | null = null;
let producer: mc.Producer | null = null;
let micStream: MediaStream | null = null;
let myId: string | null = null;
let muted = false;
let retryTimer: number | null = null;
let attempt = 0;
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
  ui.onAir.textContent = status === 'live' ? 'On air' : status === 'ended' ? 'Ended' : 'Off air';
  document.body.dataset['stageStatus'] = status;
  ui.startBroadcast.disabled = state !== 'publishing' || status !== 'idle';
  ui.stopBroadcast.disabled = state !== 'publishing' || status !== 'live';
  // Chapters, tracks and markers belong to a broadcast: only while on air.
  ui.postEvent.disabled = state !== 'publishing' || status !== 'live';
}

function setState(next: PageState, status: string): void {
  state = next;
  document.body.dataset['state'] = next;
  ui.status.textContent = status;
  ui.join.disabled = next === 'joining' || next === 'publishing';
  ui.leave.disabled = !wantOnStage;
  ui.mute.disabled = next !== 'publishing';
  showStageStatus(stageStatus);
  if (next !== 'error') ui.error.textContent = '';
}

function showError(code: string, message: string): void {
  ui.error.textContent = MESSAGES[code] ?? message;
  document.body.dataset['error'] = code;
  setState('error', 'Not on stage');
}

function renderPerformers(): void {
  for (const r of remotes.values()) {
    r.li.textContent = `${r.info.displayName}${r.info.muted ? ' (muted)' : ''}${r.consumer ? '' : ' (connecting)'}`;
  }
}

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
    const c = await request('consume', { producerId, rtpCapabilities: device.recvRtpCapabilities as RequestPayload<'consume'>['rtpCapabilities'] });
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
    request('connectTransport', { transportId: t.id, dtlsParameters: dtlsParameters as RequestPayload<'connectTransport'>['dtlsParameters'] })
      .then(() => ok())
      .catch(fail);
  });
  t.on('connectionstatechange', (s) => {
    if (s === 'failed' && t === sendTransport) void restartIce(t);
    if (s === 'failed' && t === recvTransport) void restartIce(t);
  });
}

async function restartIce(t: mc.Transport): Promise<void> {
  try {
    const { iceParameters } = await request('restartIce', { transportId: t.id });
    await t.restartIce({ iceParameters: iceParameters as mc.IceParameters });
  } catch {
    scheduleRejoin('network lost');
  }
}

async function joinOnce(): Promise<void> {
  setState('joining', 'Joining…');
  micStream ??= await openMic();
  const track = micStream.getAudioTracks()[0];
  if (!track) throw new RequestFailed('NO_MIC', 'no audio track');
  track.enabled = !muted;
  if (!micSource) {
    micSource = audioCtx.createMediaStreamSource(micStream);
    micSource.connect(micAnalyser);
  }
  const joined = await request('join', { stageId, key, displayName: ui.name.value.trim() });
  myId = joined.performerId;
  stageStatus = joined.stage.status;
  ui.title.textContent = joined.stage.title;
  document.title = `${joined.stage.title} · stage`;
  const dev = new Device();
  await dev.load({ routerRtpCapabilities: joined.routerRtpCapabilities as mc.RtpCapabilities });
  device = dev;

  const sendInfo = await request('createTransport', { direction: 'send' });
  const send = dev.createSendTransport({
    id: sendInfo.id,
    iceParameters: sendInfo.iceParameters as mc.IceParameters,
    iceCandidates: sendInfo.iceCandidates as mc.IceCandidate[],
    dtlsParameters: sendInfo.dtlsParameters as mc.DtlsParameters,
  });
  sendTransport = send;
  connectHandler(send);
  send.on('produce', ({ rtpParameters }, ok, fail) => {
    request('produce', { transportId: send.id, kind: 'audio', rtpParameters: rtpParameters as RequestPayload<'produce'>['rtpParameters'] })
      .then(({ producerId }) => ok({ id: producerId }))
      .catch(fail);
  });

  const recvInfo = await request('createTransport', { direction: 'recv' });
  const recv = dev.createRecvTransport({
    id: recvInfo.id,
    iceParameters: recvInfo.iceParameters as mc.IceParameters,
    iceCandidates: recvInfo.iceCandidates as mc.IceCandidate[],
    dtlsParameters: recvInfo.dtlsParameters as mc.DtlsParameters,
  });
  recvTransport = recv;
  connectHandler(recv);

  // DTX off: a performer's packets must never stop (the mixer depends on it); mute sends encoded silence instead.
  producer = await send.produce({ track, codecOptions: { opusStereo: false, opusDtx: false, opusFec: true }, stopTracks: false });
  for (const p of joined.performers) addRemote(p);
  if (muted) await request('setMuted', { muted: true });
  attempt = 0;
  setState('publishing', `On stage as ${ui.name.value.trim()}`);
}

function scheduleRejoin(reason: string): void {
  if (!wantOnStage) return;
  teardownMedia();
  if (retryTimer !== null) return;
  const delay = Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** attempt) * (0.5 + Math.random() * 0.5);
  attempt++;
  setState('joining', `Reconnecting (${reason})…`);
  retryTimer = window.setTimeout(() => {
    retryTimer = null;
    if (socket.connected) void join();
  }, delay);
}

async function join(): Promise<void> {
  if (state === 'joining' && retryTimer === null && device) return;
  wantOnStage = true;
  try {
    await joinOnce();
  } catch (err) {
    const code = err instanceof RequestFailed ? err.code : 'ERROR';
    teardownMedia();
    if (FATAL_CODES.has(code)) {
      wantOnStage = false;
      showError(code, err instanceof Error ? err.message : String(err));
    } else {
      scheduleRejoin(err instanceof Error ? err.message : 'error');
    }
  }
}

async function leave(): Promise<void> {
  wantOnStage = false;
  if (retryTimer !== null) clearTimeout(retryTimer);
  retryTimer = null;
  if (myId) await request('leave', {}).catch(() => undefined);
  teardownMedia();
  micSource?.disconnect();
  micSource = null;
  micStream?.getTracks().forEach((t) => t.stop());
  micStream = null;
  setState('idle', 'Left the stage');
}

async function toggleMute(): Promise<void> {
  muted = !muted;
  // track.enabled=false keeps Opus packets (silence) flowing, so the mix never waits on this performer.
  micStream?.getAudioTracks().forEach((t) => (t.enabled = !muted));
  ui.mute.textContent = muted ? 'Unmute' : 'Mute';
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
socket.on('rejoin', ({ reason }) => scheduleRejoin(reason));
socket.on('stageStatus', ({ status }) => showStageStatus(status));
socket.on('audioLevels', ({ levels }) => {
  const speaking = new Set(levels.filter((l) => l.volume > -50).map((l) => l.performerId));
  for (const r of remotes.values()) r.li.classList.toggle('speaking', speaking.has(r.info.id));
});
socket.on('disconnect', () => {
  if (wantOnStage) {
    teardownMedia();
    setState('joining', 'Connection lost, reconnecting…');
  }
});
socket.on('connect', () => {
  if (wantOnStage && !device) void join();
});

ui.join.addEventListener('click', () => {
  if (!ui.name.value.trim()) {
    ui.error.textContent = 'Enter your name first.';
    ui.name.focus();
    return;
  }
  localStorage.setItem('displayName', ui.name.value.trim());
  void audioCtx.resume();
  attempt = 0;
  void join();
});
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
  const payload: RequestPayload<'postEvent'> =
    type === 'chapter' ? { type: 'chapter', title }
    : type === 'track' ? { type: 'track', title, ...(artist ? { artist } : {}) }
    : { type: 'marker', ...(title ? { label: title } : {}) };
  ui.postEvent.disabled = true;
  request('postEvent', payload).then(
    ({ event }) => {
      const what = event.type === 'marker' ? 'Marker' : `${event.type === 'chapter' ? 'Chapter' : 'Track'} “${event.data.title ?? ''}”`;
      ui.eventStatus.textContent = `${what} at ${event.mediaTime.toFixed(1)} s into the broadcast`;
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

/** Read-only hooks for automated tests and diagnostics. */
declare global {
  interface Window {
    stageDebug: {
      performerId: () => string | null;
      remotes: () => PerformerInfo[];
      /** Magnitude spectrum (dB) of everything this page hears, with the bin width in Hz. */
      hearingSpectrum: () => { binHz: number; db: number[] };
      sampleRate: number;
    };
  }
}
window.stageDebug = {
  performerId: () => myId,
  remotes: () => [...remotes.values()].map((r) => r.info),
  hearingSpectrum: () => {
    const buf = new Float32Array(hearing.frequencyBinCount);
    hearing.getFloatFrequencyData(buf);
    return { binHz: audioCtx.sampleRate / hearing.fftSize, db: Array.from(buf) };
  },
  sampleRate: audioCtx.sampleRate,
};

if (!stageId || !key) showError('UNAUTHORIZED', 'missing stage id or key');
else setState('idle', 'Ready. Enter your name and join.');
