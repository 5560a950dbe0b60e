// `npm run bench [-- --quick] [-- --browser | --no-browser]`: runs the benchmarks, prints a table, writes
// bench/results/<timestamp>.{json,md,svg}. A benchmark reports; nothing fails because the machine is slow.
//
// Order: (0) the sound chain's cost and delay against the chain before it, offline FFmpeg alone; (1) cost per stage, alone on the machine (as far as this run goes), with the baseline side by side at 1 stage;
// (2) the latencies (server side, then in Chromium) and the held LL-HLS reloads, alone too: a listener's latency on a
// machine busy with other work measures that work; (3) the archive broadcasts start in a process of their own and,
// while they run, the baseline at more stages and the origin are measured; (4) the archive's stop → archived when its
// broadcasts end; (5) CPU per stage with LL-HLS on against off, two apps side by side.
// README.md, "Performance", describes each measure.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { App } from '../services/app.ts';
import { loadConfig } from '../services/config.ts';
import { startTestApp } from '../test/support/app.ts';
import { TempDir } from '../test/support/media.ts';
import { benchArchiveInChild } from './archive.ts';
import { benchBrowserLatency } from './browser.ts';
import { benchBaseline, benchCost, onAirStage, PERFORMER_TONES } from './cost.ts';
import { benchIngestLatency, benchOnAirLatency, MARKER_HZ, MARKER_SECONDS } from './latency.ts';
import { benchHeldReloads } from './llhls.ts';
import { benchPair } from './pair.ts';
import { startPostgres } from '../test/support/postgres.ts';
import { startRedis } from '../test/support/redis.ts';
import pg from 'pg';
import { benchOrigin } from './origin.ts';
import { costSvg, markdownTable, tableRows, type BenchResults } from './report.ts';
import { RtpSender } from './sender.ts';
import { benchSound } from './sound.ts';
import { benchPages } from './pages.ts';
import { benchClusterSweep } from './cluster.ts';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const withBrowser = args.includes('--browser') || (!quick && !args.includes('--no-browser'));
const RESULTS = path.join(import.meta.dirname, 'results');
const t0 = performance.now();
const elapsed = () => ((performance.now() - t0) / 1000).toFixed(0).padStart(4);
const log = (s: string) => process.stderr.write(`[bench ${elapsed()} s] ${s}\n`);

const plan = quick
  ? { soundSeconds: 30, soundRounds: 3, costKs: [1, 5], baselineKs: [5], warmup: 5, baselineWarmup: 3, window: 10, idle: 5, markers: 10, onAirRuns: 3, pageRounds: 5, listenSeconds: 20, originSeconds: 5, archiveSeconds: 60, heldConnections: 1000, heldRounds: 2, llStages: 2, llWindows: 2, clusterKs: [3, 6] }
  : { soundSeconds: 60, soundRounds: 7, costKs: [1, 5, 10, 20, 30, 40, 50, 60], baselineKs: [10], warmup: 5, baselineWarmup: 5, window: 20, idle: 10, markers: 20, onAirRuns: 5, pageRounds: 9, listenSeconds: 40, originSeconds: 10, archiveSeconds: 600, heldConnections: 5000, heldRounds: 5, llStages: 3, llWindows: 5, clusterKs: [6, 12, 18, 24, 30] };
const ORIGIN_CONNECTIONS = 1000;

function ffmpegVersion(): string {
  try {
    return execFileSync('ffmpeg', ['-version'], { encoding: 'utf8' }).split('\n')[0]!.replace(/ Copyright.*/, '');
  } catch {
    return 'unknown';
  }
}

const machine = {
  cpus: os.cpus().length,
  cpuModel: os.cpus()[0]?.model ?? 'unknown',
  memGiB: Math.round(os.totalmem() / 2 ** 30),
  node: process.version,
  platform: `${os.type()} ${os.release()}`,
  ffmpeg: ffmpegVersion(),
  loadAverageAtStart: os.loadavg().map((x) => Number(x.toFixed(2))),
  loadAverageAtEnd: [] as number[],
};

const started = new Date();
const phases: Record<string, number> = {};
const results: BenchResults = { sound: null, cost: null, baseline: null, ingest: null, onAir: null, browser: null, pages: null, origin: null, held: null, llCost: null, pipeCost: null, clusterCost: null, clusterSweep: null, archive: null, errors: {} };

