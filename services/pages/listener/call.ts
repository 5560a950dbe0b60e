// Call-in on the listener page: Request to speak, wait in the stage's queue (Cancel), and once a performer accepts,
// join the stage as a guest over WebRTC: the microphone (echo cancellation, noise suppression and auto gain on), the
// performers heard through the SFU (not oneself), and the HLS player stopped only once that audio plays, so there is
// neither a gap nor the stream leaking into the microphone. "On air" with a level meter and Hang up; when the call
// ends, the player resumes at the live edge.
//
// For automation: document.body.dataset.call = none|waiting|connecting|on-air|ended, and window.listenerDebug's
// call hooks (see main.ts).
import { Device, type types as mc } from 'mediasoup-client';
import type { CallView } from '../../shared/calls.ts';
import type { ListenContract, ListenRequest, ListenRequestName, ListenResponse } from '../../shared/listen.ts';
import type { PerformerInfo } from '../../shared/model.ts';
import type { ContractSocket, Request } from '../client.ts';
import { samePageOn } from '../nodes.ts';
import { explainInsecureOrigin } from '../secure.ts';
import { t } from '../i18n/index.ts';

export type CallState = 'none' | 'waiting' | 'connecting' | 'on-air' | 'ended';

/** What the player does around a call. */
export interface CallHost {
  socket: () => ContractSocket<ListenContract> | null;
  request: Request<ListenContract>;
  /** The call's audio plays: stop the stream (it would leak into the microphone, and it is seconds late). */
  stopStream: () => void;
  /** The call is over: play the stream again, at its live edge. */
  resumeStream: () => void;
}

/** Without a performer to hear, the stream stops this long after publishing anyway. */
const NO_REMOTE_HANDOVER_MS = 1500;

class Failed extends Error {
  constructor(
    message: string,
    readonly code = 'ERROR',
    /** WRONG_NODE (cluster mode): the node that serves the stage. */
    readonly ownerUrl = '',
  ) {
    super(message);
  }
}

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

