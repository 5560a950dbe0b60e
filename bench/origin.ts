// The HLS origin under 1,000 listeners: autocannon (in a process of its own, so the load does not share the service's
// event loop) holds 1,000 keep-alive connections to /live and fetches, on each, a live stage's index.m3u8 and its newest
// segment in turn (what a listener fetches once per target duration), as fast as the origin answers.
// Then the same load against a reference: a bare Node http server (another process) answering the same two paths with
// the same bytes from memory. On a small machine that shares its cores with the load generator, the reference shows
// how far this machine and client go at all.
import { fork } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PLAYLIST_NAME } from '../pipelines/mixer/ffmpegArgs.ts';
import { parseMediaPlaylist } from '../pipelines/hls/playlist.ts';

export interface OriginResult {
  /** The same load against a bare Node http server answering from memory: the ceiling of this machine and client. */
  reference: OriginResult | null;
  connections: number;
  seconds: number;
  paths: string[];
  requestsPerSecond: number;
  totalRequests: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
  latencyMaxMs: number;
  throughputMiBps: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  /** CPU of the load generator itself (it shares the machine). */
  clientCpuSeconds: number;
}

interface LoadArgs {
  url: string;
  connections: number;
  seconds: number;
  paths: string[];
}

/** What we use of autocannon's result (the package has no typings). */
interface CannonResult {
  requests: { average: number; total: number; sent: number };
  latency: { p50: number; p99: number; max: number };
  throughput: { average: number };
  non2xx: number;
  errors: number;
  timeouts: number;
  duration: number;
}
type Autocannon = (opts: Record<string, unknown>) => Promise<CannonResult>;

/** The reference origin: the same paths and bytes, from memory, with the same content types and cache headers. */
function reference(): void {
  const files = JSON.parse(process.argv[3]!) as Record<string, string>;
  const bodies = new Map(Object.entries(files).map(([p, f]) => [p, fs.readFileSync(f)]));
  const server = http.createServer((req, res) => {
    const body = bodies.get(req.url ?? '');
    if (!body) {
      res.statusCode = 404;
      res.end();
      return;
    }
    const media = req.url!.endsWith('.m4s');
    res.setHeader('Content-Type', media ? 'audio/mp4' : 'application/vnd.apple.mpegurl');
    res.setHeader('Cache-Control', media ? 'public, max-age=31536000, immutable' : 'no-cache, max-age=1');
    res.setHeader('Access-Control-Allow-Origin', '*');
    res.end(body);
  });
  server.keepAliveTimeout = 65_000;
  server.listen(0, '127.0.0.1', () => process.send?.({ port: (server.address() as { port: number }).port }));
  process.on('disconnect', () => process.exit(0));
}

async function child(): Promise<void> {
  const args = JSON.parse(process.argv[3]!) as LoadArgs;
  const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;
  const r = await autocannon({
    url: args.url,
    connections: args.connections,
    duration: args.seconds,
    timeout: 10,
    requests: args.paths.map((p) => ({ method: 'GET', path: p })),
  });
  const u = process.cpuUsage();
  process.send?.({ ...r, clientCpuSeconds: (u.user + u.system) / 1e6 }, () => process.exit(0));
}

export async function benchOrigin(opts: { baseUrl: string; stageId: string; hlsDir: string; connections: number; seconds: number; log: (s: string) => void }): Promise<OriginResult> {
  const listed = parseMediaPlaylist(fs.readFileSync(path.join(opts.hlsDir, PLAYLIST_NAME), 'utf8')).segments;
  const segment = listed.at(-1)?.uri;
  if (!segment) throw new Error('origin: the stage lists no segment');
  const paths = [`/live/${opts.stageId}/${PLAYLIST_NAME}`, `/live/${opts.stageId}/${segment}`];
  const ours = await load(opts.baseUrl, paths, opts.connections, opts.seconds);
  opts.log(`origin: ${describe(ours)}`);
  // The reference, with a copy of the same two files (the live playlist keeps changing).
  const copies = fs.mkdtempSync(path.join(os.tmpdir(), 'stage-radio-bench-origin-'));
  const files = { [paths[0]!]: path.join(copies, PLAYLIST_NAME), [paths[1]!]: path.join(copies, segment) };
  fs.copyFileSync(path.join(opts.hlsDir, PLAYLIST_NAME), files[paths[0]!]!);
  fs.copyFileSync(path.join(opts.hlsDir, segment), files[paths[1]!]!);
  const server = fork(fileURLToPath(import.meta.url), ['--reference', JSON.stringify(files)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const exited = new Promise((r) => server.once('exit', r));
  try {
    const port = await new Promise<number>((resolve, reject) => {
      server.once('message', (m: { port: number }) => resolve(m.port));
      server.once('exit', (code) => reject(new Error(`the reference server exited (${code})`)));
    });
    const ref = await load(`http://127.0.0.1:${port}`, paths, opts.connections, opts.seconds);
    opts.log(`origin: reference (bare Node http, from memory): ${describe(ref)}`);
    return { ...ours, reference: ref };
  } finally {
    server.disconnect();
    await exited;
    fs.rmSync(copies, { recursive: true, force: true });
  }
}

function describe(r: OriginResult): string {
  return `${r.requestsPerSecond.toFixed(0)} req/s over ${r.connections} connections; p50 ${r.latencyP50Ms} ms, p99 ${r.latencyP99Ms} ms; ${r.non2xx} non-2xx, ${r.errors} errors`;
}

async function load(url: string, paths: string[], connections: number, seconds: number): Promise<OriginResult> {
  const proc = fork(fileURLToPath(import.meta.url), ['--child', JSON.stringify({ url, connections, seconds, paths } satisfies LoadArgs)], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const r = await new Promise<CannonResult & { clientCpuSeconds: number }>((resolve, reject) => {
    proc.once('message', (m) => resolve(m as CannonResult & { clientCpuSeconds: number }));
    proc.once('exit', (code) => reject(new Error(`autocannon exited (${code}) without a result`)));
  });
  return {
    reference: null,
    connections,
    seconds,
    paths,
    requestsPerSecond: r.requests.total / r.duration,
    totalRequests: r.requests.total,
    latencyP50Ms: r.latency.p50,
    latencyP99Ms: r.latency.p99,
    latencyMaxMs: r.latency.max,
    throughputMiBps: r.throughput.average / 2 ** 20,
    non2xx: r.non2xx,
    errors: r.errors,
    timeouts: r.timeouts,
    clientCpuSeconds: r.clientCpuSeconds,
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url) && process.argv[2] === '--child') await child();
if (process.argv[1] === fileURLToPath(import.meta.url) && process.argv[2] === '--reference') reference();
