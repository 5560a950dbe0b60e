// WHIP's SDP (RFC 9725): reading an encoder's offer (OBS, GStreamer, a browser) into what mediasoup needs, and writing
// the answer: ICE-lite, every candidate, our DTLS role, Opus with the offer's parameters; every other m-line rejected
// (port 0), never the whole offer. Pure: parsing with sdp-transform, no I/O. docs/whip.md says what is supported.
import * as sdpTransform from 'sdp-transform';

/** Why an offer is refused, with the HTTP status WHIP answers it with (RFC 9725: 400 malformed, 422 unsupported). */
export class SdpError extends Error {
  constructor(
    readonly status: 400 | 422,
    message: string,
  ) {
    super(message);
    this.name = 'SdpError';
  }
}

/** RTP header extensions the stage's router understands for audio (anything else in the offer is left out). */
const AUDIO_EXTENSIONS = new Set([
  'urn:ietf:params:rtp-hdrext:sdes:mid',
  'urn:ietf:params:rtp-hdrext:ssrc-audio-level',
  'http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time',
]);

export const MAX_OFFER_BYTES = 64 * 1024;

export interface WhipOffer {
  ice: { usernameFragment: string; password: string };
  /** The encoder's DTLS fingerprint (sha-256 preferred) and its setup attribute. */
  fingerprint: { algorithm: string; value: string };
  setup: 'actpass' | 'active' | 'passive';
  audio: {
    mid: string;
    payloadType: number;
    /** The offer's Opus fmtp parameters (stereo, sprop-stereo, useinbandfec, minptime...), as numbers where numeric. */
    parameters: Record<string, string | number>;
    ssrc: number | null;
    cname: string | null;
    headerExtensions: { uri: string; id: number }[];
  };
  /** Every m-line, in order: the audio one accepted, the others rejected in the answer. */
  lines: { mid: string; type: string; protocol: string; payloads: string; accepted: boolean }[];
}

/** Parses and checks an offer. Throws SdpError (400 or 422) with a message an encoder's log can show. */
export function parseOffer(text: string): WhipOffer {
  if (typeof text !== 'string' || text.length === 0) throw new SdpError(400, 'the body is empty: send the SDP offer');
  if (text.length > MAX_OFFER_BYTES) throw new SdpError(400, `the SDP offer is larger than ${MAX_OFFER_BYTES} bytes`);
  if (!/^v=0\r?\n/.test(text)) throw new SdpError(400, 'the body is not an SDP offer (it must start with v=0)');
  let sdp: sdpTransform.SessionDescription;
  try {
    sdp = sdpTransform.parse(text);
  } catch (err) {
    throw new SdpError(400, `the SDP offer cannot be parsed: ${err instanceof Error ? err.message : String(err)}`);
  }
  const media = Array.isArray(sdp.media) ? sdp.media : [];
  if (media.length === 0) throw new SdpError(400, 'the SDP offer has no m= line');
  if (media.length > 16) throw new SdpError(422, 'the SDP offer has more than 16 m= lines');

  const lines: WhipOffer['lines'] = [];
  let audio: WhipOffer['audio'] | null = null;
  let audioMedia: (typeof media)[number] | null = null;
  let reason = 'the SDP offer has no audio m= line';
  for (const [i, m] of media.entries()) {
    const mid = m.mid !== undefined ? String(m.mid) : String(i);
    if (!/^[A-Za-z0-9_-]{1,32}$/.test(mid)) throw new SdpError(400, `m= line ${i}: invalid a=mid`);
    const line = { mid, type: String(m.type), protocol: String(m.protocol ?? 'UDP/TLS/RTP/SAVPF'), payloads: String(m.payloads ?? '0').trim() || '0', accepted: false };
    lines.push(line);
    if (audio || m.type !== 'audio') continue;
    if (!/^(UDP\/TLS\/RTP\/SAVPF|UDP\/TLS\/RTP\/SAVP|TCP\/TLS\/RTP\/SAVPF)$/.test(line.protocol)) {
      reason = `the audio m= line's protocol ${line.protocol.slice(0, 40)} is not WebRTC's (UDP/TLS/RTP/SAVPF)`;
      continue;
    }
    if (m.direction && m.direction !== 'sendonly' && m.direction !== 'sendrecv') {
      reason = `the audio m= line is ${m.direction}: an encoder sends (sendonly)`;
      continue;
    }
    const opus = (m.rtp ?? []).find((r) => r.codec.toLowerCase() === 'opus' && r.rate === 48000 && (r.encoding === undefined || Number(r.encoding) === 2));
    if (!opus) {
      const codecs = (m.rtp ?? []).map((r) => `${r.codec}/${r.rate}`).join(', ') || 'none';
      reason = `the audio m= line offers no Opus 48000/2 (it offers ${codecs.slice(0, 120)}): only Opus is supported`;
      continue;
    }
    if (!Number.isInteger(opus.payload) || opus.payload < 0 || opus.payload > 127) throw new SdpError(400, 'the Opus payload type is not 0-127');
    const fmtp = (m.fmtp ?? []).find((f) => f.payload === opus.payload);
    const parameters = fmtp ? (sdpTransform.parseParams(fmtp.config) as Record<string, string | number>) : {};
    const ssrcLines = (m.ssrcs ?? []).filter((s) => s.id !== undefined);
    const ssrcs = [...new Set(ssrcLines.map((s) => Number(s.id)))].filter((n) => Number.isInteger(n) && n > 0 && n < 2 ** 32);
    const headerExtensions = (m.ext ?? [])
      .filter((e) => AUDIO_EXTENSIONS.has(e.uri) && Number.isInteger(e.value) && e.value >= 1 && e.value <= 14)
      .map((e) => ({ uri: e.uri, id: e.value }));
    if (ssrcs.length === 0 && !headerExtensions.some((e) => e.uri === 'urn:ietf:params:rtp-hdrext:sdes:mid')) {
      reason = 'the audio m= line has neither an a=ssrc nor the mid header extension: its packets could not be told apart';
      continue;
    }
    audio = {
      mid,
      payloadType: opus.payload,
      parameters,
      // A single SSRC (FID/RTX groups are for video).
      ssrc: ssrcs[0] ?? null,
      cname: String(ssrcLines.find((s) => s.attribute === 'cname')?.value ?? '') || null,
      headerExtensions,
    };
    audioMedia = m;
    line.accepted = true;
  }
  if (!audio || !audioMedia) throw new SdpError(422, reason);

  const ufrag = audioMedia.iceUfrag ?? sdp.iceUfrag;
  const pwd = audioMedia.icePwd ?? sdp.icePwd;
  if (!ufrag || !pwd) throw new SdpError(400, 'the SDP offer has no a=ice-ufrag / a=ice-pwd');
  const fp = audioMedia.fingerprint ?? sdp.fingerprint;
  if (!fp?.type || !fp.hash) throw new SdpError(400, 'the SDP offer has no a=fingerprint');
  const algorithm = fp.type.toLowerCase();
  if (!['sha-1', 'sha-224', 'sha-256', 'sha-384', 'sha-512'].includes(algorithm)) throw new SdpError(400, `unsupported fingerprint algorithm ${algorithm.slice(0, 20)}`);
  if (!/^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2})+$/.test(fp.hash)) throw new SdpError(400, 'the a=fingerprint is not a colon-separated hex digest');
  const setup = String(audioMedia.setup ?? sdp.setup ?? 'actpass');
  if (setup !== 'actpass' && setup !== 'active' && setup !== 'passive') throw new SdpError(400, `a=setup:${setup.slice(0, 20)} is not actpass, active or passive`);
  return { ice: { usernameFragment: ufrag, password: pwd }, fingerprint: { algorithm, value: fp.hash }, setup, audio, lines };
}

