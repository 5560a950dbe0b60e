// Stages on air in real time on three cluster nodes on this machine: three apps in cluster mode (REDIS_URL: a real
// redis-server, one real PostgreSQL, one archive folder), each its own media worker, RTC ports and CDN folder, in this
// process, as test/cluster/cluster.test.ts runs them. Stages are created and started through the first node, so
// placement (least loaded) spreads them; each gets 4 synthetic performers on the node that serves it. As in the cost
// sweep (bench/cost.ts), K stages are added, and after a warm-up the CPU of every process but the sender is read over a
// window, the idle nodes' rate subtracted, and every stage must stay real time; the sweep stops at the first K where one
// does not. The three nodes share one Node process (one event loop for the three apps' JavaScript): separate processes
// would spread that part over the cores, so this is the cautious figure.
import path from 'node:path';
import type { App } from '../services/app.ts';
import { PLAYLIST_NAME } from '../pipelines/mixer/ffmpegArgs.ts';
import { createStage, startTestApp, transition } from '../test/support/app.ts';
import { clusterNodeEnv } from '../test/support/cluster.ts';
import { TempDir } from '../test/support/media.ts';
import { startPostgres } from '../test/support/postgres.ts';
import { startRedis } from '../test/support/redis.ts';
import { attachPerformers, PERFORMER_TONES, realTimeCheck, type RealTime } from './cost.ts';
import { snapshot, totalOf, usageBetween } from './proc.ts';
import { RtpSender } from './sender.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface ClusterSweepPoint {
  stages: number;
  /** Stages on air on each node. */
  perNode: number[];
  /** All processes' cores but the sender's, minus the three idle nodes'. */
  coresTotal: number;
  coresPerStage: number;
  machineBusy: number;
  realTime: RealTime;
}

export interface ClusterSweep {
  nodes: number;
  warmupSeconds: number;
  windowSeconds: number;
  /** The three idle nodes' cores (Node process and workers), subtracted from each point. */
  idleCores: number;
  points: ClusterSweepPoint[];
  maxRealTimeStages: number;
  failedAt: number | null;
}

export async function benchClusterSweep(opts: { ks: number[]; warmupSeconds: number; windowSeconds: number; idleSeconds: number; log: (s: string) => void }): Promise<ClusterSweep> {
  const { log } = opts;
  const tmp = new TempDir();
  const redis = await startRedis();
  const pgs = await startPostgres();
  const sender = await RtpSender.start();
  const nodes: App[] = [];
  try {
    await sender.prepare(PERFORMER_TONES);
    for (let i = 1; i <= 3; i++) {
      nodes.push(
        await startTestApp({ ...clusterNodeEnv(i, { redisUrl: redis.url, databaseUrl: pgs.url, tmp, rtcBase: 46000 }), RATE_LIMIT_WRITE_PER_MINUTE: '100000' }),
      );
    }
    const exclude = [sender.pid];
    await sleep(2000);
    const i0 = snapshot(exclude);
    await sleep(opts.idleSeconds * 1000);
    const i1 = snapshot(exclude, { gc: true });
    const idle = usageBetween(i0, i1);
    const idleCores = idle.cores.node + idle.cores.mediasoup;
    log(`cluster: three idle nodes: ${idleCores.toFixed(3)} cores`);

    const stages: { id: string; node: App }[] = [];
    const restartsNow = () => stages.reduce((n, s) => n + (s.node.registry.get(s.id)?.broadcast?.mixer.ffmpeg.restarts ?? 0), 0);
    const points: ClusterSweepPoint[] = [];
    let failedAt: number | null = null;
    for (const k of opts.ks) {
      while (stages.length < k) {
        const stage = await createStage(nodes[0]!, `Cluster bench ${stages.length + 1}`);
        await transition(nodes[0]!, stage.id, 'start');
        const node = nodes.find((n) => n.registry.get(stage.id)?.broadcast);
        if (!node) throw new Error(`stage ${stage.id} is on air on no node after its start`);
        await attachPerformers(node, stage.id, sender);
        stages.push({ id: stage.id, node });
      }
      const perNode = nodes.map((n) => stages.filter((s) => s.node === n).length);
      log(`cluster: ${k} stages on air (per node ${perNode.join(' / ')}); warm-up ${opts.warmupSeconds} s, window ${opts.windowSeconds} s`);
      await sleep(opts.warmupSeconds * 1000);
      const restarts0 = restartsNow();
      const a = snapshot(exclude);
      const fromMs = Date.now();
      await sleep(opts.windowSeconds * 1000);
      const toMs = Date.now();
      const b = snapshot(exclude, { gc: true });
      const usage = usageBetween(a, b);
      const realTime = realTimeCheck(
        stages.map((s) => {
          const dir = s.node.stages.links.hlsDir(s.id);
          return { name: s.id, dir, playlist: path.join(dir, PLAYLIST_NAME) };
        }),
        fromMs,
        toMs,
        nodes[0]!.config.hls.segmentSeconds,
        restartsNow() - restarts0,
      );
      const coresTotal = totalOf(usage.cores) - idleCores;
      const point = { stages: k, perNode, coresTotal, coresPerStage: coresTotal / k, machineBusy: usage.machineBusy, realTime };
      points.push(point);
      log(
        `cluster: K=${k}: ${point.coresPerStage.toFixed(3)} cores/stage, machine ${(usage.machineBusy * 100).toFixed(0)} % busy; ` +
          `real time: ${realTime.ok ? 'yes' : `NO (${realTime.problems.join('; ')})`}`,
      );
      if (!realTime.ok) {
        failedAt = k;
        break;
      }
    }
    const ok = points.filter((p) => p.realTime.ok).map((p) => p.stages);
    return {
      nodes: nodes.length,
      warmupSeconds: opts.warmupSeconds,
      windowSeconds: opts.windowSeconds,
      idleCores,
      points,
      maxRealTimeStages: ok.length ? Math.max(...ok) : 0,
      failedAt,
    };
  } finally {
    await Promise.all(nodes.map((n) => n.close().catch(() => undefined)));
    await sender.stop();
    await pgs.stop();
    await redis.close();
    tmp.remove();
  }
}
