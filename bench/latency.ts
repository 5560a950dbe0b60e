// Latency on the server side.
// (a) Ingest → listed: a performer's packets switch to a 0.3 s burst of a marker tone at a known wall-clock instant (the
//     first burst packet leaving the sender); the live playlist players fetch (index.m3u8) is read every 20 ms, and
//     each segment's first appearance in it is noted, and the live writer says when it published the playlist that
//     first listed each LL-HLS part. Afterwards the segments are decoded (behind their init section, as one stream),
//     the marker onsets found in the audio, and each burst is matched to the segment and the part holding its onset:
//     latency = that segment (or part) listed − burst sent.
// (b) Go on air → first segment listed: POST /api/stages/<id>/start, then index.m3u8 read every 20 ms until it lists a
//     segment (and until it lists three: where hls.js, three target durations from the live edge, can start).
import fs from 'node:fs';
import path from 'node:path';
import type { App } from '../services/app.ts';
import { PLAYLIST_NAME, partDurationSeconds } from '../pipelines/mixer/ffmpegArgs.ts';
import { partUri } from '../pipelines/hls/liveWriter.ts';
import { parseMediaPlaylist } from '../pipelines/hls/playlist.ts';
import { createStage, transition } from '../test/support/app.ts';
import { decodeToPcm, SAMPLE_RATE, toneDb, toneOnsets } from '../test/support/audio.ts';
import { PlaylistWatcher, segmentsInput } from '../test/support/hls.ts';
import { onAirStage } from './cost.ts';
import type { RtpSender } from './sender.ts';

export const MARKER_HZ = 1200;
export const MARKER_SECONDS = 0.3;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  // Nearest rank.
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

export interface IngestLatency {
  markers: number;
  /** Bursts whose onset was found in a segment (the others are reported, not guessed). */
  matched: number;
  latenciesMs: number[];
  p50Ms: number;
  p95Ms: number;
  maxMs: number;
  segmentSeconds: number;
  /** The same bursts, to the LL-HLS part holding the onset listed (the playlist an LL client reloads). */
  part: { matched: number; latenciesMs: number[]; p50Ms: number; p95Ms: number; maxMs: number; partSeconds: number } | null;
}

