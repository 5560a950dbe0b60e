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
