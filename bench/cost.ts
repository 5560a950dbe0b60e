// Cost per on-air stage, and its floor.
//
// Ours: K stages on air in one app (real mediasoup workers, the Node mixer relays, FFmpeg, HLS, the archive to the local
// store), each with 4 synthetic performers whose Opus RTP (bench/sender.ts, another process) enters a mediasoup
// PlainTransport producer as a browser's would, attached to the stage's mixer. Stages are added K = 1, 5, 10, … and,
// after a warm-up, the CPU time of the Node process, the mediasoup workers and the FFmpeg children is read from /proc
// over a steady window; the Node process's idle rate (the app with nothing on air) is subtracted. Every stage must stay
// real time (segments keep coming, no gap over 1.5 s, none missing, no FFmpeg restart); the sweep stops at the first
// K where one does not.
//
// Baseline: the same mix with FFmpeg alone (the mixer's SDP, filter chain, encoder and HLS options from
// pipelines/mixer/ffmpegArgs.ts and sdp.ts), fed the same RTP straight from the sender: no mediasoup, no Node.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import type { App } from '../services/app.ts';
import { PLAYLIST_NAME, mixerInputOptions, mixerOutputOptions } from '../pipelines/mixer/ffmpegArgs.ts';

/** The baseline FFmpeg's own playlist (FFmpeg's HLS muxer, fMP4 segments: the same encode and container, no Node). */
const BASELINE_PLAYLIST_NAME = '.baseline.m3u8';
import { buildMixerSdp, MIX_PAYLOAD_TYPE } from '../pipelines/mixer/sdp.ts';
import { reserveRtpPorts, waitForBoundPorts } from '../pipelines/mixer/udpPorts.ts';
import { parseMediaPlaylist } from '../pipelines/hls/playlist.ts';
import { stopChild } from '../pipelines/ffmpeg/child.ts';
import { createStage, startTestApp, transition } from '../test/support/app.ts';
import { readStat, snapshot, totalOf, usageBetween, type ProcKind, type Usage } from './proc.ts';
import type { RtpSender } from './sender.ts';

export const PERFORMER_TONES = [330, 440, 550, 660];
const MAX_GAP_S = 1.5;
/** A window in which the machine's cores were this busy (every process counted) had no CPU to spare. */
const SATURATED = 0.95;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface RealTime {
  ok: boolean;
  /** Segments completed during the window, fewest over the stages, and how many the window should hold. */
  minSegments: number;
  expectedSegments: number;
  /** Longest gap between two segments of one stage, s. */
  maxGapSeconds: number;
  /** Seconds since the newest segment of the stalest stage, at the window's end. */
  maxStalenessSeconds: number;
  ffmpegRestarts: number;
  problems: string[];
}

export interface CostPoint {
  stages: number;
  usage: Usage;
  /** All processes' cores minus the idle app's (Node process and workers). */
  coresTotal: number;
  coresPerStage: number;
  /** What each stage added since the previous K: (coresTotal − previous coresTotal) / (K − previous K). */
  marginalCoresPerStage: number | null;
  /** Per stage, by process kind (the idle app's rates subtracted from Node's and the workers' shares). */
  perStage: Record<ProcKind, number>;
  /**
   * Memory per stage: the FFmpeg processes' PSS, and the workers' PSS and the Node process's heap (after a full GC)
   * above the idle app's. Node's PSS and its memory outside the heap are left out of this sum: they carry start-up
   * leftovers that the process gives back over the first minute or so (hundreds of MiB here), which would swamp what a
   * stage adds (both are in the JSON).
   */
  memoryPerStageMiB: number;
  /** Proportional memory (PSS) of Node + workers + FFmpeg above the idle app's, per stage (after a full GC). */
  pssPerStageMiB: number;
  /** The same by process kind. */
  pssPerStageByKindMiB: Record<ProcKind, number>;
  /** Node's memory outside the heap (Buffers, WebAssembly memory) above the idle app's, per stage. */
  nodeExternalGrowthPerStageMiB: number;
  /** The same in resident memory (RSS: each FFmpeg counts its shared libraries again). */
  rssPerStageMiB: number;
  rssTotalMiB: number;
  nodeHeapGrowthPerStageMiB: number;
  realTime: RealTime;
  /** The latest the sender sent a frame in the window, ms: a stalled load generator looks like a stalled stage. */
  senderMaxLateMs: number;
  /** A first window that was not real time, measured again once (the machine is shared): what it found. */
  firstTry: { realTime: RealTime; senderMaxLateMs: number; coresPerStage: number } | null;
}