export function setupCallIn(host: CallHost) {
  const ui = {
    form: $<HTMLFormElement>('call-form'),
    name: $<HTMLInputElement>('call-name'),
    topic: $<HTMLInputElement>('call-topic'),
    ask: $<HTMLButtonElement>('call-request'),
    live: $<HTMLDivElement>('call-live'),
    status: $<HTMLParagraphElement>('call-status'),
    meter: $<HTMLMeterElement>('call-level'),
    end: $<HTMLButtonElement>('call-end'),
    error: $<HTMLParagraphElement>('call-error'),
    audio: $<HTMLDivElement>('call-audio'),
  };

  let state: CallState = 'none';
  let call: CallView | null = null;
  let device: Device | null = null;
  let sendTransport: mc.Transport | null = null;
  let recvTransport: mc.Transport | null = null;
  let producer: mc.Producer | null = null;
  let mic: MediaStream | null = null;
  let ctx: AudioContext | null = null;
  let micAnalyser: AnalyserNode | null = null;
  let hearing: AnalyserNode | null = null;
  let handedOver = false;
  let handoverTimer: number | null = null;
  /** Bumped on every teardown: the steps of an older call's media stop. */
  let generation = 0;
  const remotes = new Map<string, { consumer: mc.Consumer | null; audio: HTMLAudioElement | null; source: MediaStreamAudioSourceNode | null }>();

  async function ask<E extends ListenRequestName>(event: E, payload: ListenRequest<E>): Promise<ListenResponse<E>> {
    const res = await host.request(event, payload);
    if (res.ok) return res.data;
    throw new Failed(res.error.message, res.error.code, 'ownerUrl' in res.error ? (res.error.ownerUrl ?? '') : '');
  }

  // A call needs the microphone: on an insecure origin, say where to call from instead of failing after the host takes it.
  const insecure = explainInsecureOrigin($<HTMLParagraphElement>('call-insecure'), 'caller');
  ui.ask.disabled = insecure;

  function setState(next: CallState, text: string): void {
    state = next;
    document.body.dataset['call'] = next;
    ui.status.textContent = text;
    ui.live.hidden = next === 'none' || next === 'ended';
    ui.form.hidden = !ui.live.hidden;
    ui.ask.disabled = insecure;
    ui.end.textContent = t(next === 'waiting' ? 'call.cancel' : 'call.hangUp');
  }

  function waitingText(position: number | null): string {
    return position ? t('call.waitingPosition', { position }) : t('call.waiting');
  }

  ui.name.value = localStorage.getItem('listenerName') ?? '';
  // Cluster mode: a call asked on a node that does not serve the stage moved the page to the node that does, with
  // the caller's name and topic (that node is another origin: this one's storage does not go with it). The form is
  // filled in again, and the caller presses Request to speak once more: an address alone never asks for a call (a
  // crafted link could otherwise put someone's microphone in a queue).
  const params = new URLSearchParams(location.search);
  let movedHere = params.get('call') === '1';
  if (movedHere) {
    ui.name.value = params.get('name') ?? ui.name.value;
    ui.topic.value = params.get('topic') ?? '';
    for (const k of ['call', 'name', 'topic', 'from']) params.delete(k);
    const rest = params.toString();
    history.replaceState(null, '', `${location.pathname}${rest ? `?${rest}` : ''}${location.hash}`);
  }

  /** Moves the page to the node that serves the stage, asking for the call again there. */
  function moveToOwner(ownerUrl: string): boolean {
    const target = samePageOn(ownerUrl);
    if (!target) return false;
    target.searchParams.set('call', '1');
    target.searchParams.set('name', ui.name.value.trim());
    const topic = ui.topic.value.trim();
    if (topic) target.searchParams.set('topic', topic);
    ui.status.textContent = t('call.movingToOwner');
    ui.error.textContent = t('call.movingToOwner');
    location.replace(target.toString());
    return true;
  }
  ui.form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    void requestCall();
  });
  ui.end.addEventListener('click', () => void endCall());

  async function requestCall(): Promise<void> {
    ui.error.textContent = '';
    ui.ask.disabled = true;
    const topic = ui.topic.value.trim();
    try {
      const { call: c } = await ask('requestCall', { name: ui.name.value, ...(topic ? { topic } : {}) });
      localStorage.setItem('listenerName', ui.name.value.trim());
      // The accept may already have come (the event is sent before this answer arrives).
      if (!call || call.id !== c.id) {
        call = c;
        setState('waiting', waitingText(null));
      }
    } catch (err) {
      if (err instanceof Failed && err.code === 'WRONG_NODE' && moveToOwner(err.ownerUrl)) return;
      ui.error.textContent = err instanceof Error ? err.message : String(err);
      ui.ask.disabled = insecure;
    }
  }

  async function endCall(): Promise<void> {
    ui.end.disabled = true;
    try {
      await ask('endCall', {});
    } catch (err) {
      ui.error.textContent = err instanceof Error ? err.message : String(err);
    } finally {
      ui.end.disabled = false;
    }
    finish(t('call.youHungUp'));
  }

  function onCall({ call: c, position }: { call: CallView; position: number | null }): void {
    if (call && c.id !== call.id) return;
    call = c;
    if (c.status === 'waiting') setState('waiting', waitingText(position));
    else if (c.status === 'on_air' && state === 'connecting') setState('connecting', t('call.connectingMic'));
    else if (['declined', 'cancelled', 'expired', 'ended'].includes(c.status)) finish(endText(c));
    if (c.muted !== (ui.live.dataset['muted'] === 'true')) ui.live.dataset['muted'] = String(c.muted);
    if (state === 'on-air') setState('on-air', onAirText());
  }

  function endText(c: CallView): string {
    switch (c.status) {
      case 'declined':
        return t('call.declined');
      case 'expired':
        return t('call.expired');
      case 'cancelled':
        return c.endReason === 'broadcast_ended' ? t('call.showEndedFirst') : t('call.withdrawn');
      default:
        return c.endReason === 'host' ? t('call.hostEnded')
          : c.endReason === 'network' ? t('call.cutOff')
          : c.endReason === 'broadcast_ended' ? t('listener.ended')
          : t('call.ended');
    }
  }

  function onAirText(): string {
    return call?.muted ? t('call.onAirMuted') : t('call.onAir');
  }

  /** The call was taken: microphone, transports, publish, hear the performers; the stream stops once they play. */
  async function onAccepted({ call: c, routerRtpCapabilities, performers }: { call: CallView; routerRtpCapabilities: unknown; performers: PerformerInfo[] }): Promise<void> {
    call = c;
    const my = ++generation;
    known.clear();
    for (const p of performers) known.set(p.id, p);
    const current = () => {
      if (my !== generation) throw new Failed('superseded');
    };
    setState('connecting', t('call.taken'));
    try {
      ctx ??= new AudioContext();
      void ctx.resume();
      let stream: MediaStream;
      try {
        // Voice processing on: the echo canceller removes what this page plays (the performers) from the microphone.
        stream = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 } });
      } catch {
        throw new Failed(t('call.micFailed'));
      }
      if (my !== generation) {
        // The call ended while the prompt was open: the microphone is released at once.
        for (const t of stream.getTracks()) t.stop();
        return;
      }
      mic = stream;
      micAnalyser = ctx.createAnalyser();
      ctx.createMediaStreamSource(mic).connect(micAnalyser);
      hearing = ctx.createAnalyser();
      hearing.fftSize = 8192;
      const dev = new Device();
      await dev.load({ routerRtpCapabilities: routerRtpCapabilities as mc.RtpCapabilities });
      current();
      device = dev;
      const sendInfo = await ask('createTransport', { direction: 'send' });
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
        ask('produce', { transportId: send.id, kind: 'audio', rtpParameters: rtpParameters as ListenRequest<'produce'>['rtpParameters'] })
          .then(({ producerId }) => ok({ id: producerId }))
          .catch(fail);
      });
      const recvInfo = await ask('createTransport', { direction: 'recv' });
      current();
      const recv = dev.createRecvTransport({
        id: recvInfo.id,
        iceParameters: recvInfo.iceParameters as mc.IceParameters,
        iceCandidates: recvInfo.iceCandidates as mc.IceCandidate[],
        dtlsParameters: recvInfo.dtlsParameters as mc.DtlsParameters,
      });
      recvTransport = recv;
      connectHandler(recv);
      const track = mic.getAudioTracks()[0];
      if (!track) throw new Failed(t('call.noTrack'));
      // DTX off, as for performers: the mix takes a silent stretch for a lost caller otherwise.
      producer = await send.produce({ track, codecOptions: { opusStereo: false, opusDtx: false, opusFec: true }, stopTracks: false });
      current();
      watchFirstPacket(producer);
      // Everyone known now (the snapshot, and whoever joined or published while the microphone was being opened).
      for (const p of known.values()) addRemote(p);
      setState('on-air', onAirText());
      // Nobody to hear yet (no performer publishes): hand over after a moment anyway.
      handoverTimer = window.setTimeout(() => {
        if (![...remotes.values()].some((r) => r.consumer)) handOver();
      }, NO_REMOTE_HANDOVER_MS);
    } catch (err) {
      if (my !== generation) return;
      ui.error.textContent = err instanceof Error ? err.message : String(err);
      void host.request('endCall', {});
      finish(t('call.notConnected'));
    }
  }

  let firstSentMs: number | null = null;
  /** Diagnostics: when the first packet left (the server stamps call_connected when it arrives). */
  function watchFirstPacket(p: mc.Producer): void {
    firstSentMs = null;
    const timer = window.setInterval(() => {
      if (p.closed) return clearInterval(timer);
      void p.getStats().then((stats) => {
        for (const s of stats.values() as IterableIterator<Record<string, unknown>>) {
          if (s['type'] === 'outbound-rtp' && typeof s['packetsSent'] === 'number' && s['packetsSent'] > 0 && firstSentMs === null) {
            firstSentMs = Date.now();
            clearInterval(timer);
          }
        }
      });
    }, 20);
  }

  function connectHandler(t: mc.Transport): void {
    t.on('connect', ({ dtlsParameters }, ok, fail) => {
      ask('connectTransport', { transportId: t.id, dtlsParameters: dtlsParameters as ListenRequest<'connectTransport'>['dtlsParameters'] })
        .then(() => ok())
        .catch(fail);
    });
  }

  /** The stage's performers as last heard of (kept from the accept on, whatever the call's state). */
  const known = new Map<string, PerformerInfo>();

  function addRemote(info: PerformerInfo): void {
    known.set(info.id, info);
    if (!recvTransport) return; // consumed once the receive transport exists
    let r = remotes.get(info.id);
    if (!r) {
      r = { consumer: null, audio: null, source: null };
      remotes.set(info.id, r);
    }
    if (info.producerId && !r.consumer) void consume(info.id, info.producerId);
  }

  async function consume(performerId: string, producerId: string): Promise<void> {
    const transport = recvTransport;
    if (!device || !transport) return;
    const r = remotes.get(performerId);
    if (!r) return;
    try {
      const c = await ask('consume', { producerId, rtpCapabilities: device.recvRtpCapabilities as ListenRequest<'consume'>['rtpCapabilities'] });
      if (transport !== recvTransport || remotes.get(performerId) !== r || r.consumer) return;
      const consumer = await transport.consume({ id: c.consumerId, producerId: c.producerId, kind: 'audio', rtpParameters: c.rtpParameters as mc.RtpParameters });
      r.consumer = consumer;
      const stream = new MediaStream([consumer.track]);
      const audio = document.createElement('audio');
      audio.autoplay = true;
      audio.srcObject = stream;
      audio.dataset['performerId'] = performerId;
      // The hand-over: the stream stops once the performers are heard over WebRTC, not before (no gap).
      audio.addEventListener('playing', () => handOver(), { once: true });
      ui.audio.append(audio);
      r.audio = audio;
      void audio.play().catch(() => undefined);
      if (ctx && hearing) {
        r.source = ctx.createMediaStreamSource(stream);
        r.source.connect(hearing);
      }
      await ask('resumeConsumer', { consumerId: consumer.id });
    } catch (err) {
      console.warn('consume failed', err);
    }
  }

  function dropRemote(id: string): void {
    known.delete(id);
    const r = remotes.get(id);
    if (!r) return;
    r.consumer?.close();
    r.source?.disconnect();
    if (r.audio) {
      r.audio.srcObject = null;
      r.audio.remove();
    }
    remotes.delete(id);
  }

  function handOver(): void {
    if (handedOver || state !== 'on-air') return;
    handedOver = true;
    host.stopStream();
  }

  function teardown(): void {
    generation++;
    known.clear();
    if (handoverTimer !== null) clearTimeout(handoverTimer);
    handoverTimer = null;
    for (const id of [...remotes.keys()]) dropRemote(id);
    producer?.close();
    producer = null;
    sendTransport?.close();
    sendTransport = null;
    recvTransport?.close();
    recvTransport = null;
    device = null;
    for (const t of mic?.getTracks() ?? []) t.stop();
    mic = null;
    micAnalyser = null;
    hearing = null;
  }

  function finish(text: string): void {
    const wasHandedOver = handedOver;
    teardown();
    handedOver = false;
    call = null;
    setState('ended', text);
    ui.form.hidden = false;
    if (wasHandedOver) host.resumeStream();
  }

  // Level meter of the caller's microphone (RMS, dBFS).
  const buf = new Float32Array(2048);
  function drawMeter(): void {
    if (micAnalyser) {
      micAnalyser.getFloatTimeDomainData(buf);
      let sum = 0;
      for (const v of buf) sum += v * v;
      ui.meter.value = Math.max(-60, Math.min(0, 10 * Math.log10(sum / buf.length + 1e-12)));
    } else {
      ui.meter.value = -60;
    }
    requestAnimationFrame(drawMeter);
  }
  requestAnimationFrame(drawMeter);

  /** Wires the connection's call events (again after every reconnection: a new connection has no call). */
  function bind(s: ContractSocket<ListenContract>): void {
    s.on('call', onCall);
    s.on('callAccepted', (a) => void onAccepted(a));
    s.on('performerJoined', ({ performer }) => call && addRemote(performer));
    s.on('performerUpdated', ({ performer }) => call && addRemote(performer));
    s.on('performerLeft', ({ performerId }) => dropRemote(performerId));
    s.on('disconnect', () => {
      // The server ends a call whose connection is gone.
      if (call) finish(t('call.cutOff'));
    });
  }

  // Leaving the page is the caller hanging up (not a lost network): the connection says goodbye.
  window.addEventListener('pagehide', () => {
    if (call) host.socket()?.disconnect();
  });

  setState('none', '');
  return {
    bind,
    /** The page subscribed to the stage: a call carried over from another node is offered again. */
    subscribed: () => {
      if (!movedHere || insecure) return;
      movedHere = false;
      ui.error.textContent = t('call.pressAgain');
      ui.ask.focus();
    },
    /** True while the call's audio replaces the stream. */
    onAir: () => handedOver,
    state: () => state,
    callId: () => call?.id ?? null,
    /** What the caller hears over WebRTC (dB spectrum), with the bin width in Hz. */
    hearingSpectrum: () => {
      if (!hearing || !ctx) return { binHz: 0, db: [] as number[] };
      const b = new Float32Array(hearing.frequencyBinCount);
      hearing.getFloatFrequencyData(b);
      return { binHz: ctx.sampleRate / hearing.fftSize, db: Array.from(b) };
    },
    /** When this page's producer first reported a packet sent (wall ms, polled every 20 ms), for timing call_connected. */
    firstPacketSentMs: () => firstSentMs,
  };
}
