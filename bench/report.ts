// The benchmark's outputs: the Markdown table (measure, result, target, met, detail) and the SVG plot of CPU cores
// against the number of stages on air (hand-written SVG: no dependency).
import type { ArchiveBenchResult } from './archive.ts';
import type { BrowserLatency } from './browser.ts';
import type { BaselineResult, CostResult } from './cost.ts';
import type { IngestLatency, OnAirLatency } from './latency.ts';
import type { HeldReloads } from './llhls.ts';
import type { PairCost } from './pair.ts';
import type { ClusterSweep } from './cluster.ts';
import type { OriginResult } from './origin.ts';
import type { SoundBench } from './sound.ts';
import type { PagesBench } from './pages.ts';

export interface BenchResults {
  sound: SoundBench | null;
  cost: CostResult | null;
  baseline: BaselineResult | null;
  ingest: IngestLatency | null;
  onAir: OnAirLatency | null;
  browser: BrowserLatency | null;
  pages: PagesBench | null;
  origin: OriginResult | null;
  held: HeldReloads | null;
  llCost: PairCost | null;
  /** The mixer's one pipe (MIX_INPUT=ogg) against its RTP sockets (rtp), side by side. */
  pipeCost: PairCost | null;
  /** A node in cluster mode (Redis) against a single node, both on one PostgreSQL, side by side. */
  clusterCost: PairCost | null;
  /** Stages on air in real time on three cluster nodes on this machine (one process). */
  clusterSweep?: ClusterSweep | null;
  archive: ArchiveBenchResult[] | null;
  /** What could not be measured, by measure. */
  errors: Record<string, string>;
}

type Row = [measure: string, result: string, target: string, met: string, detail: string];

const f3 = (x: number) => (Number.isFinite(x) ? x.toFixed(3) : 'n/a');
const sec = (ms: number) => (Number.isFinite(ms) ? `${(ms / 1000).toFixed(2)} s` : 'n/a');
const met = (ok: boolean | null) => (ok === null ? '—' : ok ? 'yes' : '**no**');

