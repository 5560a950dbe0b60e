// Load: 10 stages on air, 200 Socket.IO clients (40 performers' signaling connections, 160 listeners following the
// timeline, some commenting), and 1,000 simulated HLS listeners that poll their stage's playlist every target
// duration over keep-alive connections: by default one in ten of them (100) is a full player that also fetches every
// new segment, and the other 900 only poll the playlist (LOAD_PLAYERS_EVERY=1 makes them all players; this 2-core
// machine then runs out of CPU). For LOAD_SECONDS (default 120): no error anywhere, no stall of any stage, segments
// listed and playlists answered within the latency bounds below, and the process's memory flat after warm-up. The app
// runs in this process; the HLS listeners run in a child process of their own, so the memory measured is the
// service's.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { expect } from 'chai';
import type { App } from '../../services/app.ts';
import { createStage, startTestApp, transition } from '../support/app.ts';
import { connectClient, type TestClient } from '../support/client.ts';
import type { ListedSegment } from '../../pipelines/hls/liveWriter.ts';
import type { ListenerTally } from '../support/hls-listeners.ts';
import { TempDir } from '../support/media.ts';
import { encodeTone, PacketPerformer } from '../support/packets.ts';
import { median } from '../support/audio.ts';

const SECONDS = Number(process.env['LOAD_SECONDS'] ?? 120);
const STAGES = 10;
const LISTENERS = 1000;
const PERFORMER_CLIENTS_PER_STAGE = 4;
const TIMELINE_CLIENTS_PER_STAGE = 16;
/** Every 10th listener is a full player fetching every segment; the others poll the playlist (2 cores run it all). */
const PLAYERS_EVERY = Number(process.env['LOAD_PLAYERS_EVERY'] ?? 10);
/** Listeners 0, PLAYERS_EVERY, 2 × PLAYERS_EVERY, … are the players (hls-listeners.ts). */
const PLAYERS = Math.ceil(LISTENERS / PLAYERS_EVERY);
const POLLERS = LISTENERS - PLAYERS;
const SOCKET_CLIENTS = STAGES * (PERFORMER_CLIENTS_PER_STAGE + TIMELINE_CLIENTS_PER_STAGE);

// Latency bounds. Recent full runs on this 2-core machine (shared with other test runs) printed, for the worst stage:
// segment end → listed p95 170-380 ms, max 300-880 ms; and playlist request latency p95 22-65 ms, p99 54-126 ms. Each
// bound is about twice the worst figure seen, so that the noise of a shared machine passes, and a regression that
// doubles a latency does not. The max keeps the stall criterion: a player holds 3 s (three 1 s segments), so a
// segment listed 1.5 s after its end leaves it half its buffer; that is 1.7 × the worst max seen.
/** Per stage, the 95th percentile of segment end → listed in the published playlist (ms). */
const SEGMENT_LISTED_P95_MS = 750;
/** Per stage, the longest segment end → listed (ms): a stall. */
const SEGMENT_LISTED_MAX_MS = 1500;
/** Playlist requests, all listeners: request sent → whole answer read (ms). */
const PLAYLIST_P95_MS = 150;
const PLAYLIST_P99_MS = 300;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const LISTENERS_SCRIPT = path.resolve(import.meta.dirname, '../support/hls-listeners.ts');

/** The simulated HLS listeners, in a child process of their own; resolves with their tally. */
function runListenerProcess(base: string, stageIds: string[], count: number, seconds: number): { done: Promise<ListenerTally>; pid: number } {
  const args = [LISTENERS_SCRIPT, base, String(seconds), String(count), String(PLAYERS_EVERY), ...stageIds];
  const child = spawn(process.execPath, ['--import', 'tsx', ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  const done = new Promise<ListenerTally>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => {
      if (code !== 0) reject(new Error(`listener process exited with ${code}`));
      else resolve(JSON.parse(out.trim().split('\n').pop()!) as ListenerTally);
    });
  });
  return { done, pid: child.pid! };
}