/** Our side of the connection, from the mediasoup WebRtcTransport made for the publisher. */
export interface AnswerTransport {
  iceParameters: { usernameFragment: string; password: string };
  iceCandidates: { foundation: string; priority: number; ip: string; protocol: 'udp' | 'tcp'; port: number; type: string; tcpType?: string }[];
  /** Our fingerprint (sha-256). */
  fingerprint: { algorithm: string; value: string };
}

/**
 * Our DTLS role against the offer's setup: passive (DTLS server) unless the encoder insists on being passive itself.
 * Returns the answer's a=setup and the role to give mediasoup's connect(), which is the REMOTE side's.
 */
export function dtlsRoles(offerSetup: WhipOffer['setup']): { answerSetup: 'passive' | 'active'; remoteRole: 'client' | 'server' } {
  return offerSetup === 'passive' ? { answerSetup: 'active', remoteRole: 'server' } : { answerSetup: 'passive', remoteRole: 'client' };
}

/** The SDP answer: ICE-lite, every candidate, the offer's Opus, the other m-lines rejected (port 0). */
export function buildAnswer(offer: WhipOffer, t: AnswerTransport, sessionId: string): string {
  const { answerSetup } = dtlsRoles(offer.setup);
  const a = offer.audio;
  const fmtp = Object.entries(a.parameters)
    .map(([k, v]) => `${k}=${v}`)
    .join(';');
  const out = [
    'v=0',
    `o=- ${sessionId} 2 IN IP4 127.0.0.1`,
    's=-',
    't=0 0',
    'a=ice-lite',
    `a=group:BUNDLE ${a.mid}`,
    'a=msid-semantic: WMS *',
    `a=fingerprint:${t.fingerprint.algorithm} ${t.fingerprint.value}`,
  ];
  for (const line of offer.lines) {
    if (!line.accepted) {
      out.push(`m=${line.type} 0 ${line.protocol} ${line.payloads}`, 'c=IN IP4 0.0.0.0', `a=mid:${line.mid}`, 'a=inactive');
      continue;
    }
    out.push(
      `m=audio 9 UDP/TLS/RTP/SAVPF ${a.payloadType}`,
      'c=IN IP4 0.0.0.0',
      `a=mid:${a.mid}`,
      'a=recvonly',
      `a=ice-ufrag:${t.iceParameters.usernameFragment}`,
      `a=ice-pwd:${t.iceParameters.password}`,
      `a=fingerprint:${t.fingerprint.algorithm} ${t.fingerprint.value}`,
      `a=setup:${answerSetup}`,
      'a=rtcp-mux',
      'a=rtcp-rsize',
      `a=rtpmap:${a.payloadType} opus/48000/2`,
      ...(fmtp ? [`a=fmtp:${a.payloadType} ${fmtp}`] : []),
      ...a.headerExtensions.map((e) => `a=extmap:${e.id} ${e.uri}`),
      ...t.iceCandidates.map(
        (c) => `a=candidate:${c.foundation} 1 ${c.protocol} ${c.priority} ${c.ip} ${c.port} typ ${c.type}${c.protocol === 'tcp' ? ` tcptype ${c.tcpType ?? 'passive'}` : ''}`,
      ),
      'a=end-of-candidates',
    );
  }
  return `${out.join('\r\n')}\r\n`;
}
