// The archive on the embedded defaults (PGlite, the local-folder store): downloads stream with Range support, the
// REST API refuses bad parameters, and local copies are deleted only after upload, per the retention.
import fs from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import type { App } from '../../services/app.ts';
import { createStage, startTestApp, TEST_ADMIN_TOKEN } from '../support/app.ts';
import { recordings, verifyArchive, waitArchived } from '../support/archive.ts';
import { eventually } from '../support/browser.ts';
import { TempDir } from '../support/media.ts';

describe('archive: local store (embedded default)', function () {
  this.timeout(120_000);
  let tmp: TempDir;
  let app: App;

  before(async () => {
    tmp = new TempDir();
    app = await startTestApp({ CDN_DIR: tmp.file('cdn'), ARCHIVE_DIR: tmp.file('archive'), ARCHIVE_SPOOL_DIR: tmp.file('spool'),
      ARCHIVE_RETENTION_SECONDS: '0', ARCHIVE_SWEEP_SECONDS: '1' });
  });
  after(async () => {
    await app?.close();
    tmp?.remove();
  });

  it('archives a broadcast into the folder, serves downloads with Range, refuses bad parameters, and deletes local copies after upload', async () => {
    const stage = await createStage(app, 'Local');
    const auth = { authorization: `Bearer ${TEST_ADMIN_TOKEN}`, 'content-type': 'application/json' };
    expect((await fetch(`${app.url}/api/stages/${stage.id}/start`, { method: 'POST', headers: auth, body: '{}' })).status).to.equal(200);
    const live = await recordings(app.url, stage.id);
    expect(live).to.have.length(1);
    expect(live[0]!.status).to.equal('recording');
    await new Promise((r) => setTimeout(r, 5_000));
    expect((await fetch(`${app.url}/api/stages/${stage.id}/stop`, { method: 'POST', headers: auth, body: '{}' })).status).to.equal(200);
    const { rec } = await waitArchived(app.url, stage.id, 30_000);
    expect(rec.durationSeconds).to.be.within(4, 7);
    expect(rec.files.map((f) => f.file).sort()).to.deep.equal(['audio', 'chapters', 'manifest', 'playlist', 'timeline']);
    expect(app.archiver.store.kind).to.equal('local');
    // (Not compared with the live folder: with a retention of 0 the sweep may already be deleting it.)
    const manifest = await verifyArchive(app.archiver.store, rec);
    expect(manifest.objects.filter((o) => o.kind === 'segment').length).to.equal(rec.segments.count);

    const audio = rec.files.find((f) => f.file === 'audio')!;
    const stored = fs.readFileSync(app.archiver.store.localPath(audio.key)!);
    const url = `${app.url}${audio.url}`;
    const whole = await fetch(url);
    expect(whole.status).to.equal(200);
    expect(whole.headers.get('accept-ranges')).to.equal('bytes');
    expect(whole.headers.get('content-type')).to.match(/^audio\/mp4/);
    expect(whole.headers.get('content-disposition')).to.match(/^attachment; filename="?[A-Za-z0-9_-]+-\d{4}-\d\d-\d\dT[\d-]+Z-audio\.m4a"?$/);
    expect(Buffer.from(await whole.arrayBuffer()).equals(stored)).to.equal(true);
    const part = await fetch(url, { headers: { range: 'bytes=100-199' } });
    expect(part.status).to.equal(206);
    expect(part.headers.get('content-range')).to.equal(`bytes 100-199/${stored.length}`);
    expect(Buffer.from(await part.arrayBuffer()).equals(stored.subarray(100, 200))).to.equal(true);
    const tail = await fetch(url, { headers: { range: 'bytes=-50' } });
    expect(tail.status).to.equal(206);
    expect(Buffer.from(await tail.arrayBuffer()).equals(stored.subarray(stored.length - 50))).to.equal(true);
    const beyond = await fetch(url, { headers: { range: `bytes=${stored.length + 10}-` } });
    expect(beyond.status).to.equal(416);
    expect(beyond.headers.get('content-range')).to.equal(`bytes */${stored.length}`);
    const manifestRes = await fetch(`${app.url}/api/recordings/${rec.id}/download?file=manifest`);
    expect(manifestRes.status).to.equal(200);
    expect(((await manifestRes.json()) as { broadcastId: string }).broadcastId).to.equal(rec.id);
    const single = await fetch(`${app.url}/api/recordings/${rec.id}`);
    expect(((await single.json()) as { id: string; status: string })).to.include({ id: rec.id, status: 'archived' });

    // Bad parameters: a clear 400; unknown things: 404.
    const bad: [string, number][] = [
      [`/api/recordings/${rec.id}/download`, 400],
      [`/api/recordings/${rec.id}/download?file=everything`, 400],
      [`/api/recordings/${rec.id}/download?file=audio&x=1`, 400],
      [`/api/recordings/${rec.id}/download?file=track:../../etc`, 400],
      [`/api/recordings/${rec.id}/download?file=audio&file=manifest`, 400],
      [`/api/recordings/not-a-uuid/download?file=audio`, 400],
      [`/api/recordings/not-a-uuid`, 400],
      [`/api/stages/bad id!/recordings`, 400],
      [`/api/recordings/00000000-0000-4000-8000-000000000000/download?file=audio`, 404],
      [`/api/recordings/00000000-0000-4000-8000-000000000000`, 404],
      [`/api/recordings/${rec.id}/download?file=track:nobody`, 404],
      [`/api/stages/nosuchstage/recordings`, 404],
    ];
    for (const [p, status] of bad) {
      const res = await fetch(`${app.url}${p}`);
      expect(res.status, p).to.equal(status);
      const body = (await res.json()) as { ok: boolean; error: { code: string; message: string } };
      expect(body.ok, p).to.equal(false);
      expect(body.error.message, p).to.be.a('string').and.not.equal('');
    }

    // Retention 0: once archived, the local copies (live segments and spool files) go; the store keeps its copies.
    const hlsDir = app.stages.links.hlsDir(stage.id);
    const left = await eventually(async () => fs.readdirSync(hlsDir).filter((f) => f.endsWith('.ts')).length, (n) => n === 0, 10_000, 200);
    expect(left, 'local segments deleted after upload').to.equal(0);
    expect(fs.existsSync(path.join(tmp.file('spool'), rec.id, 'audio.m4a')), 'spooled audio deleted after upload').to.equal(false);
    await verifyArchive(app.archiver.store, rec);
  });
});