describe('load', function () {
  this.timeout((SECONDS + 120) * 1000);
  let tmp: TempDir;
  let app: App;
  const performers: PacketPerformer[] = [];
  const clients: TestClient[] = [];
  const listed: ListedSegment[][] = [];
  let listenerPid: number | null = null;

  before(async () => {
    tmp = new TempDir();
    app = await startTestApp({
      CDN_DIR: tmp.file('cdn'),
      MEDIASOUP_WORKERS: '2',
      // Every client here comes from 127.0.0.1: the per-address limits are for the whole test, not for one user.
      RATE_LIMIT_JOIN_PER_MINUTE: '1000',
      RATE_LIMIT_WRITE_PER_MINUTE: '1000',
    });
  });
  after(async () => {
    for (const c of clients) c.close();
    for (const p of performers) p.stop();
    await app?.close();
    if (listenerPid !== null) {
      try {
        process.kill(listenerPid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
    tmp?.remove();
  });

  it(`${STAGES} stages on air for ${SECONDS} s with ${SOCKET_CLIENTS} Socket.IO clients (${STAGES * PERFORMER_CLIENTS_PER_STAGE} performers' signaling, ${STAGES * TIMELINE_CLIENTS_PER_STAGE} timeline listeners) and ${LISTENERS} simulated HLS listeners (${PLAYERS} players fetching every segment, ${POLLERS} playlist pollers): no errors, no stall, segment end → listed p95 ≤ ${SEGMENT_LISTED_P95_MS} ms and max ≤ ${SEGMENT_LISTED_MAX_MS} ms per stage, playlist latency p95 ≤ ${PLAYLIST_P95_MS} ms and p99 ≤ ${PLAYLIST_P99_MS} ms, flat memory`, async () => {
    const stages: { id: string; performerKey: string }[] = [];
    for (let i = 0; i < STAGES; i++) {
      const s = await createStage(app, `Load ${i + 1}`);
      await transition(app, s.id, 'start');
      const media = app.registry.get(s.id)!;
      // Pre-encoded Opus sent as RTP (no encoder process per performer: the load is the service's, not the test's).
      const p = await PacketPerformer.start(media.router, await encodeTone(300 + i * 50, 2));
      performers.push(p);
      await media.broadcast!.mixer.attach(`synthetic-${i}`, p.producer, `Tone ${i + 1}`);
      // When each segment is published in the playlist players fetch (event-driven: no polling adds its own lag).
      const seen: ListedSegment[] = [];
      media.broadcast!.mixer.publisher.observer.on('segmentListed', (seg) => seen.push(seg));
      listed.push(seen);
      stages.push(s);
    }

    // 200 Socket.IO clients: performers' signaling (joined, receiving levels and stage events) and timeline listeners.
    const ackErrors: string[] = [];
    let disconnects = 0;
    for (const s of stages) {
      for (let i = 0; i < PERFORMER_CLIENTS_PER_STAGE; i++) {
        const c = await connectClient(app.url);
        const ack = await c.request('join', { stageId: s.id, key: s.performerKey, displayName: `P${i}` });
        if (!ack.ok) ackErrors.push(`join: ${JSON.stringify(ack.error)}`);
        c.socket.on('disconnect', () => disconnects++);
        clients.push(c);
      }
      for (let i = 0; i < TIMELINE_CLIENTS_PER_STAGE; i++) {
        const c = await connectClient(app.url, '/listen');
        const ack = (await c.raw('subscribe', [{ stageId: s.id }], 10_000)) as { ok: boolean; error?: unknown } | null;
        if (!ack?.ok) ackErrors.push(`subscribe: ${JSON.stringify(ack)}`);
        c.socket.on('disconnect', () => disconnects++);
        clients.push(c);
      }
    }
    expect(clients).to.have.length(SOCKET_CLIENTS);
    expect(ackErrors, 'joins and subscriptions').to.deep.equal([]);
    let timelineEvents = 0;
    for (const c of clients) c.socket.on('timelineEvent', () => timelineEvents++);

    // The load.
    const t0 = Date.now();
    const until = t0 + SECONDS * 1000;
    const listeners = runListenerProcess(app.url, stages.map((s) => s.id), LISTENERS, SECONDS);
    listenerPid = listeners.pid;
    // Now and then a performer marks the timeline and a listener comments (within the per-address comment limit).
    const chatter = (async () => {
      let k = 0;
      while (Date.now() < until - 2000) {
        await sleep(2500);
        const performer = clients[(k % STAGES) * (PERFORMER_CLIENTS_PER_STAGE + TIMELINE_CLIENTS_PER_STAGE)]!;
        const marked = await performer.request('postEvent', { type: 'marker', label: `m${k}` });
        if (!marked.ok) ackErrors.push(`postEvent: ${JSON.stringify(marked.error)}`);
        const listener = clients[(k % STAGES) * (PERFORMER_CLIENTS_PER_STAGE + TIMELINE_CLIENTS_PER_STAGE) + PERFORMER_CLIENTS_PER_STAGE + (k % TIMELINE_CLIENTS_PER_STAGE)]!;
        const said = (await listener.raw('comment', [{ text: `comment ${k}`, name: 'Load' }], 10_000)) as { ok: boolean } | null;
        if (!said?.ok) ackErrors.push(`comment: ${JSON.stringify(said)}`);
        k++;
      }
      return k;
    })();
    const memory: { t: number; rss: number; heap: number }[] = [];
    // With --expose-gc (.mocharc.json) the heap is measured after a full collection: what is retained, not garbage.
    const gc = (globalThis as { gc?: () => void }).gc;
    const sampler = setInterval(() => {
      gc?.();
      const m = process.memoryUsage();
      memory.push({ t: (Date.now() - t0) / 1000, rss: m.rss / 2 ** 20, heap: m.heapUsed / 2 ** 20 });
    }, 5000);
    const tally = await listeners.done;
    listenerPid = null;
    const chats = await chatter;
    clearInterval(sampler);
    const elapsed = (Date.now() - t0) / 1000;

    // Stalls, as the published playlist shows them: the pause between listings, and each segment's end → listed.
    const gaps = listed.map((seen) => {
      const g = seen.filter((s) => s.listedAtMs >= t0 && s.listedAtMs <= until);
      const latencies = g.map((s) => s.listedAtMs - s.endMs).sort((a, b) => a - b);
      // Where a latency goes: FFmpeg's share (the segment's end → its last part read from FFmpeg) and the writer's (→ listed).
      const p95 = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length * 0.95)] ?? NaN;
      return {
        p95Mix: p95(g.map((s) => s.arrivedAtMs - s.endMs)),
        p95Writer: p95(g.map((s) => s.listedAtMs - s.arrivedAtMs)),
        count: g.length,
        maxGap: Math.max(0, ...g.slice(1).map((s, i) => s.listedAtMs - g[i]!.listedAtMs)),
        p95Latency: latencies[Math.floor(latencies.length * 0.95)] ?? NaN,
        maxLatency: latencies.at(-1) ?? NaN,
      };
    });
    const restarts = stages.map((s) => app.registry.get(s.id)?.broadcast?.mixer.ffmpeg.restarts ?? -1);

    // Memory: after a warm-up third, the last third against the middle third.
    const third = SECONDS / 3;
    const mid = memory.filter((m) => m.t >= third && m.t < 2 * third);
    const end = memory.filter((m) => m.t >= 2 * third);
    const med = (xs: number[]) => median(xs);
    const rssMid = med(mid.map((m) => m.rss));
    const rssEnd = med(end.map((m) => m.rss));
    const heapMid = med(mid.map((m) => m.heap));
    const heapEnd = med(end.map((m) => m.heap));
    const rps = (tally.playlists + tally.segments) / tally.elapsedSeconds;

    console.log(
      [
        `      load over ${elapsed.toFixed(0)} s: ${STAGES} stages, ${clients.length} Socket.IO clients, ${LISTENERS} HLS listeners (${PLAYERS} players, ${POLLERS} playlist pollers)`,
        `      requests: ${tally.playlists} playlists + ${tally.segments} segments = ${rps.toFixed(0)} req/s, ${(tally.bytes / 2 ** 20 / tally.elapsedSeconds).toFixed(1)} MiB/s; playlist latency p50 ${tally.p50} ms, p95 ${tally.p95} ms, p99 ${tally.p99} ms`,
        `      errors ${tally.errors.length} (after retries: ${tally.retried} requests retried once, as hls.js would), skipped segments ${tally.skipped}, ack errors ${ackErrors.length}, disconnects ${disconnects}; ${chats} markers + ${chats} comments, ${timelineEvents} timeline events delivered`,
        `      segments per stage ${Math.min(...gaps.map((g) => g.count))}-${Math.max(...gaps.map((g) => g.count))}, largest gap ${Math.max(...gaps.map((g) => g.maxGap))} ms; segment end → listed p95 ${Math.max(...gaps.map((g) => g.p95Latency)).toFixed(0)} ms (of which FFmpeg p95 ${Math.max(...gaps.map((g) => g.p95Mix)).toFixed(0)} ms, the writer p95 ${Math.max(...gaps.map((g) => g.p95Writer)).toFixed(0)} ms), max ${Math.max(...gaps.map((g) => g.maxLatency)).toFixed(0)} ms; FFmpeg restarts ${restarts.reduce((a, b) => a + b, 0)}`,
        `      memory (median): RSS ${rssMid.toFixed(0)} → ${rssEnd.toFixed(0)} MiB, heap ${heapMid.toFixed(0)} → ${heapEnd.toFixed(0)} MiB (middle third → last third)`,
      ].join('\n'),
    );

    expect(tally.errors, 'HTTP errors (a request that failed again when retried)').to.deep.equal([]);
    expect(tally.retried, 'requests retried: at most 0.5 %').to.be.at.most(0.005 * (tally.playlists + tally.segments));
    expect(ackErrors, 'Socket.IO errors').to.deep.equal([]);
    expect(disconnects, 'Socket.IO disconnects').to.equal(0);
    expect(tally.skipped, 'segments a listener had to skip').to.equal(0);
    expect(restarts.every((r) => r === 0), 'no FFmpeg restart').to.equal(true);
    for (const g of gaps) {
      // A stall is a segment published late (SEGMENT_LISTED_MAX_MS). Listings can then be up to one segment plus that
      // apart.
      expect(g.p95Latency, `segment end → listed in the playlist, p95 (ms; FFmpeg's share p95 ${g.p95Mix.toFixed(0)} ms, the writer's ${g.p95Writer.toFixed(0)} ms)`).to.be.at.most(SEGMENT_LISTED_P95_MS);
      expect(g.maxLatency, 'latest segment: its end → listed in the playlist (ms)').to.be.at.most(SEGMENT_LISTED_MAX_MS);
      expect(g.maxGap, 'largest pause between a stage\'s listings (ms)').to.be.at.most(2500);
      expect(g.count, 'segments per stage: real time').to.be.at.least(SECONDS - 3);
    }
    expect(tally.p95, 'playlist request latency, p95 (ms)').to.be.at.most(PLAYLIST_P95_MS);
    expect(tally.p99, 'playlist request latency, p99 (ms)').to.be.at.most(PLAYLIST_P99_MS);
    expect(timelineEvents, 'every marker and comment reached its stage\'s timeline listeners').to.be.at.least(chats * 2 * TIMELINE_CLIENTS_PER_STAGE);
    // Flat: the last third within 10 % (RSS) and 25 % (heap, noisier between collections) of the middle third.
    expect(rssEnd, 'RSS flat after warm-up (MiB)').to.be.below(rssMid * 1.1);
    expect(heapEnd, 'heap flat after warm-up (MiB)').to.be.below(heapMid * 1.25);
  });
});