export interface CostResult {
  windowSeconds: number;
  warmupSeconds: number;
  idle: { seconds: number; nodeCores: number; workerCores: number; rssMiB: number; pssMiB: number; pssByKindMiB: Record<ProcKind, number>; heapMiB: number; externalMiB: number };
  points: CostPoint[];
  /** Highest K at which every stage stayed real time (0 when even K = 1 did not). */
  maxRealTimeStages: number;
  /** The first K that failed, if any. */
  failedAt: number | null;
  /** FFmpeg alone, side by side with ours in the first window (same machine, same moment): see PairedBaseline. */
  paired: PairedBaseline | null;
}

/**
 * The baseline measured in the same window as ours at the first K (1): one FFmpeg alone with 4 inputs (the floor), and
 * one with the mixer's slot count (4 performers and the rest Opus silence, as the relays fill an empty slot). Other
 * work on a shared machine moves every process's CPU time (the same mix measured 0.07 or 0.12 cores a few minutes
 * apart here): side by side, both see the same conditions.
 */
export interface PairedBaseline {
  /** Ours had this many stages on air in that window (the first K). */
  stages: number;
  /** One mix each. */
  floorCores: number;
  slots: number;
  slotsCores: number;
  /** Ours in the same window, per stage: everything, and its FFmpeg alone. */
  oursCoresPerStage: number;
  oursFfmpegCoresPerStage: number;
  realTime: RealTime;
}

export interface BaselinePoint {
  stages: number;
  ffmpegCores: number;
  coresPerStage: number;
  pssPerStageMiB: number;
  realTime: RealTime;
}

const MiB = 2 ** 20;
const byKind = (f: (k: ProcKind) => number): Record<ProcKind, number> => ({
  node: f('node'),
  mediasoup: f('mediasoup'),
  ffmpeg: f('ffmpeg'),
  other: f('other'),
  exited: f('exited'),
});

/** seg_NNNNN.m4s files of an HLS folder with the wall-clock ms each was completed (its mtime: the writer renames it done). */
function segments(dir: string): { n: number; doneMs: number }[] {
  const out: { n: number; doneMs: number }[] = [];
  let names: string[] = [];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return out;
  }
  for (const name of names) {
    const m = /^seg_(\d+)\.(ts|m4s)$/.exec(name);
    if (!m) continue;
    try {
      out.push({ n: Number(m[1]), doneMs: fs.statSync(path.join(dir, name)).mtimeMs });
    } catch {
      // removed meanwhile
    }
  }
  return out.sort((a, b) => a.n - b.n);
}

/** Whether each HLS folder produced segments in real time over [fromMs, toMs] (wall clock). */
export function realTimeCheck(dirs: { name: string; dir: string; playlist: string }[], fromMs: number, toMs: number, segmentSeconds: number, restarts: number): RealTime {
  const expected = Math.floor((toMs - fromMs) / 1000 / segmentSeconds);
  const problems: string[] = [];
  // Per stage, summarized over the stages below (30 stages must not make 30 lines).
  let short = 0;
  let behind = 0;
  let mostBehind = 0;
  const noPlaylist: string[] = [];
  let minSegments = Infinity;
  let maxGap = 0;
  let maxStale = 0;
  for (const { name, dir, playlist } of dirs) {
    const all = segments(dir);
    const inWindow = all.filter((s) => s.doneMs >= fromMs && s.doneMs <= toMs);
    minSegments = Math.min(minSegments, inWindow.length);
    // Gaps include the one into the window (from the last segment before it) and the one out of it (to its end).
    const before = all.filter((s) => s.doneMs < fromMs).at(-1);
    const times = [...(before ? [before.doneMs] : [fromMs]), ...inWindow.map((s) => s.doneMs)];
    for (let i = 1; i < times.length; i++) maxGap = Math.max(maxGap, (times[i]! - times[i - 1]!) / 1000);
    const stale = (toMs - (times.at(-1) ?? fromMs)) / 1000;
    maxStale = Math.max(maxStale, stale);
    if (inWindow.length < expected - 1) short++;
    // The playlist players read lists the newest segments (the publisher keeps up with FFmpeg).
    try {
      const listed = parseMediaPlaylist(fs.readFileSync(playlist, 'utf8')).segments.at(-1)?.uri ?? '';
      const listedN = Number(/(\d+)\.(ts|m4s)$/.exec(listed)?.[1] ?? -1);
      const newest = all.at(-1)?.n ?? -1;
      if (newest - listedN > 1) {
        behind++;
        mostBehind = Math.max(mostBehind, newest - listedN);
      }
    } catch {
      noPlaylist.push(name);
    }
  }
  const n = dirs.length;
  if (short > 0) problems.push(`${short} of ${n} short of segments (fewest ${minSegments} in ${((toMs - fromMs) / 1000).toFixed(0)} s)`);
  if (behind > 0) problems.push(`${behind} of ${n} served playlists behind FFmpeg's newest segment (by up to ${mostBehind})`);
  if (noPlaylist.length > 0) problems.push(`no playlist: ${noPlaylist.join(', ')}`);
  if (maxGap > MAX_GAP_S) problems.push(`a gap of ${maxGap.toFixed(2)} s between segments`);
  if (maxStale > MAX_GAP_S) problems.push(`no new segment for ${maxStale.toFixed(2)} s at the window's end`);
  if (restarts > 0) problems.push(`${restarts} FFmpeg restarts`);
  return {
    ok: problems.length === 0,
    minSegments: Number.isFinite(minSegments) ? minSegments : 0,
    expectedSegments: expected,
    maxGapSeconds: maxGap,
    maxStalenessSeconds: maxStale,
    ffmpegRestarts: restarts,
    problems,
  };
}

