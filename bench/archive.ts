// Archive benchmark: a real broadcast of 4 synthetic Opus performers (tones encoded once, sent as RTP packets every
// 20 ms by bench/sender.ts into a PlainTransport producer → the stage's mixer, as a browser's packets would arrive) runs
// for N minutes,
// then stops; we time stop → `archived` (every segment, the VOD playlist, the .m4a, the 4 tracks and the manifest
// confirmed by the store), for the local store and for S3 (s3rver). The two broadcasts run at the same time; the stops
// are measured one after the other. bench/run.ts runs it in a process of its own (`--child <seconds>`), alongside the
// latency and origin measurements.
import { fork } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { App } from '../services/app.ts';
import { startTestApp, transition } from '../test/support/app.ts';
import { startS3, type S3Server } from '../test/support/s3.ts';
import { onAirStage, PERFORMER_TONES } from './cost.ts';
import { RtpSender } from './sender.ts';

export interface ArchiveBenchResult {
  store: 'local' | 's3rver';
  broadcastSeconds: number;
  segments: number;
  bytes: number;
  stopToArchivedMs: number;
  /** Of which: making the VOD playlist, .m4a and manifest (until the archive status became uploading). */
  finalizeMs: number;
}

export async function benchArchive(opts: { seconds: number; log: (s: string) => void; signal?: AbortSignal }): Promise<ArchiveBenchResult[]> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'stage-radio-bench-'));
  let s3: S3Server | null = null;
  const apps: { app: App; store: 'local' | 's3rver' }[] = [];
  let sender: RtpSender | null = null;
  try {
    sender = await RtpSender.start();
    await sender.prepare(PERFORMER_TONES);
    s3 = await startS3();
    apps.push({ app: await startTestApp({ CDN_DIR: path.join(tmp, 'cdn-local') }), store: 'local' });
    apps.push({ app: await startTestApp({ CDN_DIR: path.join(tmp, 'cdn-s3'), ...s3.env() }), store: 's3rver' });
    const stages: string[] = [];
    for (const { app } of apps) stages.push((await onAirStage(app, sender, 'Bench archive')).id);
    opts.log(`archive: two ${opts.seconds} s broadcasts of 4 performers on air (local store, s3rver)`);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(resolve, opts.seconds * 1000);
      opts.signal?.addEventListener('abort', () => {
        clearTimeout(timer);
        reject(new Error('archive benchmark stopped'));
      });
    });
    const results: ArchiveBenchResult[] = [];
    for (const [i, { app, store }] of apps.entries()) {
      const stageId = stages[i]!;
      const t0 = performance.now();
      await transition(app, stageId, 'stop');
      let finalizeMs = 0;
      for (;;) {
        const recs = (await (await fetch(`${app.url}/api/stages/${stageId}/recordings`)).json()) as { recordings: { id: string; status: string; error: string | null; segments: { count: number } }[] };
        const rec = recs.recordings[0]!;
        if (rec.status !== 'recording' && finalizeMs === 0) finalizeMs = performance.now() - t0;
        if (rec.status === 'failed') throw new Error(`archive failed: ${rec.error}`);
        if (rec.status === 'archived') {
          const stopToArchivedMs = performance.now() - t0;
          const objects = await app.archiver.repo.objects(rec.id);
          results.push({ store, broadcastSeconds: opts.seconds, segments: rec.segments.count, bytes: objects.reduce((s, o) => s + o.size, 0), stopToArchivedMs, finalizeMs });
          break;
        }
        if (opts.signal?.aborted) throw new Error('archive benchmark stopped');
        if (performance.now() - t0 > 300_000) throw new Error(`${store}: not archived 5 minutes after the stop (status ${rec.status})`);
        await new Promise((r) => setTimeout(r, 50));
      }
      opts.log(`archive: ${store} archived ${Math.round(results.at(-1)!.stopToArchivedMs)} ms after stop`);
    }
    return results;
  } finally {
    await sender?.stop();
    for (const { app } of apps) await app.close().catch(() => undefined);
    await s3?.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

/**
 * Runs benchArchive in a child process (its CPU and its event loop apart from the caller's); `done` resolves with its
 * results. stop() ends it early (idempotent; nothing once it is done).
 */
export function benchArchiveInChild(opts: { seconds: number; log: (s: string) => void }): { pid: number; done: Promise<ArchiveBenchResult[]>; stop: () => void } {
  const proc = fork(fileURLToPath(import.meta.url), ['--child', String(opts.seconds)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const done = new Promise<ArchiveBenchResult[]>((resolve, reject) => {
    let result: { ok: true; results: ArchiveBenchResult[] } | { ok: false; error: string } | null = null;
    proc.on('message', (m: { log?: string; result?: typeof result }) => {
      if (m.log) opts.log(m.log);
      if (m.result) result = m.result;
    });
    proc.once('exit', (code) => {
      if (result?.ok) resolve(result.results);
      else reject(new Error(result ? result.error : `the archive benchmark exited (${code}) without a result`));
    });
  });
  // Disconnecting is the signal to end: the child stops its broadcasts, cleans up and exits.
  const stop = () => {
    if (proc.connected) proc.disconnect();
  };
  return { pid: proc.pid!, done, stop };
}

if (process.argv[1] === fileURLToPath(import.meta.url) && process.argv[2] === '--child') {
  // The parent gave up (or is gone): the broadcasts end now, and everything is cleaned up as usual.
  const aborted = new AbortController();
  process.on('disconnect', () => aborted.abort());
  const seconds = Number(process.argv[3]);
  const send = (m: unknown) => new Promise<void>((r) => (process.connected ? process.send!(m, () => r()) : r()));
  try {
    if (!(seconds > 0)) throw new Error(`usage: archive.ts --child <seconds> (got ${process.argv[3]})`);
    const results = await benchArchive({ seconds, log: (s) => void send({ log: s }), signal: aborted.signal });
    await send({ result: { ok: true, results } });
  } catch (err) {
    await send({ result: { ok: false, error: String(err) } });
  }
  // Everything is closed by now; nothing left may keep the child (and so the benchmark) waiting.
  process.exit(0);
}