export async function benchIngestLatency(opts: { app: App; sender: RtpSender; markers: number; log: (s: string) => void }): Promise<IngestLatency> {
  const { app, sender } = opts;
  await sender.prepare([], [{ freq: MARKER_HZ, seconds: MARKER_SECONDS }]);
  const stage = await onAirStage(app, sender, 'Bench latency');
  const dir = app.stages.links.hlsDir(stage.id);
  const marker = stage.performers[0]!;
  const writer = app.registry.get(stage.id)!.broadcast!.mixer.publisher;
  const partListedAt = new Map<string, number>();
  const onPart = (p: { uri: string; publishedAtMs: number }) => partListedAt.set(p.uri, p.publishedAtMs);
  writer.observer.on('partPublished', onPart);
  await sleep(3000);
  const watcher = new PlaylistWatcher(path.join(dir, PLAYLIST_NAME), 20);
  const sent: number[] = [];
  try {
    for (let i = 0; i < opts.markers; i++) {
      // 1.3-1.9 s apart: the onsets fall all over the segments.
      await sleep(1300 + Math.random() * 600);
      sent.push(await sender.burst(marker, MARKER_HZ, MARKER_SECONDS));
    }
    const last = sent.at(-1)!;
    await watcher.waitFor((w) => w.segments.some((s) => s.arrivedAt > last + 3000), 10_000);
  } finally {
    watcher.stop();
    writer.observer.off('partPublished', onPart);
  }

  // Every segment listed from a little before the first burst, decoded as one stream behind its init section (the
  // decoded audio is exactly as long as the segments' EXTINF, so each segment's place in it is known to the sample).
  const from = watcher.segments.findIndex((s) => s.arrivedAt >= sent[0]! - 2000);
  const segs = watcher.segments.slice(Math.max(0, from)).filter((s, _, all) => s.map === all[0]!.map);
  const pcm = decodeToPcm(segmentsInput(dir, segs));
  await transition(app, stage.id, 'stop');
  for (const id of stage.performers) await sender.remove(id);
  const starts: number[] = [];
  let total = 0;
  for (const s of segs) {
    starts.push(total);
    total += Math.round(s.duration * SAMPLE_RATE);
  }
  const partSamples = Math.round(partDurationSeconds(app.config.hls.partSeconds) * SAMPLE_RATE);
  const onsets = toneOnsets(pcm, MARKER_HZ, 0.5);
  // Media time and wall clock differ by a constant: the offset most burst/onset pairs agree on (within 100 ms).
  const diffs: number[] = [];
  for (const t of sent) for (const o of onsets) diffs.push(o * 1000 - t);
  let best = 0;
  let bestCount = -1;
  for (const d of diffs) {
    const c = diffs.filter((x) => Math.abs(x - d) <= 100).length;
    if (c > bestCount) {
      bestCount = c;
      best = d;
    }
  }
  const latencies: number[] = [];
  const partLatencies: number[] = [];
  for (const t of sent) {
    const o = onsets.find((x) => Math.abs(x * 1000 - t - best) <= 100);
    if (o === undefined) continue;
    const sample = Math.round(o * SAMPLE_RATE);
    let seg = starts.length - 1;
    while (seg > 0 && starts[seg]! > sample) seg--;
    // The segment holds the onset: the tone is there right after it.
    if (!(toneDb(pcm, MARKER_HZ, sample, Math.round(0.05 * SAMPLE_RATE)) > -50)) continue;
    latencies.push(segs[seg]!.arrivedAt - t);
    const s = segs[seg]!;
    const msn = Number(/(\d+)\.m4s$/.exec(s.uri)?.[1]);
    const part = Math.min(Math.floor((sample - starts[seg]!) / partSamples), Math.round(s.duration * SAMPLE_RATE / partSamples) - 1);
    const listedAt = partListedAt.get(partUri(msn, part));
    if (listedAt !== undefined) partLatencies.push(listedAt - t);
  }
  const r: IngestLatency = {
    markers: sent.length,
    matched: latencies.length,
    latenciesMs: latencies,
    p50Ms: percentile(latencies, 50),
    p95Ms: percentile(latencies, 95),
    maxMs: Math.max(...latencies),
    segmentSeconds: app.config.hls.segmentSeconds,
    part: app.config.hls.lowLatency
      ? {
          matched: partLatencies.length,
          latenciesMs: partLatencies,
          p50Ms: percentile(partLatencies, 50),
          p95Ms: percentile(partLatencies, 95),
          maxMs: Math.max(...partLatencies),
          partSeconds: partSamples / SAMPLE_RATE,
        }
      : null,
  };
  opts.log(
    `latency: ingest → listed over ${r.matched}/${r.markers} markers: segment p50 ${r.p50Ms.toFixed(0)} ms, p95 ${r.p95Ms.toFixed(0)} ms` +
      (r.part ? `; part p50 ${r.part.p50Ms.toFixed(0)} ms, p95 ${r.part.p95Ms.toFixed(0)} ms (${r.part.matched} bursts)` : ''),
  );
  return r;
}

export interface OnAirLatency {
  runs: number;
  /** POST start → its 200. */
  answerMs: number[];
  /** POST start → first segment listed in index.m3u8. */
  firstSegmentMs: number[];
  /** POST start → three segments listed. */
  threeSegmentsMs: number[];
  medianMs: number;
  maxMs: number;
}

export async function benchOnAirLatency(opts: { app: App; runs: number; log: (s: string) => void }): Promise<OnAirLatency> {
  const { app } = opts;
  const answerMs: number[] = [];
  const firstSegmentMs: number[] = [];
  const threeSegmentsMs: number[] = [];
  for (let i = 0; i < opts.runs; i++) {
    const stage = await createStage(app, `Bench go on air ${i + 1}`);
    const playlist = path.join(app.stages.links.hlsDir(stage.id), PLAYLIST_NAME);
    const listed = () => {
      try {
        return parseMediaPlaylist(fs.readFileSync(playlist, 'utf8')).segments.length;
      } catch {
        return 0;
      }
    };
    const t0 = performance.now();
    let answered = NaN;
    const started = transition(app, stage.id, 'start').then(() => (answered = performance.now() - t0));
    let first = NaN;
    while (performance.now() - t0 < 15_000) {
      const n = listed();
      if (n >= 1 && Number.isNaN(first)) first = performance.now() - t0;
      if (n >= 3) break;
      await sleep(20);
    }
    const three = listed() >= 3 ? performance.now() - t0 : NaN;
    await started;
    answerMs.push(answered);
    firstSegmentMs.push(first);
    threeSegmentsMs.push(three);
    await transition(app, stage.id, 'stop');
    await sleep(500);
  }
  const ok = firstSegmentMs.filter((x) => Number.isFinite(x));
  const r: OnAirLatency = { runs: opts.runs, answerMs, firstSegmentMs, threeSegmentsMs, medianMs: percentile(ok, 50), maxMs: ok.length === opts.runs ? Math.max(...ok) : Infinity };
  opts.log(`latency: go on air → first segment listed: ${firstSegmentMs.map((x) => x.toFixed(0)).join(', ')} ms`);
  return r;
}
