// Two configurations side by side: two apps, each in a process of its own with its own RTP sender and the same K
// stages of 4 performers, run at the same time; the CPU of each app's process tree (Node, mediasoup workers, FFmpeg;
// not its sender) is read from /proc over the same windows. The ratio is taken per window (both saw the same machine),
// and its median reported. Used for LL-HLS on against off, and for the mixer's one pipe against its RTP sockets.
import { fork } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { App } from '../services/app.ts';
import { startTestApp } from '../test/support/app.ts';
import { onAirStage, PERFORMER_TONES } from './cost.ts';
import { percentile } from './latency.ts';
import { descendants, readStat } from './proc.ts';
import { RtpSender } from './sender.ts';

const medianSplit = (xs: CpuSplit[]): CpuSplit => ({
  node: percentile(xs.map((x) => x.node), 50),
  mediasoup: percentile(xs.map((x) => x.mediasoup), 50),
  ffmpeg: percentile(xs.map((x) => x.ffmpeg), 50),
});
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const SELF = fileURLToPath(import.meta.url);

export interface PairVariant {
  label: string;
  /** The app's environment beyond startTestApp's defaults. */
  env: Record<string, string>;
}

export interface PairWindow {
  aCoresPerStage: number;
  bCoresPerStage: number;
  /** Per stage, by process: Node (the app's own process), mediasoup (its workers), FFmpeg (its children). */
  aSplit: CpuSplit;
  bSplit: CpuSplit;
  /** a / b */
  ratio: number;
}

export interface PairCost {
  a: string;
  b: string;
  stages: number;
  windowSeconds: number;
  windows: PairWindow[];
  /** Medians over the windows. */
  aCoresPerStage: number;
  bCoresPerStage: number;
  ratio: number;
  aSplit: CpuSplit;
  bSplit: CpuSplit;
  /** FFmpeg restarts in either app over the run (a restart would make the windows unequal). */
  ffmpegRestarts: { a: number; b: number };
}

type ChildIn = { type: 'stop' };
type ChildOut = { type: 'ready'; senderPid: number } | { type: 'restarts'; restarts: number } | { type: 'error'; error: string };

/** One app with the variant's environment, K stages of 4 performers, until told to stop. */
async function pairChild(variant: PairVariant, stages: number): Promise<void> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), `stage-radio-bench-pair-`));
  const sender = await RtpSender.start();
  let app: App | null = null;
  try {
    await sender.prepare(PERFORMER_TONES);
    app = await startTestApp({ CDN_DIR: tmp, RATE_LIMIT_WRITE_PER_MINUTE: '100000', ...variant.env });
    const ids: string[] = [];
    for (let i = 0; i < stages; i++) ids.push((await onAirStage(app, sender, `Bench ${variant.label} ${i + 1}`)).id);
    process.send?.({ type: 'ready', senderPid: sender.pid } satisfies ChildOut);
    await new Promise<void>((resolve) => process.once('message', (m: ChildIn) => m.type === 'stop' && resolve()));
    const restarts = ids.reduce((n, id) => n + (app!.registry.get(id)?.broadcast?.mixer.ffmpeg.restarts ?? 0), 0);
    process.send?.({ type: 'restarts', restarts } satisfies ChildOut);
  } catch (err) {
    process.send?.({ type: 'error', error: err instanceof Error ? err.message : String(err) } satisfies ChildOut);
  } finally {
    await app?.close().catch(() => undefined);
    await sender.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
    process.disconnect?.();
  }
}

export interface CpuSplit {
  node: number;
  mediasoup: number;
  ffmpeg: number;
}

/** CPU seconds of a process and its descendants, minus the subtree at `exclude`, in all and by kind of process. */
function treeCpuSeconds(pid: number, exclude: number): { total: number; split: CpuSplit } {
  const node = readStat(pid)?.cpuSeconds ?? NaN;
  const split: CpuSplit = { node, mediasoup: 0, ffmpeg: 0 };
  let total = node;
  for (const d of descendants(pid, [exclude])) {
    total += d.cpuSeconds;
    if (d.comm.startsWith('mediasoup')) split.mediasoup += d.cpuSeconds;
    else if (d.comm === 'ffmpeg') split.ffmpeg += d.cpuSeconds;
  }
  return { total, split };
}