/** Runs one measure; a failure is reported in the table, and the other measures go on. */
async function measure<T>(name: string, fn: () => Promise<T>): Promise<T | null> {
  const t = performance.now();
  try {
    return await fn();
  } catch (err) {
    log(`${name}: FAILED: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    results.errors[name] = err instanceof Error ? err.message : String(err);
    return null;
  } finally {
    phases[name] = Number(((performance.now() - t) / 1000).toFixed(1));
  }
}

log(`${quick ? 'quick' : 'full'} run on ${machine.cpus} × ${machine.cpuModel}; load average ${machine.loadAverageAtStart.join(', ')}`);
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'stage-radio-bench-'));
const sender = await RtpSender.start();
let app: App | null = null;
// Started once, after the latencies; held in an object so that the `finally` below sees it as assigned.
const archive: { child: ReturnType<typeof benchArchiveInChild> | null; startedAt: number } = { child: null, startedAt: 0 };
const startArchive = () => {
  archive.child ??= benchArchiveInChild({ seconds: plan.archiveSeconds, log: (s) => log(s) });
  if (archive.startedAt === 0) archive.startedAt = performance.now();
  return archive.child;
};
try {
  await sender.prepare([...PERFORMER_TONES, 0], [{ freq: MARKER_HZ, seconds: MARKER_SECONDS }]);

  // (0) The sound chain against the one before it.
  const defaults = loadConfig({});
  const soundDir = new TempDir();
  try {
    results.sound = await measure('sound chain', async () =>
      benchSound({ dir: soundDir, slots: defaults.stage.maxPerformers, seconds: plan.soundSeconds, rounds: plan.soundRounds, log }),
    );
  } finally {
    soundDir.remove();
  }

  // (1) Cost per stage.
  // The app's settings as startTestApp configures it (the defaults, above): the mixer's slot count, segments, bitrate.
  const slots = defaults.stage.maxPerformers;
  results.cost = await measure('cost per stage', () =>
    benchCost({
      ks: plan.costKs,
      warmupSeconds: plan.warmup,
      windowSeconds: plan.window,
      idleSeconds: plan.idle,
      cdnDir: path.join(tmp, 'cost'),
      sender,
      paired: { dir: path.join(tmp, 'paired'), slots },
      log,
    }),
  );

  // (2) Latencies and held reloads, alone on the machine.
  app = await startTestApp({ CDN_DIR: path.join(tmp, 'latency'), RATE_LIMIT_WRITE_PER_MINUTE: '100000' });
  const a = app;
  results.ingest = await measure('latency: ingest → listed', () => benchIngestLatency({ app: a, sender, markers: plan.markers, log }));
  results.onAir = await measure('latency: go on air', () => benchOnAirLatency({ app: a, runs: plan.onAirRuns, log }));
  if (withBrowser) results.browser = await measure('latency: browsers', () => benchBrowserLatency({ app: a, listenSeconds: plan.listenSeconds, log }));
  else log('browser latency skipped (quick mode; --browser runs it)');
  if (withBrowser) {
    results.pages = await measure('listener page: weight and first audio', async () => {
      const stage = await onAirStage(a, sender, 'Bench page load', []);
      await new Promise((r) => setTimeout(r, 3000));
      return benchPages({ app: a, stageId: stage.id, rounds: plan.pageRounds, log });
    });
  }
  results.held = await measure('LL-HLS: held reloads', async () => {
    const stage = await onAirStage(a, sender, 'Bench held reloads');
    await new Promise((r) => setTimeout(r, 3000));
    return benchHeldReloads({ app: a, stageId: stage.id, connections: plan.heldConnections, rounds: plan.heldRounds, log });
  });
  await app.close();
  app = null;

  // (3) The archive broadcasts, in their own process; meanwhile the baseline at more stages and the origin.
  const archiveDone = startArchive().done.then(
    (r) => ((phases['archive (in parallel)'] = Number(((performance.now() - archive.startedAt) / 1000).toFixed(1))), r),
    (err: unknown) => {
      results.errors['archive'] = err instanceof Error ? err.message : String(err);
      return null;
    },
  );

  results.baseline = await measure('baseline', () =>
    benchBaseline({
      ks: plan.baselineKs,
      warmupSeconds: plan.baselineWarmup,
      windowSeconds: plan.window,
      dir: path.join(tmp, 'baseline'),
      sender,
      segmentSeconds: defaults.hls.segmentSeconds,
      aacBitrateKbps: defaults.hls.aacBitrateKbps,
      log,
    }),
  );

  app = await startTestApp({ CDN_DIR: path.join(tmp, 'origin'), RATE_LIMIT_WRITE_PER_MINUTE: '100000' });
  const o = app;
  results.origin = await measure('origin', async () => {
    const stage = await onAirStage(o, sender, 'Bench origin');
    await new Promise((r) => setTimeout(r, 3000));
    return benchOrigin({ baseUrl: o.url, stageId: stage.id, hlsDir: o.stages.links.hlsDir(stage.id), connections: ORIGIN_CONNECTIONS, seconds: plan.originSeconds, log });
  });
  await app.close();
  app = null;

  log('waiting for the archive benchmark');
  results.archive = await archiveDone;

  // (5) LL-HLS on against off: two apps side by side, alone on the machine (the archive's broadcasts have ended).
  results.llCost = await measure('LL-HLS: CPU on / off', () =>
    benchPair({ a: { label: 'LL on', env: { LL_HLS: 'on' } }, b: { label: 'LL off', env: { LL_HLS: 'off' } }, stages: plan.llStages, warmupSeconds: plan.warmup, windowSeconds: plan.window, windows: plan.llWindows, log }),
  );
  // (6) The mixer's one pipe against its RTP sockets, the same way.
  results.pipeCost = await measure('mixer input: pipe / RTP', () =>
    benchPair({ a: { label: 'one pipe', env: { MIX_INPUT: 'ogg' } }, b: { label: 'RTP sockets', env: { MIX_INPUT: 'rtp' } }, stages: plan.llStages, warmupSeconds: plan.warmup, windowSeconds: plan.window, windows: plan.llWindows, log }),
  );
  // (7) Cluster mode's own cost: a node with REDIS_URL (alone in its cluster: heartbeats, lease renewals, the orphan
  // sweep) against a single node, both on one real PostgreSQL (the cluster needs one), the same way.
  results.clusterCost = await measure('cluster node / single node', async () => {
    const redis = await startRedis();
    const pgs = await startPostgres();
    try {
      // One server, a database each: a single node ends, at its start, every broadcast its database says is live.
      const client = new pg.Client({ connectionString: pgs.url });
      await client.connect();
      await client.query('create database single_node');
      await client.end();
      const singleUrl = new URL(pgs.url);
      singleUrl.pathname = '/single_node';
      return await benchPair({
        a: { label: 'cluster node', env: { DATABASE_URL: pgs.url, REDIS_URL: redis.url, NODE_ID: 'bench-node' } },
        b: { label: 'single node', env: { DATABASE_URL: singleUrl.toString() } },
        stages: plan.llStages,
        warmupSeconds: plan.warmup,
        windowSeconds: plan.window,
        windows: plan.llWindows,
        log,
      });
    } finally {
      await pgs.stop();
      await redis.close();
    }
  });
  // (8) Stages in real time on three cluster nodes on this machine, placed by load.
  results.clusterSweep = await measure('three cluster nodes', () =>
    benchClusterSweep({ ks: plan.clusterKs, warmupSeconds: plan.warmup, windowSeconds: plan.window, idleSeconds: plan.idle, log }),
  );
} finally {
  archive.child?.stop();
  await app?.close().catch(() => undefined);
  await sender.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
}
machine.loadAverageAtEnd = os.loadavg().map((x) => Number(x.toFixed(2)));
const totalSeconds = Number(((performance.now() - t0) / 1000).toFixed(1));

const stamp = started.toISOString().replace(/[:.]/g, '-');
fs.mkdirSync(RESULTS, { recursive: true });
const table = markdownTable(tableRows(results));
const svgName = `${stamp}.svg`;
if (results.cost && results.cost.points.length > 0) {
  fs.writeFileSync(path.join(RESULTS, svgName), costSvg(results.cost, results.baseline, machine.cpus, `CPU cores against stages on air — ${started.toISOString().slice(0, 16)}Z${quick ? ' (quick)' : ''}`));
}
const md = [
  `# Benchmark ${started.toISOString()}${quick ? ' (quick)' : ''}`,
  '',
  `Machine: ${machine.cpus} × ${machine.cpuModel}, ${machine.memGiB} GiB, ${machine.platform}, Node ${machine.node}, ${machine.ffmpeg}. ` +
    `Load average ${machine.loadAverageAtStart.join(' / ')} at the start, ${machine.loadAverageAtEnd.join(' / ')} at the end.`,
  '',
  table,
  '',
  ...(results.cost && results.cost.points.length > 0 ? [`![CPU cores against stages on air](${svgName})`, ''] : []),
  `Run time ${totalSeconds} s: ${Object.entries(phases).map(([k, v]) => `${k} ${v} s`).join(', ')}. Method: README.md, "Performance".`,
  '',
].join('\n');
fs.writeFileSync(path.join(RESULTS, `${stamp}.json`), `${JSON.stringify({ startedAt: started.toISOString(), quick, plan, machine, phases, totalSeconds, ...results }, null, 2)}\n`);
fs.writeFileSync(path.join(RESULTS, `${stamp}.md`), md);
process.stdout.write(`\n${md}\nWritten: bench/results/${stamp}.json, .md${fs.existsSync(path.join(RESULTS, svgName)) ? ', .svg' : ''}\n`);
