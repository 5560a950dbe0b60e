// Low-Latency HLS: held playlist requests. (CPU per stage with LL-HLS on against off is a side-by-side pair: pair.ts.)
//
// (a) Held playlist requests: a load generator (a process of its own) opens N connections to the origin (5,000 by
//     default), then sends on every one the same blocking reload, `index.m3u8?_HLS_msn=M&_HLS_part=P`, for a part
//     a segment or so ahead of the live edge, as N LL-HLS listeners waiting for the same part do. When the writer
//     publishes that part, every held request is answered: we note how many the origin held at that moment, and when
//     each answer reached the generator (first byte, the wall clock shared by both processes). Reported: p50, p95 and
//     the last answer after the part's publication, over a few rounds (each with fresh connections). The generator's
//     own CPU is reported: it shares the machine, and an answer waits for it to read.

import { fork, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import type { App } from '../services/app.ts';
import { partUri } from '../pipelines/hls/liveWriter.ts';
import { percentile } from './latency.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const SELF = fileURLToPath(import.meta.url);

// ---------------------------------------------------------------------------------------------------------------
// (a) Held playlist requests

export interface HeldRound {
  target: string;
  /** Requests the origin held when the part was published. */
  heldAtPublish: number;
  answered: number;
  non200: number;
  /** Answer (first byte at the generator) − the part's publication, ms. */
  p50Ms: number;
  p95Ms: number;
  lastMs: number;
  /** Sending the N requests took this long (the last one written − the first). */
  sendSpreadMs: number;
}

export interface HeldReloads {
  connections: number;
  rounds: HeldRound[];
  /** Medians over the rounds. */
  lastMs: number;
  p50Ms: number;
  clientCpuSeconds: number;
}

type ClientIn = { type: 'open'; port: number; connections: number } | { type: 'send'; path: string } | { type: 'close' };
type ClientOut =
  | { type: 'opened'; connections: number; failed: number }
  | { type: 'sent'; firstAt: number; lastAt: number }
  | { type: 'answers'; at: number[]; statuses: Record<string, number>; cpuSeconds: number }
  | { type: 'closed' };

/** The load generator: raw sockets, one request each, the answer's first byte stamped, read to its end. */
function heldClient(): void {
  let sockets: net.Socket[] = [];
  const send = (m: ClientOut) => process.send?.(m);
  process.on('message', (m: ClientIn) => {
    if (m.type === 'open') {
      // At most 500 connects at a time: the listen backlog is finite.
      let started = 0;
      let failed = 0;
      const opened: net.Socket[] = [];
      const settle = () => {
        if (opened.length + failed === m.connections) {
          sockets = opened;
          send({ type: 'opened', connections: opened.length, failed });
        } else if (started < m.connections) one();
      };
      const one = () => {
        started++;
        const s = net.connect({ host: '127.0.0.1', port: m.port });
        s.setNoDelay(true);
        s.once('connect', () => {
          opened.push(s);
          settle();
        });
        s.once('error', () => {
          if (!opened.includes(s)) {
            failed++;
            settle();
          }
        });
      };
      for (let i = 0; i < Math.min(500, m.connections); i++) one();
    } else if (m.type === 'send') {
      const at: number[] = new Array(sockets.length).fill(NaN);
      const statuses: Record<string, number> = {};
      let left = sockets.length;
      const req = Buffer.from(`GET ${m.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
      const timer = setTimeout(report, 30_000);
      function report() {
        clearTimeout(timer);
        const u = process.cpuUsage();
        send({ type: 'answers', at, statuses, cpuSeconds: (u.user + u.system) / 1e6 });
      }
      sockets.forEach((s, i) => {
        let head = '';
        let got = false;
        s.on('data', (d: Buffer) => {
          if (!got) {
            got = true;
            at[i] = Date.now();
          }
          // Only the status line matters; the body is read and dropped.
          if (head.length < 16) {
            head += d.toString('latin1', 0, 16);
            const code = /^HTTP\/1\.1 (\d{3})/.exec(head)?.[1];
            if (code) {
              statuses[code] = (statuses[code] ?? 0) + 1;
              head = 'x'.repeat(16);
              if (--left === 0) report();
            }
          }
        });
        s.on('error', () => undefined);
      });
      const firstAt = Date.now();
      for (const s of sockets) s.write(req);
      send({ type: 'sent', firstAt, lastAt: Date.now() });
    } else if (m.type === 'close') {
      for (const s of sockets) s.destroy();
      sockets = [];
      send({ type: 'closed' });
    }
  });
  process.on('disconnect', () => process.exit(0));
}

function next<T extends ClientOut['type']>(child: ChildProcess, type: T): Promise<Extract<ClientOut, { type: T }>> {
  return new Promise((resolve, reject) => {
    const on = (m: ClientOut) => {
      if (m.type !== type) return;
      child.off('message', on);
      child.off('exit', onExit);
      resolve(m as Extract<ClientOut, { type: T }>);
    };
    const onExit = (code: number | null) => reject(new Error(`the load generator exited (${code})`));
    child.on('message', on);
    child.once('exit', onExit);
  });
}

export async function benchHeldReloads(opts: { app: App; stageId: string; connections: number; rounds: number; log: (s: string) => void }): Promise<HeldReloads> {
  const { app } = opts;
  const stage = app.registry.get(opts.stageId);
  const writer = stage?.broadcast?.mixer.publisher;
  if (!writer) throw new Error('held reloads: the stage is not on air');
  const port = Number(new URL(app.url).port);
  const child = fork(SELF, ['--held-client'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const exited = new Promise((r) => child.once('exit', r));
  const rounds: HeldRound[] = [];
  let clientCpuSeconds = 0;
  try {
    for (let r = 0; r < opts.rounds; r++) {
      child.send({ type: 'open', port, connections: opts.connections } satisfies ClientIn);
      const opened = await next(child, 'opened');
      if (opened.failed > 0) opts.log(`held reloads: ${opened.failed} connections failed`);
      // A part of the next segment, asked for just after a segment's first part: about 1.7 s ahead, time enough for
      // every request to reach the origin and be held before it is published. Not the segment's last part: that one
      // is published with the segment, whose listing wakes the held requests just before the part's own event.
      const boundary = new Promise<{ msn: number; part: number }>((resolve) => {
        const on = (p: { msn: number; part: number }) => {
          if (p.part !== 0) return;
          writer.observer.off('partPublished', on);
          resolve({ msn: p.msn, part: p.part });
        };
        writer.observer.on('partPublished', on);
      });
      const pos = await boundary;
      const target = { msn: pos.msn + 1, part: 3 };
      const uri = partUri(target.msn, target.part);
      let heldAtPublish = 0;
      const published = new Promise<number>((resolve) => {
        // Put first, so it runs before the origin's own listener answers them.
        const on = (p: { uri: string; publishedAtMs: number }) => {
          if (p.uri !== uri) return;
          heldAtPublish = app.liveOrigin.held;
          writer.observer.off('partPublished', on);
          resolve(p.publishedAtMs);
        };
        writer.observer.prependListener('partPublished', on);
      });
      child.send({ type: 'send', path: `/live/${opts.stageId}/index.m3u8?_HLS_msn=${target.msn}&_HLS_part=${target.part}` } satisfies ClientIn);
      const [sent, answers, publishedAt] = await Promise.all([next(child, 'sent'), next(child, 'answers'), published]);
      if (heldAtPublish < opts.connections) opts.log(`held reloads: only ${heldAtPublish} of ${opts.connections} requests were held when the part was published`);
      clientCpuSeconds = answers.cpuSeconds;
      const lat = answers.at.filter(Number.isFinite).map((t) => t - publishedAt);
      const non200 = Object.entries(answers.statuses).reduce((n, [code, c]) => n + (code === '200' ? 0 : c), 0);
      const round: HeldRound = {
        target: `${target.msn}.${target.part}`,
        heldAtPublish,
        answered: lat.length,
        non200,
        p50Ms: percentile(lat, 50),
        p95Ms: percentile(lat, 95),
        lastMs: Math.max(...lat),
        sendSpreadMs: sent.lastAt - sent.firstAt,
      };
      rounds.push(round);
      opts.log(
        `held reloads: round ${r + 1}: ${round.heldAtPublish} held at publication, ${round.answered} answered (${round.non200} not 200); ` +
          `after publication p50 ${round.p50Ms} ms, p95 ${round.p95Ms} ms, last ${round.lastMs} ms`,
      );
      child.send({ type: 'close' } satisfies ClientIn);
      await next(child, 'closed');
      await sleep(1000);
    }
  } finally {
    child.disconnect();
    await exited;
  }
  return {
    connections: opts.connections,
    rounds,
    lastMs: percentile(rounds.map((r) => r.lastMs), 50),
    p50Ms: percentile(rounds.map((r) => r.p50Ms), 50),
    clientCpuSeconds,
  };
}

if (process.argv[1] === SELF && process.argv[2] === '--held-client') heldClient();
