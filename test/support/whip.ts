// A WHIP publisher built on node-datachannel (the npm binding of libdatachannel, which OBS Studio's WHIP output is
// built on), shaped like OBS's: Opus on PT 111 with OBS's fmtp and an SSRC, a video m-line (H.264 on PT 96), and no
// candidates in the offer (OBS 30.2+ gathers only after the answer and never trickles). The audio is real Opus RTP:
// FFmpeg encodes a tone (or a WAV file) and sends it to a local UDP port, and each packet is forwarded on the track.
import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import dgram from 'node:dgram';
import nodeDataChannel from 'node-datachannel';
import { sineGainDb } from './media.ts';

/** OBS's Opus fmtp (libdatachannel's default Opus profile, as OBS sends it). */
export const OBS_OPUS_FMTP = 'minptime=10;maxaveragebitrate=96000;stereo=1;sprop-stereo=1;useinbandfec=1';

export interface WhipPublishResult {
  status: number;
  location: string | null;
  answer: string;
  links: string[];
}

export class WhipPublisher {
  readonly ssrc = crypto.randomInt(1, 2 ** 31);
  readonly offer: string;
  readonly #pc: nodeDataChannel.PeerConnection;
  readonly #track: nodeDataChannel.Track;
  #socket: dgram.Socket | null = null;
  #ffmpeg: ChildProcess | null = null;
  #exited: Promise<void> = Promise.resolve();
  /** Forwarding RTP on the track (false: the path is "dead", nothing is sent). */
  sending = true;
  packetsSent = 0;
  location: string | null = null;
  #opened: Promise<void>;

  constructor(opts: { video?: boolean } = {}) {
    this.#pc = new nodeDataChannel.PeerConnection('whip-test', { iceServers: [] });
    const audio = new nodeDataChannel.Audio('0', 'SendOnly');
    audio.addOpusCodec(111);
    audio.addSSRC(this.ssrc, 'obs', 'obs', 'obs-audio');
    this.#track = this.#pc.addTrack(audio);
    this.#opened = new Promise((resolve) => this.#track.onOpen(() => resolve()));
    if (opts.video !== false) {
      const video = new nodeDataChannel.Video('1', 'SendOnly');
      video.addH264Codec(96);
      this.#pc.addTrack(video);
    }
    this.#pc.setLocalDescription();
    let offer = this.#pc.localDescription()?.sdp ?? '';
    // As OBS: no candidates in the offer, and OBS's Opus parameters.
    offer = offer.replace(/^a=(candidate:|end-of-candidates).*\r?\n/gm, '');
    if (/^a=fmtp:111 /m.test(offer)) offer = offer.replace(/^a=fmtp:111 .*$/m, `a=fmtp:111 ${OBS_OPUS_FMTP}`);
    else offer = offer.replace(/^(a=rtpmap:111 .*)$/m, `$1\r\na=fmtp:111 ${OBS_OPUS_FMTP}`);
    this.offer = offer;
  }

  /** POSTs the offer; on 201 applies the answer. */
  async publish(url: string, token: string | null, offer = this.offer): Promise<WhipPublishResult> {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/sdp', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: offer,
    });
    const answer = await res.text();
    const location = res.headers.get('location');
    const links = res.headers.get('link')?.split(/,\s*(?=<)/) ?? [];
    if (res.status === 201) {
      this.location = location ? new URL(location, url).toString() : null;
      this.#pc.setRemoteDescription(answer, 'answer');
    }
    return { status: res.status, location, answer, links };
  }

  /** Resolves once the audio track is open (ICE and DTLS done). */
  opened(timeoutMs = 10_000): Promise<boolean> {
    return Promise.race([this.#opened.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), timeoutMs))]);
  }

  /** Starts FFmpeg encoding a tone (or `wav`) to Opus RTP, forwarded on the track (20 ms frames, real time). */
  async startAudio(source: { freq: number; levelDb?: number } | { wav: string }): Promise<void> {
    const socket = dgram.createSocket('udp4');
    this.#socket = socket;
    socket.on('message', (packet) => {
      // RTP of PT 111 only (FFmpeg's RTCP goes to the next port, which nobody reads).
      if (!this.sending || !this.#track.isOpen() || packet.length < 12 || (packet[1]! & 0x7f) !== 111) return;
      try {
        this.#track.sendMessageBinary(packet);
        this.packetsSent++;
      } catch {
        // closed meanwhile
      }
    });
    await new Promise<void>((r) => socket.bind(0, '127.0.0.1', () => r()));
    const port = socket.address().port;
    const input =
      'wav' in source
        ? ['-re', '-i', source.wav]
        : ['-re', '-f', 'lavfi', '-i', `sine=frequency=${source.freq}:sample_rate=48000`, '-af', `volume=${sineGainDb(source.levelDb ?? -12)}dB`];
    const proc = spawn(
      'ffmpeg',
      ['-v', 'error', ...input, '-ac', '2', '-c:a', 'libopus', '-b:a', '96k', '-application', 'audio', '-frame_duration', '20',
        '-payload_type', '111', '-ssrc', String(this.ssrc), '-f', 'rtp', `rtp://127.0.0.1:${port}`],
      { stdio: ['ignore', 'ignore', 'inherit'] },
    );
    this.#ffmpeg = proc;
    this.#exited = new Promise((r) => proc.once('exit', () => r()));
  }

  /** DELETEs the resource (as OBS does on Stop Streaming). */
  async unpublish(token: string | null): Promise<number> {
    if (!this.location) return 0;
    const res = await fetch(this.location, { method: 'DELETE', headers: token ? { authorization: `Bearer ${token}` } : {} });
    return res.status;
  }

  /** Stops everything this publisher started: FFmpeg (by its PID), the socket, the peer connection. */
  async close(): Promise<void> {
    const p = this.#ffmpeg;
    if (p && p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    await this.#exited;
    this.#socket?.close();
    this.#socket = null;
    this.#pc.close();
  }
}

// nodeDataChannel.cleanup() is not called: with every peer connection closed the process exits without it, and
// calling it after closes crashed the process (SIGSEGV) in node-datachannel 0.33.4.