export function tableRows(r: BenchResults): Row[] {
  const rows: Row[] = [];
  const c = r.cost;
  const snd = r.sound;
  if (snd) {
    // Against a whole stage's cost at 1 stage in this run, when it was measured.
    const stage = c?.points[0]?.coresPerStage;
    const share = stage ? snd.addedCores / stage : null;
    rows.push([
      'Sound chain: CPU it adds per stage',
      `${snd.addedCores >= 0 ? '+' : ''}${f3(snd.addedCores)} cores${share !== null ? ` (${(share * 100).toFixed(1)} % of a stage)` : ''}`,
      '≤ +15 % of a stage',
      met(share === null ? null : share <= 0.15),
      `the mixer's FFmpeg (${snd.slots} Opus slots, the graph, AAC 128k) offline on ${snd.programmeSeconds} s of a 4-performer programme, ${snd.rounds} rounds of each chain alternately: ` +
        `${snd.current.median.toFixed(4)} cores per stage (rounds ${snd.current.coresPerStage.map((x) => x.toFixed(4)).join(', ')}) against ${snd.previous.median.toFixed(4)} with the chain before (${snd.previous.coresPerStage.map((x) => x.toFixed(4)).join(', ')}), ` +
        `${(snd.current.median / snd.previous.median).toFixed(2)}× the FFmpeg's cost` +
        (stage ? `; a stage at 1 stage on air cost ${f3(stage)} cores in this run` : ''),
    ]);
    rows.push([
      'Sound chain: delay it adds',
      `${snd.current.delayMs.toFixed(1)} ms`,
      '≤ 100 ms',
      met(snd.current.delayMs <= 100),
      `where the programme best matches the slot it carries (cross-correlation, searched to 500 ms); the chain before: ${snd.previous.delayMs.toFixed(1)} ms`,
    ]);
  }
  const pg = r.pages;
  if (pg) {
    const kib = (b: number) => `${(b / 1024).toFixed(0)} KiB`;
    const { compressed: now, identity: before } = pg.median;
    rows.push([
      'Listener page: transfer size (markup, script, stylesheet)',
      `${kib(now.pageBytes)} (${((now.pageBytes / before.pageBytes) * 100).toFixed(0)} % of ${kib(before.pageBytes)} uncompressed)`,
      '≤ 50 % of before',
      met(now.pageBytes <= before.pageBytes / 2),
      `as Chromium received them, cache off; uncompressed = the same server asked for Accept-Encoding: identity, as it served everything before; ${pg.rounds} loads of each, alternately`,
    ]);
    rows.push([
      'Listener page: time to first audio',
      `${sec(now.firstAudioMs)} (uncompressed: ${sec(before.firstAudioMs)})`,
      'not worse',
      met(now.firstAudioMs <= before.firstAudioMs),
      `navigation → the audio playing with its time advancing, on a stage on air, over a ${pg.link.downMbps} Mbit/s link with ${pg.link.rttMs} ms round trip (Chromium's throttling); medians of ${pg.rounds} loads each, alternately: ` +
        `compressed ${pg.compressed.map((x) => x.firstAudioMs.toFixed(0)).join(', ')} ms; uncompressed ${pg.identity.map((x) => x.firstAudioMs.toFixed(0)).join(', ')} ms; everything fetched until then ${kib(now.totalBytes)} against ${kib(before.totalBytes)}`,
    ]);
  }
  if (c) {
    for (const p of c.points) {
      const s = p.perStage;
      rows.push([
        `CPU per on-air stage (4 performers), ${p.stages} stage${p.stages > 1 ? 's' : ''} on air`,
        `${f3(p.coresPerStage)} cores`,
        '—',
        '—',
        `Node ${f3(s.node)}, mediasoup ${f3(s.mediasoup)}, FFmpeg ${f3(s.ffmpeg)}, exited children ${f3(s.exited)}; ` +
          (p.marginalCoresPerStage !== null ? `each stage past ${c.points[c.points.indexOf(p) - 1]!.stages} added ${f3(p.marginalCoresPerStage)}; ` : '') +
          `memory ${p.memoryPerStageMiB.toFixed(1)} MiB/stage (FFmpeg PSS ${p.pssPerStageByKindMiB.ffmpeg.toFixed(1)}, mediasoup PSS ${p.pssPerStageByKindMiB.mediasoup.toFixed(1)}, Node heap ${p.nodeHeapGrowthPerStageMiB.toFixed(1)}); ` +
          `real time: ${p.realTime.ok ? 'yes' : `no (${p.realTime.problems.join('; ')})`}, ${p.realTime.minSegments}/${p.realTime.expectedSegments} segments, longest gap ${p.realTime.maxGapSeconds.toFixed(2)} s; ` +
          `machine ${(p.usage.machineBusy * 100).toFixed(0)} % busy (all processes)` +
          (p.firstTry ? ` (a first window was not: ${p.firstTry.realTime.problems.join('; ')}, sender up to ${p.firstTry.senderMaxLateMs.toFixed(0)} ms late)` : ''),
      ]);
    }
    const last = c.points.at(-1);
    rows.push([
      'Stages on air in real time (most tried)',
      c.failedAt === null ? `≥ ${c.maxRealTimeStages}` : `${c.maxRealTimeStages}`,
      '—',
      '—',
      c.failedAt === null
        ? `every stage real time up to ${c.maxRealTimeStages} stages (${last ? f3(last.coresTotal) : 'n/a'} cores above idle)`
        : `fails at ${c.failedAt} stages${last?.firstTry ? ', in two windows in a row' : ` with the machine ${((last?.usage.machineBusy ?? NaN) * 100).toFixed(0)} % busy`}: ${last?.realTime.problems.join('; ')} (the sender, another process, was up to ${last?.senderMaxLateMs.toFixed(0)} ms late)`,
    ]);
  }
  const pb = c?.paired;
  if (pb) {
    const ratio = pb.oursCoresPerStage / pb.floorCores;
    rows.push([
      `Baseline: FFmpeg alone, same mix, 1 mix, side by side with ours at ${pb.stages} stage${pb.stages > 1 ? 's' : ''}`,
      `${f3(pb.floorCores)} cores`,
      '—',
      '—',
      `4 Opus RTP inputs → amix + loudness chain → AAC 128k HLS, measured in the same window as ours (same machine, same moment); real time: ${pb.realTime.ok ? 'yes' : 'no'}`,
    ]);
    rows.push([
      `Cost ours / baseline, ${pb.stages} stage${pb.stages > 1 ? 's' : ''}, side by side`,
      `${ratio.toFixed(2)}×`,
      '≤ 1.3×',
      met(ratio <= 1.3),
      `${f3(pb.oursCoresPerStage)} / ${f3(pb.floorCores)} cores; our FFmpeg alone ${(pb.oursFfmpegCoresPerStage / pb.floorCores).toFixed(2)}× the baseline's; ` +
        `the same FFmpeg with the mixer's ${pb.slots} inputs (${pb.slots - 4} carrying Opus silence) ${f3(pb.slotsCores)} cores (${(pb.slotsCores / pb.floorCores).toFixed(2)}×)`,
    ]);
  }
  for (const p of r.baseline?.points ?? []) {
    rows.push([
      `Baseline: FFmpeg alone, same mix, ${p.stages} mix${p.stages > 1 ? 'es' : ''}`,
      `${f3(p.coresPerStage)} cores`,
      '—',
      '—',
      `per mix; ${p.pssPerStageMiB.toFixed(1)} MiB PSS each; real time: ${p.realTime.ok ? 'yes' : 'no'}; measured after ours, while the archive benchmark's two broadcasts ran`,
    ]);
    const ours = c?.points.find((q) => q.stages === p.stages);
    if (ours) {
      const ratio = ours.coresPerStage / p.coresPerStage;
      rows.push([
        `Cost ours / baseline, ${p.stages} stages`,
        `${ratio.toFixed(2)}×`,
        '≤ 1.3×',
        met(ratio <= 1.3),
        `${f3(ours.coresPerStage)} / ${f3(p.coresPerStage)} cores per stage, in separate windows; our FFmpeg alone ${(ours.perStage.ffmpeg / p.coresPerStage).toFixed(2)}× the baseline's`,
      ]);
    }
  }
  if (r.ingest) {
    const l = r.ingest;
    rows.push([
      `Latency: ingest → segment listed in index.m3u8 (p50 / p95)`,
      `${sec(l.p50Ms)} / ${sec(l.p95Ms)}`,
      'p95 ≤ 1.8 s',
      met(l.matched > 0 ? l.p95Ms <= 1800 : null),
      `${l.matched}/${l.markers} marker bursts found in a segment by decoding; max ${sec(l.maxMs)}; ${l.segmentSeconds} s segments`,
    ]);
    if (l.part) {
      rows.push([
        'Latency: ingest → LL-HLS part listed (p50 / p95)',
        `${sec(l.part.p50Ms)} / ${sec(l.part.p95Ms)}`,
        '—',
        '—',
        `the same bursts, to the publication of the playlist first listing the part that holds the onset; ${l.part.matched} bursts; max ${sec(l.part.maxMs)}; ${l.part.partSeconds.toFixed(3)} s parts`,
      ]);
    }
  }
  if (r.onAir) {
    const o = r.onAir;
    rows.push([
      'Latency: go on air (POST start) → first segment listed',
      `${sec(o.medianMs)} median, ${sec(o.maxMs)} max`,
      '≤ 2.5 s',
      met(Number.isFinite(o.maxMs) ? o.maxMs <= 2500 : false),
      `${o.runs} runs: ${o.firstSegmentMs.map((x) => (x / 1000).toFixed(2)).join(', ')} s; POST answered in ${o.answerMs.map((x) => (x / 1000).toFixed(2)).join(', ')} s; three segments (hls.js can start) ${o.threeSegmentsMs.map((x) => (x / 1000).toFixed(2)).join(', ')} s`,
    ]);
  }
  if (r.browser) {
    const w = r.browser;
    const drift = (l: { driftMs: number }) => (Number.isFinite(l.driftMs) ? `; last five bursts − first five ${(l.driftMs / 1000).toFixed(2)} s` : '');
    rows.push([
      'Latency: mic → listener ear, LL-HLS (the listener page: hls.js defaults), tuned in during the show',
      `${sec(w.listener.medianMs)} median`,
      '≤ 1.5 s',
      met(w.listener.matched > 0 ? w.listener.medianMs <= 1500 : null),
      `${w.listener.matched} bursts over ${w.listenSeconds} s; p95 ${sec(w.listener.p95Ms)}; the page opened once the live playlist was full and played ${sec(w.listener.startedAfterMs)} later${drift(w.listener)}`,
    ]);
    rows.push([
      'Latency: mic → listener ear, classic HLS (the same page, `?lowLatency=0`), tuned in during the show',
      `${sec(w.classicListener.medianMs)} median`,
      '≤ 4 s',
      met(w.classicListener.matched > 0 ? w.classicListener.medianMs <= 4000 : null),
      `${w.classicListener.matched} bursts; p95 ${sec(w.classicListener.p95Ms)}; opened at the same moment as the LL listener, played ${sec(w.classicListener.startedAfterMs)} later${drift(w.classicListener)}; ` +
        `LL-HLS saves ${sec(w.classicListener.medianMs - w.listener.medianMs)}`,
    ]);
    rows.push([
      'Latency: mic → listener ear, tuned in as the show started',
      `${sec(w.earlyListener.medianMs)} median`,
      '≤ 4 s',
      met(w.earlyListener.matched > 0 ? w.earlyListener.medianMs <= 4000 : null),
      `${w.earlyListener.matched} bursts; p95 ${sec(w.earlyListener.p95Ms)}; LL-HLS; the page opened right after POST start and played ${sec(w.earlyListener.startedAfterMs)} later${drift(w.earlyListener)}`,
    ]);
    rows.push([
      'Latency: mic → other performer\'s ear (SFU, WebRTC)',
      `${Number.isFinite(w.performer.medianMs) ? w.performer.medianMs.toFixed(0) : 'n/a'} ms median`,
      '≤ 150 ms',
      met(w.performer.matched > 0 ? w.performer.medianMs <= 150 : null),
      `${w.performer.matched} bursts; p95 ${Number.isFinite(w.performer.p95Ms) ? w.performer.p95Ms.toFixed(0) : 'n/a'} ms; Chromium's jitter buffer included, output device not`,
    ]);
  }
  if (r.origin) {
    const o = r.origin;
    rows.push([
      `Origin: /live playlist + segment requests, ${o.connections.toLocaleString('en')} keep-alive connections`,
      `${Math.round(o.requestsPerSecond).toLocaleString('en')} req/s`,
      '≥ 5,000 req/s',
      met(o.requestsPerSecond >= 5000),
      `latency p50 ${o.latencyP50Ms} ms, p99 ${o.latencyP99Ms} ms; ${o.throughputMiBps.toFixed(1)} MiB/s; ${o.non2xx} non-2xx, ${o.errors} errors (${o.timeouts} timeouts); ${o.seconds} s; the load generator used ${(o.clientCpuSeconds / o.seconds).toFixed(2)} cores of the same machine`,
    ]);
    if (o.reference) {
      const ref = o.reference;
      rows.push([
        'Origin reference: bare Node http, same files from memory, same load',
        `${Math.round(ref.requestsPerSecond).toLocaleString('en')} req/s`,
        '—',
        '—',
        `what this machine and load generator reach at all; ours is ${((o.requestsPerSecond / ref.requestsPerSecond) * 100).toFixed(0)} % of it; latency p50 ${ref.latencyP50Ms} ms, p99 ${ref.latencyP99Ms} ms; ${ref.non2xx} non-2xx, ${ref.errors} errors`,
      ]);
    }
  }
  if (r.held) {
    const h = r.held;
    rows.push([
      `LL-HLS origin: ${h.connections.toLocaleString('en')} held blocking reloads for one part, part published → last answered`,
      `${h.lastMs} ms`,
      '—',
      '—',
      `median of ${h.rounds.length} rounds (${h.rounds.map((x) => `${x.heldAtPublish} held, ${x.answered} answered, ${x.non200} not 200, p50 ${x.p50Ms} / p95 ${x.p95Ms} / last ${x.lastMs} ms`).join('; ')}); ` +
        `answers stamped at their first byte by the load generator, a process of its own on the same cores (${h.clientCpuSeconds.toFixed(1)} CPU s in all)`,
    ]);
  }
  if (r.llCost) {
    const c2 = r.llCost;
    rows.push([
      `CPU per stage, LL-HLS on / off, side by side (${c2.stages} stages each)`,
      `${c2.ratio.toFixed(3)}×`,
      '≤ 1.10×',
      met(c2.ratio <= 1.1),
      `median of ${c2.windows.length} windows of ${c2.windowSeconds} s: on ${f3(c2.aCoresPerStage)}, off ${f3(c2.bCoresPerStage)} cores per stage (Node, mediasoup, FFmpeg; no listeners); ` +
        `ratios ${c2.windows.map((x) => x.ratio.toFixed(3)).join(', ')}; FFmpeg restarts on ${c2.ffmpegRestarts.a}, off ${c2.ffmpegRestarts.b}`,
    ]);
  }
  if (r.pipeCost) {
    const p = r.pipeCost;
    rows.push([
      `CPU per stage, the mixer's one pipe / its RTP sockets, side by side (${p.stages} stages each)`,
      `${p.ratio.toFixed(3)}×`,
      '< 1×',
      met(p.ratio < 1),
      `median of ${p.windows.length} windows of ${p.windowSeconds} s: one pipe (MIX_INPUT=ogg) ${f3(p.aCoresPerStage)} (Node ${f3(p.aSplit.node)}, mediasoup ${f3(p.aSplit.mediasoup)}, FFmpeg ${f3(p.aSplit.ffmpeg)}), ` +
        `RTP sockets (MIX_INPUT=rtp) ${f3(p.bCoresPerStage)} (Node ${f3(p.bSplit.node)}, mediasoup ${f3(p.bSplit.mediasoup)}, FFmpeg ${f3(p.bSplit.ffmpeg)}) cores per stage; ` +
        `ratios ${p.windows.map((x) => x.ratio.toFixed(3)).join(', ')}; FFmpeg restarts ${p.ffmpegRestarts.a} and ${p.ffmpegRestarts.b}`,
    ]);
  }
  if (r.clusterCost) {
    const k = r.clusterCost;
    rows.push([
      `CPU per stage, a cluster node (REDIS_URL) / a single node, side by side (${k.stages} stages each, one PostgreSQL)`,
      `${k.ratio.toFixed(3)}×`,
      '—',
      met(null),
      `median of ${k.windows.length} windows of ${k.windowSeconds} s: cluster node ${f3(k.aCoresPerStage)} (Node ${f3(k.aSplit.node)}, mediasoup ${f3(k.aSplit.mediasoup)}, FFmpeg ${f3(k.aSplit.ffmpeg)}), ` +
        `single node ${f3(k.bCoresPerStage)} (Node ${f3(k.bSplit.node)}, mediasoup ${f3(k.bSplit.mediasoup)}, FFmpeg ${f3(k.bSplit.ffmpeg)}) cores per stage: ` +
        `cluster mode costs ${f3(k.aCoresPerStage - k.bCoresPerStage)} cores per stage (heartbeats, lease renewals, the orphan sweep); ` +
        `ratios ${k.windows.map((x) => x.ratio.toFixed(3)).join(', ')}; FFmpeg restarts ${k.ffmpegRestarts.a} and ${k.ffmpegRestarts.b}`,
    ]);
  }
  if (r.clusterSweep) {
    const c = r.clusterSweep;
    const last = c.points.at(-1);
    for (const p of c.points) {
      rows.push([
        `Three cluster nodes, ${p.stages} stages (per node ${p.perNode.join(' / ')})`,
        `${f3(p.coresPerStage)} cores/stage`,
        '—',
        met(null),
        `${f3(p.coresTotal)} cores above the three idle nodes (${f3(c.idleCores)}); machine ${(p.machineBusy * 100).toFixed(0)} % busy; ` +
          `real time: ${p.realTime.ok ? 'yes' : `no (${p.realTime.problems.join('; ')})`}, ${p.realTime.minSegments}/${p.realTime.expectedSegments} segments, longest gap ${p.realTime.maxGapSeconds.toFixed(2)} s`,
      ]);
    }
    rows.push([
      'Stages on air in real time on three cluster nodes (most tried; the nodes in one process)',
      c.failedAt === null ? `≥ ${c.maxRealTimeStages}` : `${c.maxRealTimeStages}`,
      '—',
      '—',
      c.failedAt === null
        ? `every stage real time up to ${c.maxRealTimeStages} stages, placed by load through the first node (${last ? f3(last.coresTotal) : 'n/a'} cores above idle)`
        : `fails at ${c.failedAt} stages: ${last?.realTime.problems.join('; ')}`,
    ]);
  }
  for (const a of r.archive ?? []) {
    rows.push([
      `Archive: stop → archived, ${a.broadcastSeconds >= 120 ? `${Math.round(a.broadcastSeconds / 60)} min` : `${a.broadcastSeconds} s`} broadcast, ${a.store}`,
      sec(a.stopToArchivedMs),
      '≤ 10 s',
      met(a.stopToArchivedMs <= 10_000),
      `${a.segments} segments, ${(a.bytes / 2 ** 20).toFixed(1)} MiB; finalize (VOD, .m4a, manifest) ${sec(a.finalizeMs)}`,
    ]);
  }
  for (const [measure, error] of Object.entries(r.errors)) rows.push([measure, 'not measured', '—', '—', error.replace(/\|/g, '/').replace(/\s+/g, ' ')]);
  return rows;
}

