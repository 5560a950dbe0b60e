import dgram from 'node:dgram';
import fs from 'node:fs/promises';

/** Local UDP ports with a bound socket on this machine (Linux /proc/net/udp and udp6). */
export async function boundUdpPorts(): Promise<Set<number>> {
  const ports = new Set<number>();
  for (const file of ['/proc/net/udp', '/proc/net/udp6']) {
    let text: string;
    try {
      text = await fs.readFile(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const local = line.trim().split(/\s+/)[1];
      const hex = local?.split(':')[1];
      if (hex) ports.add(parseInt(hex, 16));
    }
  }
  return ports;
}

/**
 * Waits until every port has a bound socket (FFmpeg opened its RTP inputs), polling every few ms. Resolves true when
 * they all are, false at the timeout or when cancelled() says the wait is moot.
 */
export async function waitForBoundPorts(ports: readonly number[], timeoutMs: number, cancelled: () => boolean = () => false): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (!cancelled()) {
    const bound = await boundUdpPorts();
    if (ports.every((p) => bound.has(p))) return true;
    if (performance.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, 4));
  }
  return false;
}

/**
 * Finds n free even UDP ports on loopback whose odd neighbour (FFmpeg's RTCP port) is free too, outside the `avoid`
 * ranges: the mediasoup workers' RTC ports lie inside Linux's ephemeral range, and a worker that takes one of ours
 * between this check and FFmpeg's bind would keep it for good (FFmpeg then fails to bind at every restart).
 */
export async function reserveRtpPorts(n: number, avoid: readonly { min: number; max: number }[] = []): Promise<number[]> {
  const avoided = (p: number) => avoid.some((r) => p >= r.min && p <= r.max);
  const held: dgram.Socket[] = [];
  const ports: number[] = [];
  const bind = (port: number) =>
    new Promise<dgram.Socket | null>((resolve) => {
      const s = dgram.createSocket('udp4');
      s.once('error', () => {
        s.close();
        resolve(null);
      });
      s.bind(port, '127.0.0.1', () => resolve(s));
    });
  try {
    for (let tries = 0; ports.length < n && tries < n * 200; tries++) {
      const a = await bind(0);
      if (!a) continue;
      const p = a.address().port;
      if (p % 2 !== 0 || p >= 65535 || avoided(p) || avoided(p + 1)) {
        held.push(a);
        continue;
      }
      const b = await bind(p + 1);
      if (!b) {
        held.push(a);
        continue;
      }
      held.push(a, b);
      ports.push(p);
    }
  } finally {
    for (const s of held) s.close();
  }
  if (ports.length < n) throw new Error('could not reserve RTP ports for the mixer');
  return ports;
}