/** A stage on air in the app, with 4 performers sending RTP through mediasoup into its mixer. */
export async function onAirStage(app: App, sender: RtpSender, title: string, tones = PERFORMER_TONES): Promise<{ id: string; performers: string[] }> {
  const stage = await createStage(app, title);
  await transition(app, stage.id, 'start');
  return { id: stage.id, performers: await attachPerformers(app, stage.id, sender, tones) };
}

/** Performers sending RTP through mediasoup into the mixer of a stage on air in `app`; returns their ids. */
export async function attachPerformers(app: App, stageId: string, sender: RtpSender, tones = PERFORMER_TONES): Promise<string[]> {
  const stage = { id: stageId };
  const s = app.registry.get(stage.id);
  if (!s?.broadcast) throw new Error(`stage ${stage.id} has no mixer after start`);
  const performers: string[] = [];
  for (const [i, freq] of tones.entries()) {
    const transport = await s.router.createPlainTransport({ listenIp: { ip: '127.0.0.1' }, rtcpMux: true, comedia: true });
    const ssrc = crypto.randomInt(1, 2 ** 31);
    const producer = await transport.produce({
      kind: 'audio',
      rtpParameters: { codecs: [{ mimeType: 'audio/opus', payloadType: 111, clockRate: 48000, channels: 2, parameters: {} }], encodings: [{ ssrc }] },
    });
    const id = `${stage.id}-p${i}`;
    await sender.add({ id, port: transport.tuple.localPort, freq, ssrc, payloadType: 111 });
    await s.broadcast.mixer.attach(id, producer, `Performer ${i + 1}`);
    performers.push(id);
  }
  return performers;
}