const perStage = (a: CpuSplit, b: CpuSplit, seconds: number, stages: number): CpuSplit => ({
  node: (b.node - a.node) / seconds / stages,
  mediasoup: (b.mediasoup - a.mediasoup) / seconds / stages,
  ffmpeg: (b.ffmpeg - a.ffmpeg) / seconds / stages,
});
const splitText = (s: CpuSplit) => `Node ${s.node.toFixed(3)}, mediasoup ${s.mediasoup.toFixed(3)}, FFmpeg ${s.ffmpeg.toFixed(3)}`;

export async function benchPair(opts: {
  a: PairVariant;
  b: PairVariant;
  stages: number;
  warmupSeconds: number;
  windowSeconds: number;
  windows: number;
  log: (s: string) => void;
}): Promise<PairCost> {
  const name = `${opts.a.label} / ${opts.b.label}`;
  const kids = [opts.a, opts.b].map((variant) => {
    const child = fork(SELF, ['--pair-child', JSON.stringify(variant), String(opts.stages)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const exited = new Promise((r) => child.once('exit', r));
    const messages = (type: ChildOut['type']) =>
      new Promise<ChildOut>((resolve, reject) => {
        const on = (m: ChildOut) => {
          if (m.type === 'error') reject(new Error(`${variant.label}: ${m.error}`));
          else if (m.type === type) resolve(m);
        };
        child.on('message', on);
        child.once('exit', (code) => reject(new Error(`${variant.label}: the app's process exited (${code})`)));
      });
    return { child, exited, ready: messages('ready'), restarts: messages('restarts') };
  });
  try {
    const senders = (await Promise.all(kids.map((k) => k.ready))).map((m) => (m as { senderPid: number }).senderPid);
    opts.log(`${name}: ${opts.stages} stages on air in each app; warm-up ${opts.warmupSeconds} s, ${opts.windows} windows of ${opts.windowSeconds} s`);
    await sleep(opts.warmupSeconds * 1000);
    const windows: PairWindow[] = [];
    for (let w = 0; w < opts.windows; w++) {
      const t0 = performance.now();
      const before = kids.map((k, i) => treeCpuSeconds(k.child.pid!, senders[i]!));
      await sleep(opts.windowSeconds * 1000);
      const after = kids.map((k, i) => treeCpuSeconds(k.child.pid!, senders[i]!));
      const seconds = (performance.now() - t0) / 1000;
      const [a, b] = before.map((x, i) => (after[i]!.total - x.total) / seconds / opts.stages) as [number, number];
      const [aSplit, bSplit] = before.map((x, i) => perStage(x.split, after[i]!.split, seconds, opts.stages)) as [CpuSplit, CpuSplit];
      windows.push({ aCoresPerStage: a, bCoresPerStage: b, ratio: a / b, aSplit, bSplit });
      opts.log(
        `${name}: window ${w + 1}: ${opts.a.label} ${a.toFixed(3)} cores/stage (${splitText(aSplit)}), ${opts.b.label} ${b.toFixed(3)} (${splitText(bSplit)}): ${(a / b).toFixed(3)}×`,
      );
    }
    for (const k of kids) k.child.send({ type: 'stop' } satisfies ChildIn);
    const [ra, rb] = (await Promise.all(kids.map((k) => k.restarts))).map((m) => (m as { restarts: number }).restarts) as [number, number];
    return {
      a: opts.a.label,
      b: opts.b.label,
      stages: opts.stages,
      windowSeconds: opts.windowSeconds,
      windows,
      aCoresPerStage: percentile(windows.map((w) => w.aCoresPerStage), 50),
      bCoresPerStage: percentile(windows.map((w) => w.bCoresPerStage), 50),
      ratio: percentile(windows.map((w) => w.ratio), 50),
      aSplit: medianSplit(windows.map((w) => w.aSplit)),
      bSplit: medianSplit(windows.map((w) => w.bSplit)),
      ffmpegRestarts: { a: ra, b: rb },
    };
  } finally {
    for (const k of kids) if (k.child.connected) k.child.send({ type: 'stop' } satisfies ChildIn);
    await Promise.race([Promise.all(kids.map((k) => k.exited)), sleep(30_000)]);
    for (const k of kids) if (k.child.exitCode === null && k.child.signalCode === null) k.child.kill('SIGKILL');
  }
}

if (process.argv[1] === SELF && process.argv[2] === '--pair-child') await pairChild(JSON.parse(process.argv[3]!) as PairVariant, Number(process.argv[4]));
