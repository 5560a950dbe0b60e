// Checks an archive in its store against its manifest: every object present, sizes and sha256 equal, nothing missing.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import type { Manifest } from '../../services/archive/archiver.ts';
import type { ObjectStore } from '../../services/archive/store.ts';
import type { RecordingView } from '../../services/shared/rest.ts';
import { eventually } from './browser.ts';

export async function recordings(baseUrl: string, stageId: string): Promise<RecordingView[]> {
  const res = await fetch(`${baseUrl}/api/stages/${stageId}/recordings`);
  if (res.status !== 200) throw new Error(`recordings: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { recordings: RecordingView[] }).recordings;
}

/** Polls the REST listing until the stage's latest recording is archived (or failed); returns it and the wait. */
export async function waitArchived(baseUrl: string, stageId: string, timeoutMs: number): Promise<{ rec: RecordingView; waitedMs: number }> {
  const t0 = performance.now();
  const recs = await eventually(() => recordings(baseUrl, stageId), (r) => r[0]?.status === 'archived' || r[0]?.status === 'failed', timeoutMs, 100);
  const rec = recs[0];
  if (!rec) throw new Error('no recording listed');
  // On failure, say what the broadcast was: how long, how many segments, and what else the stage recorded.
  const about = JSON.stringify({ startedAt: rec.startedAt, endedAt: rec.endedAt, durationSeconds: rec.durationSeconds, segments: rec.segments,
    files: rec.files.length, recordingsOfStage: recs.length });
  expect(rec.status, `archive status (error: ${rec.error}; ${about})`).to.equal('archived');
  return { rec, waitedMs: performance.now() - t0 };
}

export const sha256 = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');

/**
 * Reads the manifest from the store and checks every object it lists is in the store with the same size and sha256,
 * and that the store holds nothing else under the broadcast's prefix. Every segment's run has its init section in the
 * manifest. With hlsDir, every segment and init section the live writer made there must be in the manifest.
 */
export async function verifyArchive(store: ObjectStore, rec: { files: readonly Pick<RecordingView['files'][number], 'file' | 'key'>[] }, hlsDir?: string): Promise<Manifest> {
  const manifestFile = rec.files.find((f) => f.file === 'manifest');
  expect(manifestFile, 'a manifest is listed').to.not.equal(undefined);
  const manifest = JSON.parse((await store.getBuffer(manifestFile!.key)).toString('utf8')) as Manifest;
  const prefix = manifestFile!.key.slice(0, -'manifest.json'.length);
  const stored = new Map((await store.list(prefix)).map((o) => [o.key, o.size]));
  for (const o of manifest.objects) {
    expect(stored.has(o.key), `${o.key} is in the store`).to.equal(true);
    expect(stored.get(o.key), `${o.key} size`).to.equal(o.size);
    expect(sha256(await store.getBuffer(o.key)), `${o.key} sha256`).to.equal(o.sha256);
  }
  expect([...stored.keys()].sort()).to.deep.equal([...manifest.objects.map((o) => o.key), manifestFile!.key].sort());
  const segments = manifest.objects.filter((o) => o.kind === 'segment');
  const inits = manifest.objects.filter((o) => o.kind === 'init');
  expect(segments.length, 'segments').to.be.above(0);
  for (const o of segments) expect(o.key, 'an fMP4 segment').to.match(/\/hls\/seg_\d{5}\.m4s$/);
  expect(inits.map((o) => path.posix.basename(o.key)), 'one init section per run').to.deep.equal(manifest.runs.map((r) => `init_${r.index}.mp4`));
  expect(manifest.runs.map((r) => r.init), "each run's init section").to.deep.equal(inits.map((o) => o.key));
  if (hlsDir) {
    const onDisk = fs.readdirSync(hlsDir).filter((f) => /^seg_\d+\.m4s$/.test(f)).sort();
    const listed = segments.map((o) => path.posix.basename(o.key)).sort();
    expect(listed, 'every segment written is archived').to.deep.equal(onDisk);
    // Init sections of runs that made a segment (a run FFmpeg left before its first fragment has nothing to decode).
    const initsOnDisk = fs.readdirSync(hlsDir).filter((f) => /^init_\d+\.mp4$/.test(f));
    for (const i of inits) expect(initsOnDisk, 'archived init sections are the writer\'s').to.include(path.posix.basename(i.key));
  }
  return manifest;
}

/** Downloads a recording's file through the REST API (following the redirect to the store, if any) into dest. */
export async function download(baseUrl: string, rec: RecordingView, file: string, dest: string): Promise<{ status: number; redirected: boolean; location: string | null }> {
  const first = await fetch(`${baseUrl}/api/recordings/${rec.id}/download?file=${encodeURIComponent(file)}`, { redirect: 'manual' });
  let res = first;
  const location = first.headers.get('location');
  if (first.status === 302 && location) res = await fetch(location);
  if (res.status !== 200) throw new Error(`download ${file}: ${res.status} ${await res.text()}`);
  fs.writeFileSync(dest, Buffer.from(await res.arrayBuffer()));
  return { status: first.status, redirected: first.status === 302, location };
}