export async function benchCost(opts: {
  ks: number[];
  warmupSeconds: number;
  windowSeconds: number;
  idleSeconds: number;
  cdnDir: string;
  sender: RtpSender;
  /** Run the paired baseline (FFmpeg alone, 4 inputs and `slots` inputs) beside the first K, writing under `dir`. */
  paired?: { dir: string; slots: number };
  /** Called once the last window is measured, before the app closes (ending 30 broadcasts takes a while). */
  onMeasured?: () => void;
  log: (s: string) => void;
}): Promise<CostResult> {
  const { sender, log } = opts;
  const app = await startTestApp({ CDN_DIR: opts.cdnDir, RATE_LIMIT_WRITE_PER_MINUTE: '100000' });
  // Our CPU is every descendant's but the sender's and the paired baseline's.
  const exclude = [sender.pid];
  const pairedMixes: BaselineMix[] = [];
  let paired: PairedBaseline | null = null;
  try {
    await sleep(2000);
    const i0 = snapshot(exclude);
    await sleep(opts.idleSeconds * 1000);
    const i1 = snapshot(exclude, { gc: true });
    const idleUsage = usageBetween(i0, i1);
    const idle = {
      seconds: idleUsage.seconds,
      nodeCores: idleUsage.cores.node,
      workerCores: idleUsage.cores.mediasoup,
      rssMiB: totalOf(idleUsage.rss) / MiB,
      pssMiB: totalOf(idleUsage.pss) / MiB,
      pssByKindMiB: byKind((k) => idleUsage.pss[k] / MiB),
      heapMiB: idleUsage.nodeHeapUsed / MiB,
      externalMiB: idleUsage.nodeExternal / MiB,
    };
    log(`cost: idle app: node ${idle.nodeCores.toFixed(3)} cores, workers ${idle.workerCores.toFixed(3)}, PSS ${idle.pssMiB.toFixed(0)} MiB`);

    const stages: string[] = [];
    const restartsNow = () => stages.reduce((n, id) => n + (app.registry.get(id)?.broadcast?.mixer.ffmpeg.restarts ?? 0), 0);
    const pairedCpu = () => pairedMixes.map((m) => readStat(m.proc.pid!)?.cpuSeconds ?? NaN);
    let pairedCores: number[] = [];
    let window = { fromMs: 0, toMs: 0 };
    const measure = async (k: number): Promise<Omit<CostPoint, 'firstTry' | 'marginalCoresPerStage'>> => {
      const restarts0 = restartsNow();
      await sender.health();
      const p0 = pairedCpu();
      const a = snapshot(exclude);
      const fromMs = Date.now();
      await sleep(opts.windowSeconds * 1000);
      const toMs = Date.now();
      const p1 = pairedCpu();
      const b = snapshot(exclude, { gc: true });
      pairedCores = p1.map((c, i) => (c - p0[i]!) / ((b.atMs - a.atMs) / 1000));
      window = { fromMs, toMs };
      const usage = usageBetween(a, b);
      const health = await sender.health();
      const realTime = realTimeCheck(
        stages.map((id) => ({ name: id, dir: app.stages.links.hlsDir(id), playlist: path.join(app.stages.links.hlsDir(id), PLAYLIST_NAME) })),
        fromMs,
        toMs,
        app.config.hls.segmentSeconds,
        restartsNow() - restarts0,
      );
      const coresTotal = totalOf(usage.cores) - idle.nodeCores - idle.workerCores;
      return {
        stages: k,
        usage,
        coresTotal,
        coresPerStage: coresTotal / k,
        perStage: {
          node: (usage.cores.node - idle.nodeCores) / k,
          mediasoup: (usage.cores.mediasoup - idle.workerCores) / k,
          ffmpeg: usage.cores.ffmpeg / k,
          other: usage.cores.other / k,
          exited: usage.cores.exited / k,
        },
        memoryPerStageMiB: (usage.pss.ffmpeg / MiB + (usage.pss.mediasoup / MiB - idle.pssByKindMiB.mediasoup) + usage.nodeHeapUsed / MiB - idle.heapMiB) / k,
        pssPerStageMiB: (totalOf(usage.pss) / MiB - idle.pssMiB) / k,
        pssPerStageByKindMiB: byKind((kind) => (usage.pss[kind] / MiB - idle.pssByKindMiB[kind]) / k),
        rssPerStageMiB: (totalOf(usage.rss) / MiB - idle.rssMiB) / k,
        rssTotalMiB: totalOf(usage.rss) / MiB,
        nodeHeapGrowthPerStageMiB: (usage.nodeHeapUsed / MiB - idle.heapMiB) / k,
        nodeExternalGrowthPerStageMiB: (usage.nodeExternal / MiB - idle.externalMiB) / k,
        realTime,
        senderMaxLateMs: health.maxLateMs,
      };
    };
    const describe = (p: Omit<CostPoint, 'firstTry' | 'marginalCoresPerStage'>) =>
      `${p.coresPerStage.toFixed(3)} cores/stage (node ${p.perStage.node.toFixed(3)}, workers ${p.perStage.mediasoup.toFixed(3)}, ffmpeg ${p.perStage.ffmpeg.toFixed(3)}, ` +
      `exited children ${p.perStage.exited.toFixed(3)}), ${p.memoryPerStageMiB.toFixed(1)} MiB/stage; ` +
      `real time: ${p.realTime.ok ? 'yes' : `NO (${p.realTime.problems.join('; ')}; the sender was up to ${p.senderMaxLateMs.toFixed(0)} ms late)`}; ` +
      `machine ${(p.usage.machineBusy * 100).toFixed(0)} % busy`;

    const points: CostPoint[] = [];
    let failedAt: number | null = null;
    for (const k of opts.ks) {
      const t = performance.now();
      while (stages.length < k) stages.push((await onAirStage(app, sender, `Bench ${stages.length + 1}`)).id);
      log(`cost: ${k} stages on air (${((performance.now() - t) / 1000).toFixed(1)} s to add); warm-up ${opts.warmupSeconds} s, window ${opts.windowSeconds} s`);
      if (opts.paired && points.length === 0) {
        for (const [name, tones] of [['floor', PERFORMER_TONES], ['slots', [...PERFORMER_TONES, ...Array.from({ length: Math.max(0, opts.paired.slots - PERFORMER_TONES.length) }, () => 0)]]] as const) {
          const mix = await startBaselineMix(path.join(opts.paired.dir, name), sender, `paired-${name}`, tones, app.config.hls.segmentSeconds, app.config.hls.aacBitrateKbps);
          pairedMixes.push(mix);
          exclude.push(mix.proc.pid!);
        }
      }
      await sleep(opts.warmupSeconds * 1000);
      let first: Omit<CostPoint, 'firstTry' | 'marginalCoresPerStage'> | null = null;
      let p = await measure(k);
      if (!p.realTime.ok && p.usage.machineBusy < SATURATED) {
        // Other work on the machine can stall a window: a K fails only when a second window fails too (unless the
        // machine had no CPU left: then that is the answer).
        log(`cost: K=${k}: ${describe(p)}; measuring again`);
        first = p;
        p = await measure(k);
      }
      if (pairedMixes.length > 0) {
        paired = {
          stages: k,
          floorCores: pairedCores[0]!,
          slots: opts.paired!.slots,
          slotsCores: pairedCores[1]!,
          oursCoresPerStage: p.coresPerStage,
          oursFfmpegCoresPerStage: p.perStage.ffmpeg,
          realTime: realTimeCheck(
            pairedMixes.map((m) => ({ name: m.name, dir: m.dir, playlist: path.join(m.dir, BASELINE_PLAYLIST_NAME) })),
            window.fromMs,
            window.toMs,
            app.config.hls.segmentSeconds,
            pairedMixes.filter((m) => m.proc.exitCode !== null || m.proc.signalCode !== null).length,
          ),
        };
        log(`cost: side by side, FFmpeg alone: ${paired.floorCores.toFixed(3)} cores (4 inputs), ${paired.slotsCores.toFixed(3)} cores (${paired.slots} inputs)`);
        await stopMixes(pairedMixes.splice(0), sender);
      }
      const prev = points.at(-1);
      const point: CostPoint = {
        ...p,
        marginalCoresPerStage: prev ? (p.coresTotal - prev.coresTotal) / (k - prev.stages) : null,
        firstTry: first && { realTime: first.realTime, senderMaxLateMs: first.senderMaxLateMs, coresPerStage: first.coresPerStage },
      };
      points.push(point);
      log(`cost: K=${k}: ${describe(point)}`);
      if (!point.realTime.ok) {
        failedAt = k;
        break;
      }
    }
    opts.onMeasured?.();
    const ok = points.filter((p) => p.realTime.ok).map((p) => p.stages);
    return { windowSeconds: opts.windowSeconds, warmupSeconds: opts.warmupSeconds, idle, points, maxRealTimeStages: ok.length ? Math.max(...ok) : 0, failedAt, paired };
  } finally {
    await stopMixes(pairedMixes, sender);
    const t = performance.now();
    await app.close();
    log(`cost: app closed (${((performance.now() - t) / 1000).toFixed(1)} s)`);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Baseline: FFmpeg alone

interface BaselineMix {
  name: string;
  proc: ChildProcess;
  dir: string;
  performers: string[];
}

/** The mixer's output options up to the muxer, then FFmpeg's HLS muxer writing fMP4 segments of `segmentSeconds`. */
function baselineOutputOptions(mixer: string[], dir: string, segmentSeconds: number): string[] {
  return [
    ...mixer.slice(0, mixer.indexOf('-f')),
    '-f', 'hls',
    '-hls_time', String(segmentSeconds),
    '-hls_list_size', '10',
    '-hls_flags', 'program_date_time+temp_file+omit_endlist+independent_segments',
    '-hls_segment_type', 'fmp4',
    '-hls_fmp4_init_filename', 'init.mp4',
    '-hls_segment_filename', `${dir}/seg_%05d.m4s`,
  ];
}

/** FFmpeg with the mixer's own arguments (as fluent-ffmpeg assembles them), one Opus input per tone, fed by the sender. */
async function startBaselineMix(dir: string, sender: RtpSender, name: string, tones: readonly number[], segmentSeconds: number, aacBitrateKbps: number): Promise<BaselineMix> {
  fs.mkdirSync(dir, { recursive: true });
  const ports = await reserveRtpPorts(tones.length);
  const sdp = path.join(dir, '.mix.sdp');
  fs.writeFileSync(sdp, buildMixerSdp(ports));
  const args = [
    ...mixerInputOptions(),
    '-i', sdp,
    '-y',
    // The mixer's filter graph and encoder; FFmpeg's own HLS muxer for the container (fMP4 segments, as ours).
    ...baselineOutputOptions(mixerOutputOptions({ inputs: ports.length, partSeconds: 0.2, aacBitrateKbps }), dir, segmentSeconds),
    path.join(dir, BASELINE_PLAYLIST_NAME),
  ];
  const proc = spawn('ffmpeg', args, { stdio: ['ignore', 'ignore', 'ignore'] });
  const mix: BaselineMix = { name, proc, dir, performers: [] };
  if (!(await waitForBoundPorts(ports, 5000))) {
    await stopMixes([mix], sender);
    throw new Error('baseline ffmpeg did not open its RTP inputs');
  }
  for (const [i, freq] of tones.entries()) {
    const id = `${name}-p${i}`;
    await sender.add({ id, port: ports[i]!, freq, payloadType: MIX_PAYLOAD_TYPE });
    mix.performers.push(id);
  }
  return mix;
}

/** Each FFmpeg is stopped as the runner stops its own (SIGINT, SIGKILL after 5 s) once its performers are gone. */
async function stopMixes(mixes: BaselineMix[], sender: RtpSender): Promise<void> {
  const stopped: Promise<unknown>[] = [];
  for (const m of mixes) {
    for (const id of m.performers) await sender.remove(id).catch(() => undefined);
    stopped.push(stopChild(m.proc));
  }
  await Promise.all(stopped);
}

export interface BaselineResult {
  points: BaselinePoint[];
}

export async function benchBaseline(opts: {
  ks: number[];
  warmupSeconds: number;
  windowSeconds: number;
  dir: string;
  sender: RtpSender;
  segmentSeconds: number;
  aacBitrateKbps: number;
  log: (s: string) => void;
}): Promise<BaselineResult> {
  const mixes: BaselineMix[] = [];
  const points: BaselinePoint[] = [];
  const exclude = [opts.sender.pid];
  try {
    for (const k of opts.ks) {
      while (mixes.length < k) {
        const name = `base${mixes.length + 1}`;
        mixes.push(await startBaselineMix(path.join(opts.dir, name), opts.sender, name, PERFORMER_TONES, opts.segmentSeconds, opts.aacBitrateKbps));
      }
      await sleep(opts.warmupSeconds * 1000);
      const a = snapshot(exclude);
      const fromMs = Date.now();
      await sleep(opts.windowSeconds * 1000);
      const toMs = Date.now();
      const b = snapshot(exclude);
      const seconds = (b.atMs - a.atMs) / 1000;
      // Only these FFmpeg processes count: the sender is another process, and Node does nothing for these mixes.
      const cpu = (m: BaselineMix) => (b.procs.get(m.proc.pid!)?.cpuSeconds ?? NaN) - (a.procs.get(m.proc.pid!)?.cpuSeconds ?? NaN);
      const cores = mixes.reduce((sum, m) => sum + cpu(m), 0) / seconds;
      const pss = mixes.reduce((sum, m) => sum + (b.procs.get(m.proc.pid!)?.pss ?? 0), 0);
      const realTime = realTimeCheck(
        mixes.map((m) => ({ name: m.name, dir: m.dir, playlist: path.join(m.dir, BASELINE_PLAYLIST_NAME) })),
        fromMs,
        toMs,
        opts.segmentSeconds,
        mixes.filter((m) => m.proc.exitCode !== null || m.proc.signalCode !== null).length,
      );
      const point: BaselinePoint = { stages: k, ffmpegCores: cores, coresPerStage: cores / k, pssPerStageMiB: pss / MiB / k, realTime };
      points.push(point);
      opts.log(`baseline: K=${k}: ${point.coresPerStage.toFixed(3)} cores/stage, ${point.pssPerStageMiB.toFixed(1)} MiB PSS/stage; real time: ${realTime.ok ? 'yes' : `NO (${realTime.problems.join('; ')})`}`);
      if (!realTime.ok) break;
    }
    return { points };
  } finally {
    await stopMixes(mixes, opts.sender);
  }
}