export function markdownTable(rows: Row[]): string {
  return ['| Measure | Result | Target | Met | Detail |', '|---|---|---|---|---|', ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** CPU cores (all processes, per kind) against stages on air, with the baseline and the machine's cores. */
export function costSvg(cost: CostResult, baseline: BaselineResult | null, machineCores: number, title: string): string {
  const W = 720;
  const H = 440;
  const m = { left: 60, right: 190, top: 40, bottom: 50 };
  const pw = W - m.left - m.right;
  const ph = H - m.top - m.bottom;
  const pts = cost.points;
  const maxK = Math.max(1, ...pts.map((p) => p.stages), ...(baseline?.points.map((p) => p.stages) ?? []));
  const totals = pts.map((p) => p.coresTotal);
  const maxY = Math.max(machineCores * 1.1, ...totals.map((t) => t * 1.1), 0.1);
  const x = (k: number) => m.left + (k / maxK) * pw;
  const y = (v: number) => m.top + ph - (v / maxY) * ph;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="#fff"/>`);
  out.push(`<text x="${m.left}" y="22" font-size="14" font-weight="bold">${esc(title)}</text>`);
  // Grid and axes.
  const yStep = maxY > 4 ? 1 : maxY > 1 ? 0.5 : 0.1;
  for (let v = 0; v <= maxY + 1e-9; v += yStep) {
    out.push(`<line x1="${m.left}" x2="${m.left + pw}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${m.left - 8}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end">${v.toFixed(yStep < 1 ? 1 : 0)}</text>`);
  }
  const xTicks = [...new Set([0, ...pts.map((p) => p.stages), ...(baseline?.points.map((p) => p.stages) ?? [])])].sort((a, b) => a - b);
  for (const k of xTicks) {
    out.push(`<line x1="${x(k).toFixed(1)}" x2="${x(k).toFixed(1)}" y1="${m.top + ph}" y2="${m.top + ph + 5}" stroke="#333"/>`);
    out.push(`<text x="${x(k).toFixed(1)}" y="${m.top + ph + 18}" text-anchor="middle">${k}</text>`);
  }
  out.push(`<line x1="${m.left}" x2="${m.left + pw}" y1="${m.top + ph}" y2="${m.top + ph}" stroke="#333"/>`);
  out.push(`<line x1="${m.left}" x2="${m.left}" y1="${m.top}" y2="${m.top + ph}" stroke="#333"/>`);
  out.push(`<text x="${m.left + pw / 2}" y="${H - 12}" text-anchor="middle">stages on air (4 performers each)</text>`);
  out.push(`<text transform="translate(16 ${m.top + ph / 2}) rotate(-90)" text-anchor="middle">CPU cores</text>`);
  // The machine's cores.
  out.push(`<line x1="${m.left}" x2="${m.left + pw}" y1="${y(machineCores).toFixed(1)}" y2="${y(machineCores).toFixed(1)}" stroke="#999" stroke-dasharray="6 4"/>`);
  const series: { name: string; color: string; data: [number, number][]; dash?: string; width?: number }[] = [
    { name: 'ours: all processes', color: '#d62728', data: pts.map((p) => [p.stages, p.coresTotal]), width: 3 },
    { name: 'ours: FFmpeg', color: '#1f77b4', data: pts.map((p) => [p.stages, p.perStage.ffmpeg * p.stages]) },
    { name: 'ours: Node', color: '#2ca02c', data: pts.map((p) => [p.stages, p.perStage.node * p.stages]) },
    { name: 'ours: mediasoup', color: '#9467bd', data: pts.map((p) => [p.stages, p.perStage.mediasoup * p.stages]) },
    { name: 'ours: exited children', color: '#8c564b', data: pts.map((p) => [p.stages, p.perStage.exited * p.stages]) },
    {
      name: 'baseline: FFmpeg alone',
      color: '#ff7f0e',
      data: [
        ...(cost.paired ? [[1, cost.paired.floorCores] as [number, number]] : []),
        ...(baseline?.points ?? []).filter((p) => !cost.paired || p.stages !== 1).map((p): [number, number] => [p.stages, p.ffmpegCores]),
      ].sort((a, b) => a[0] - b[0]),
      dash: '4 3',
      width: 2,
    },
  ];
  for (const s of series) {
    if (s.data.length === 0) continue;
    const d = [[0, 0] as [number, number], ...s.data].map(([k, v], i) => `${i ? 'L' : 'M'}${x(k).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
    out.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="${s.width ?? 1.5}"${s.dash ? ` stroke-dasharray="${s.dash}"` : ''}/>`);
    for (const [k, v] of s.data) out.push(`<circle cx="${x(k).toFixed(1)}" cy="${y(v).toFixed(1)}" r="3" fill="${s.color}"><title>${esc(`${s.name}: ${k} stages, ${v.toFixed(3)} cores`)}</title></circle>`);
  }
  for (const p of pts.filter((q) => !q.realTime.ok)) {
    out.push(`<text x="${x(p.stages).toFixed(1)}" y="${(y(p.coresTotal) + 18).toFixed(1)}" text-anchor="end" fill="#d62728">not real time</text>`);
  }
  // Legend.
  const lx = m.left + pw + 16;
  const legend = [...series.filter((s) => s.data.length > 0), { name: `machine: ${machineCores} cores`, color: '#999', dash: '6 4', width: 1.5, data: [] }];
  legend.forEach((s, i) => {
    const ly = m.top + 10 + i * 20;
    out.push(`<line x1="${lx}" x2="${lx + 22}" y1="${ly}" y2="${ly}" stroke="${s.color}" stroke-width="${s.width ?? 1.5}"${s.dash ? ` stroke-dasharray="${s.dash}"` : ''}/>`);
    out.push(`<text x="${lx + 28}" y="${ly + 4}">${esc(s.name)}</text>`);
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
