// Archive benchmark: a real broadcast of 4 synthetic Opus performers (FFmpeg → PlainTransport → the stage's mixer,
// as a browser's packets would arrive) runs for N minutes, then stops; we time stop → `archived` (every segment, the
// VOD playlist, the .m4a, the 4 tracks and the manifest confirmed by the store), for the local store and for S3
// (s3rver). The two broadcasts run at the same time; the stops are measured one after the other.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { App } from '../services/app.ts';
import { createStage, startTestApp, transition } from '../test/support/app.ts';
import { startS3, type S3Server } from '../test/support/s3.ts';
import { SyntheticPerformer } from '../test/support/synthetic.ts';

export interface ArchiveBenchResult {
  store: 'local' | 's3rver';
  broadcastSeconds: number;
  segments: number;
  bytes: number;
  stopToArchivedMs: number;
  /** Of which: making the VOD playlist, .m4a and manifest (until the archive status became uploading). */
  finalizeMs: number;
}

export async function benchArchive(opts: { seconds: number; log: (s: string) => void }): Promise<ArchiveBenchResult[]> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'stage-radio-bench-'));
  let s3: S3Server | null = null;
  const apps: { app: App; store: 'local' | 's3rver' }[] = [];
  const performers: SyntheticPerformer[] = [];
  try {
    s3 = await startS3();
    apps.push({ app: await startTestApp({ CDN_DIR: path.join(tmp, 'cdn-local') }), store: 'local' });
    apps.push({ app: await startTestApp({ CDN_DIR: path.join(tmp, 'cdn-s3'), ...s3.env() }), store: 's3rver' });
    const stages: string[] = [];
    for (const { app } of apps) {
      const stage = await createStage(app, 'Bench archive');
      await transition(app, stage.id, 'start');
      const s = app.registry.get(stage.id)!;
      for (const [i, freq] of [330, 440, 550, 660].entries()) {
        const p = await SyntheticPerformer.start(s.router, freq);
        performers.push(p);
        await s.mixer!.attach(`perf${i}`, p.producer, `Performer ${i + 1}`);
      }
      stages.push(stage.id);
    }
    opts.log(`archive: two ${opts.seconds} s broadcasts of 4 performers on air (local store, s3rver)`);
    await new Promise((r) => setTimeout(r, opts.seconds * 1000));
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
        await new Promise((r) => setTimeout(r, 50));
      }
      opts.log(`archive: ${store} archived ${Math.round(results.at(-1)!.stopToArchivedMs)} ms after stop`);
    }
    return results;
  } finally {
    await Promise.allSettled(performers.map((p) => p.stop()));
    for (const { app } of apps) await app.close().catch(() => undefined);
    await s3?.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}
