/** Opus payload type the mixer's SDP declares; the slot relays rewrite every packet to it. */
export const MIX_PAYLOAD_TYPE = 100;

/** The SDP FFmpeg reads: one Opus stream per mixer slot, on consecutive RTP ports on loopback. */
export function buildMixerSdp(ports: readonly number[], payloadType = MIX_PAYLOAD_TYPE): string {
  const lines = ['v=0', 'o=- 0 0 IN IP4 127.0.0.1', 's=stage-radio mix', 'c=IN IP4 127.0.0.1', 't=0 0'];
  for (const port of ports) {
    lines.push(`m=audio ${port} RTP/AVP ${payloadType}`, `a=rtpmap:${payloadType} opus/48000/2`, 'a=recvonly');
  }
  return `${lines.join('\n')}\n`;
}
