// The archive on the embedded defaults (PGlite, the local-folder store): downloads stream with Range support, the
// REST API refuses bad parameters, and local copies are deleted only after upload, per the retention. A broadcast
// whose mix FFmpeg was killed once is archived as two runs, each behind its own init section, on the programme clock.
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import type { App } from '../../services/app.ts';
import { createStage, startTestApp, TEST_ADMIN_TOKEN, transition } from '../support/app.ts';
import { download, recordings, verifyArchive, waitArchived } from '../support/archive.ts';
import { decodeToPcm, envelopeLag, median, rmsDb, SAMPLE_RATE, toneDb, toneEnds } from '../support/audio.ts';
import { eventually } from '../support/browser.ts';
import { TempDir } from '../support/media.ts';
import { encodeTone, PacketPerformer } from '../support/packets.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

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

    // Retention 0: once archived, the local copies (live segments with their LL-HLS parts, init sections and spool
    // files) go; the store keeps its copies.
    const hlsDir = app.stages.links.hlsDir(stage.id);
    const archived = (f: string) => /^(seg_\d+\.m4s|part_\d+_\d+\.m4s|init_\d+\.mp4)$/.test(f);
    const left = await eventually(async () => fs.readdirSync(hlsDir).filter(archived), (n) => n.length === 0, 10_000, 200);
    expect(left, 'local segments, parts and init sections deleted after upload').to.deep.equal([]);
    expect(fs.existsSync(path.join(tmp.file('spool'), rec.id, 'audio.m4a')), 'spooled audio deleted after upload').to.equal(false);
    await verifyArchive(app.archiver.store, rec);
  });

  it('a mix FFmpeg killed once: two runs, each behind its init section, a DISCONTINUITY and a new EXT-X-MAP in the VOD playlist, the .m4a on the programme clock with the gap as silence', async () => {
    const stage = await createStage(app, 'Crash-restart');
    await transition(app, stage.id, 'start');
    const live = app.registry.get(stage.id)!;
    const mixer = live.broadcast!.mixer;
    // A performer of 660 Hz bursts (0.3 s in every second, as Opus frames the test sends): burst ends mark the clock.
    const [on, off] = await Promise.all([encodeTone(660, 0.3), encodeTone(660, 0.7, -100)]);
    const sender = await PacketPerformer.start(live.router, [...on, ...off]);
    let killedAt = 0;
    try {
      await mixer.attach('synth', sender.producer, 'Synth');
      await sleep(6_000);
      const restarted = once(mixer.ffmpeg, 'started');
      killedAt = mixer.programmeSeconds();
      process.kill(mixer.ffmpeg.pid!, 'SIGKILL');
      await restarted;
      await eventually(async () => mixer.runs.length, (n) => n === 2, 10_000, 20);
      await sleep(6_000);
      await transition(app, stage.id, 'stop');
    } finally {
      sender.stop();
    }
    const { rec } = await waitArchived(app.url, stage.id, 30_000);
    const manifest = await verifyArchive(app.archiver.store, rec);
    const store = app.archiver.store;

    // Two runs, as the mixer had them: run 1 starts where it started on the programme clock, behind init_1.mp4.
    expect(manifest.runs.map((r) => r.index)).to.deep.equal([0, 1]);
    expect(manifest.runs[1]!.startSeconds).to.be.closeTo(mixer.runs[1]!.startSeconds, 1e-6);
    const inits = manifest.objects.filter((o) => o.kind === 'init');
    expect(inits.map((o) => path.posix.basename(o.key))).to.deep.equal(['init_0.mp4', 'init_1.mp4']);
    expect(inits.map((o) => o.contentType)).to.deep.equal(['audio/mp4', 'audio/mp4']);
    const segments = manifest.objects.filter((o) => o.kind === 'segment').sort((a, b) => a.seq! - b.seq!);
    const firstOfRun1 = segments.findIndex((o) => o.mediaStart !== null && o.mediaStart >= manifest.runs[1]!.startSeconds - 1e-6);
    expect(firstOfRun1, 'run 1 has segments').to.be.above(0);
    const run0 = segments.slice(0, firstOfRun1);
    const run0End = run0.at(-1)!.mediaStart! + run0.at(-1)!.durationSeconds!;
    const run1Start = manifest.runs[1]!.startSeconds;
    const gap = run1Start - run0End;

    // The VOD playlist: init_0 first, then a DISCONTINUITY and init_1 before run 1's first segment.
    const vod = (await store.getBuffer(rec.files.find((f) => f.file === 'playlist')!.key)).toString();
    const tags = vod.split('\n').filter((l) => /^#EXT-X-(MAP|DISCONTINUITY)/.test(l) || /^seg_\d+\.m4s$/.test(l));
    const firstSeg1 = path.posix.basename(segments[firstOfRun1]!.key);
    expect(tags[0]).to.equal('#EXT-X-MAP:URI="init_0.mp4"');
    expect(tags.slice(tags.indexOf(firstSeg1) - 2, tags.indexOf(firstSeg1) + 1)).to.deep.equal(['#EXT-X-DISCONTINUITY', '#EXT-X-MAP:URI="init_1.mp4"', firstSeg1]);
    expect(vod.match(/^#EXT-X-(MAP|DISCONTINUITY).*$/gm)).to.have.length(3);
    // It plays: FFmpeg's HLS demuxer reads both runs through it from the store's folder.
    const vodPcm = decodeToPcm(store.localPath(rec.files.find((f) => f.file === 'playlist')!.key)!);
    const segSeconds = segments.reduce((t, o) => t + o.durationSeconds!, 0);
    expect(vodPcm.length / SAMPLE_RATE, 'the VOD playlist decodes whole').to.be.closeTo(segSeconds, 0.2);

    // The .m4a on the programme clock: run 1 where it started, the gap between the runs silent, and every burst where
    // the performer's own track (gapless across the crash: the relays held what FFmpeg could not take) has it.
    const m4a = tmp.file('crash-restart.m4a');
    await download(app.url, rec, 'audio', m4a);
    const mix = decodeToPcm(m4a);
    const trackFile = tmp.file('crash-restart.opus');
    await download(app.url, rec, 'track:synth', trackFile);
    const track = decodeToPcm(trackFile);
    const at = (t: number) => Math.round(t * SAMPLE_RATE);
    const mixSeconds = mix.length / SAMPLE_RATE;
    const run1Seconds = segments.slice(firstOfRun1).reduce((t, o) => t + o.durationSeconds!, 0);
    const ends = toneEnds(track, 660);
    const offsets = ends.map((e) => ({ e, lag: envelopeLag(track, mix, 660, e, 0.25, { before: 0.2, after: 0.1 }) }));
    // Bursts that end near the crash may be cut by it: the others, before and after it.
    const clear = offsets.filter(({ e }) => e < run0End - 0.4 || e > run1Start + 0.4);
    const after = clear.filter(({ e }) => e > run1Start);
    const worst = Math.max(...clear.map(({ lag }) => Math.abs(lag)));
    const figures = { killedAt: killedAt.toFixed(3), run0End: run0End.toFixed(3), run1Start: run1Start.toFixed(3), gapMs: Math.round(gap * 1000),
      mixSeconds: mixSeconds.toFixed(3), programmeEnd: (run1Start + run1Seconds).toFixed(3), bursts: clear.length, afterCrash: after.length,
      medianOffsetMs: { run0: (median(clear.filter(({ e }) => e < run0End).map(({ lag }) => lag)) * 1000).toFixed(1),
        run1: (median(after.map(({ lag }) => lag)) * 1000).toFixed(1) }, worstOffsetMs: (worst * 1000).toFixed(1),
      gapDb: gap > 0.06 ? rmsDb(mix, at(run0End + 0.02), at(gap - 0.04)).toFixed(1) : null };
    console.log(`      crash-restart figures: ${JSON.stringify(figures)}`);
    expect(gap, 'run 1 starts after run 0 ended').to.be.at.least(0);
    expect(mixSeconds, 'the .m4a ends where run 1 ends on the programme clock').to.be.closeTo(run1Start + run1Seconds, 0.1);
    expect(toneDb(mix, 660, at(1), at(4)), 'run 0 is in the .m4a').to.be.above(-40);
    expect(toneDb(mix, 660, at(run1Start + 1), at(3)), 'run 1 is in the .m4a').to.be.above(-40);
    if (gap > 0.06) expect(rmsDb(mix, at(run0End + 0.02), at(gap - 0.04)), 'the gap is silence').to.be.below(-60);
    expect(after.length, 'bursts after the crash matched').to.be.at.least(3);
    expect(clear.length, 'bursts matched').to.be.at.least(8);
    expect(worst, 'every burst of the .m4a where the track has it (both runs)').to.be.below(0.05);
  });
});
