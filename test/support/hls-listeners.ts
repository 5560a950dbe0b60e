// Simulated HLS listeners, run as their own process (so that the load they make does not share the service's event
// loop): `node --import tsx test/support/hls-listeners.ts <baseUrl> <seconds> <count> <playersEvery> <stageId>...`.
// Each listener polls its stage's playlist every target duration (jittered), over keep-alive connections. Every
// `playersEvery`-th listener is a full player: it starts three segments from the live edge, as hls.js does, and fetches
// every new segment once (a segment it never got counts as skipped). Prints one JSON tally on stdout.
import http from 'node:http';
import { parseMediaPlaylist } from '../../pipelines/hls/playlist.ts';
import { segmentNumber } from './hls.ts';

export interface ListenerTally {
  playlists: number;
  segments: number;
  bytes: number;
  errors: string[];
  /** Segments a listener never fetched (they left the playlist first): a stall or a slow origin. */
  skipped: number;
  /** Requests that timed out or failed once and succeeded when tried again, as hls.js retries. */
  retried: number;
  /** Playlist request latencies, ms (sampled). */
  p50: number;
  p95: number;
  p99: number;
  elapsedSeconds: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function get(url: string, agent: http.Agent, headers: Record<string, string>): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setTimeout(10_000, () => req.destroy(new Error('timed out')));
  });
}

export async function runListeners(base: string, stageIds: string[], count: number, seconds: number, playersEvery = 1): Promise<ListenerTally> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: count });
  const errors: string[] = [];
  const note = (msg: string) => {
    if (errors.length < 20) errors.push(msg);
  };
  let playlists = 0;
  let segments = 0;
  let bytes = 0;
  let skipped = 0;
  let retried = 0;
  const latencies: number[] = [];
  /** A GET, tried once more at once if it times out or fails (hls.js retries a failed load); the second failure throws. */
  const fetchOnce = async (url: string, headers: Record<string, string>) => {
    try {
      return await get(url, agent, headers);
    } catch {
      retried++;
      return get(url, agent, headers);
    }
  };
  const t0 = Date.now();
  const until = t0 + seconds * 1000;

  const listen = async (id: number, stageId: string) => {
    const headers = { 'user-agent': `sim-listener/${id}` };
    let last = -1;
    while (Date.now() < until) {
      const started = Date.now();
      try {
        const res = await fetchOnce(`${base}/live/${stageId}/index.m3u8`, headers);
        playlists++;
        if (res.status !== 200) note(`playlist ${stageId}: ${res.status}`);
        else {
          if (latencies.length < 500_000) latencies.push(Date.now() - started);
          const segs = parseMediaPlaylist(res.body.toString('utf8')).segments;
          if (segs.length === 0) note(`playlist ${stageId}: no segments`);
          if (id % playersEvery !== 0) {
            // A playlist poller: it saw the live edge.
          } else if (last < 0 && segs.length > 0) last = segmentNumber(segs[Math.max(0, segs.length - 4)]!.uri);
          for (const s of id % playersEvery === 0 ? segs : []) {
            const n = segmentNumber(s.uri);
            if (n <= last) continue;
            if (n > last + 1) skipped += n - last - 1;
            const seg = await fetchOnce(`${base}/live/${stageId}/${s.uri}`, headers);
            segments++;
            bytes += seg.body.byteLength;
            if (seg.status !== 200 || seg.body.byteLength === 0) note(`segment ${stageId}/${s.uri}: ${seg.status}`);
            last = n;
          }
        }
      } catch (err) {
        note(`listener ${id} at ${((Date.now() - t0) / 1000).toFixed(1)} s: ${String(err)}`);
      }
      await sleep(Math.max(50, 1000 - (Date.now() - started)) * (0.9 + Math.random() * 0.2));
    }
  };

  const runs: Promise<void>[] = [];
  for (let i = 0; i < count; i++) {
    // Listeners arrive over the first 5 s.
    runs.push(sleep((i / count) * 5000).then(() => listen(i, stageIds[i % stageIds.length]!)));
  }
  await Promise.all(runs);
  agent.destroy();
  latencies.sort((a, b) => a - b);
  const q = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? NaN;
  return { playlists, segments, bytes, errors, skipped, retried, p50: q(0.5), p95: q(0.95), p99: q(0.99), elapsedSeconds: (Date.now() - t0) / 1000 };
}

if (process.argv[1] && import.meta.filename === process.argv[1]) {
  const [base, seconds, count, playersEvery, ...stageIds] = process.argv.slice(2);
  if (!base || !seconds || !count || !playersEvery || stageIds.length === 0) {
    process.stderr.write('usage: hls-listeners.ts <baseUrl> <seconds> <count> <playersEvery> <stageId>...\n');
    process.exit(2);
  }
  const tally = await runListeners(base, stageIds, Number(count), Number(seconds), Number(playersEvery));
  process.stdout.write(`${JSON.stringify(tally)}\n`);
}
