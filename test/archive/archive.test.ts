// The archive end to end, against a real S3-protocol server (s3rver) and a real PostgreSQL: browser performers on air,
// every object uploaded and checked by sha256, the audio file and each performer's track listened to.
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { expect } from 'chai';
import { openStore, type ObjectStore } from '../../services/archive/store.ts';
import type { App } from '../../services/app.ts';
import { createLogger } from '../../services/logger.ts';
import { createStage, startTestApp, transition } from '../support/app.ts';
import { download, verifyArchive, waitArchived } from '../support/archive.ts';
import { decodeToPcm, envelopeLag, median, rmsDb, SAMPLE_RATE, toneDb, toneEnds } from '../support/audio.ts';
import { BrowserSet } from '../support/browser.ts';
import { PlaylistWatcher } from '../support/hls.ts';
import { pulseWav, TempDir } from '../support/media.ts';
import { startPostgres, type PostgresServer } from '../support/postgres.ts';
import { startS3, type S3Server } from '../support/s3.ts';

const BROADCAST_SECONDS = Number(process.env['ARCHIVE_TEST_SECONDS'] ?? 60);
const OUTAGE_SECONDS = Number(process.env['ARCHIVE_OUTAGE_SECONDS'] ?? 60);
/** A track is aligned with the mix when each of its bursts is within this of the mix's. */
const ALIGNED_S = 0.05;
/** How far the measure looks for a burst in the mix: well beyond ALIGNED_S, so that a misplaced burst fails. */
const LAG_RANGE_S = 0.25;


const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const probeSeconds = (file: string) => parseFloat(execFileSync('ffprobe', ['-v', 'error', '-show_entries', 'format=duration', '-of', 'csv=p=0', file]).toString());

describe('archive: S3 (s3rver) + PostgreSQL', function () {
  this.timeout(BROADCAST_SECONDS * 1000 + OUTAGE_SECONDS * 1000 + 180_000);
  let tmp: TempDir;
  let pg: PostgresServer;
  let s3: S3Server;
  let app: App;
  let store: ObjectStore;
  let browsers: BrowserSet;

  before(async () => {
    tmp = new TempDir();
    browsers = new BrowserSet(tmp);
    [pg, s3] = await Promise.all([startPostgres(), startS3()]);
    app = await startTestApp({ CDN_DIR: tmp.file('cdn'), DATABASE_URL: pg.url, ...s3.env() });
    store = openStore(s3.config(), createLogger('error'));
  });
  after(async () => {
    await browsers?.close();
    await app?.close();
    store?.close();
    await s3?.stop();
    await pg?.stop();
    tmp?.remove();
  });

  it(`a ${BROADCAST_SECONDS} s broadcast with two performers ends archived: every object in the bucket with its sha256; the .m4a and each aligned track listened to`, async () => {
    const stage = await createStage(app, 'Archive duet');
    // Tone bursts: their onsets are markers to align the tracks with the mix.
    const annMic = pulseWav(tmp, 440, { periodSec: 1.0, onSec: 0.4 });
    const bobMic = pulseWav(tmp, 660, { periodSec: 1.3, onSec: 0.5 });
    await browsers.performer(stage.performerUrl, 440, 'Ann', annMic);
    await transition(app, stage.id, 'start');
    const startedAt = performance.now();
    // Bob joins 10 s into the broadcast: his track must start with 10 s of silence.
    await sleep(10_000);
    await browsers.performer(stage.performerUrl, 660, 'Bob', bobMic);
    await sleep(Math.max(0, BROADCAST_SECONDS * 1000 - (performance.now() - startedAt)));
    const stopAt = performance.now();
    await transition(app, stage.id, 'stop');
    const { rec } = await waitArchived(app.url, stage.id, 60_000);
    const stopToArchivedMs = performance.now() - stopAt;

    const hlsDir = app.stages.links.hlsDir(stage.id);
    const manifest = await verifyArchive(store, rec, hlsDir);
    const kinds = manifest.objects.map((o) => o.kind);
    const segments = kinds.filter((k) => k === 'segment').length;
    expect(kinds.filter((k) => k === 'track'), 'one track per performer').to.have.length(2);
    expect(kinds).to.include.members(['playlist', 'audio']);
    expect(manifest.performers.map((p) => p.displayName).sort()).to.deep.equal(['Ann', 'Bob']);

    // The VOD playlist: every fMP4 segment behind its run's init section (EXT-X-MAP), PROGRAM-DATE-TIME kept, ENDLIST.
    const vod = (await store.getBuffer(rec.files.find((f) => f.file === 'playlist')!.key)).toString();
    expect(vod).to.match(/^#EXT-X-PLAYLIST-TYPE:VOD$/m).and.match(/^#EXT-X-VERSION:7$/m).and.match(/#EXT-X-ENDLIST\s*$/);
    expect(vod.match(/^seg_\d+\.m4s$/gm)).to.have.length(segments);
    expect(vod.match(/^#EXT-X-PROGRAM-DATE-TIME:/gm)).to.have.length(segments);
    expect(vod.match(/^#EXT-X-MAP:.*$/gm), 'one EXT-X-MAP per FFmpeg run').to.deep.equal(manifest.runs.map((r) => `#EXT-X-MAP:URI="init_${r.index}.mp4"`));
    expect(vod.indexOf('#EXT-X-MAP:'), 'the init section before the first segment').to.be.below(vod.search(/^seg_/m));
    expect(kinds.filter((k) => k === 'init'), 'one init section per run').to.have.length(manifest.runs.length);

    // The audio file, downloaded through a presigned link with a plain HTTP client.
    const m4a = tmp.file('audio.m4a');
    const dl = await download(app.url, rec, 'audio', m4a);
    expect(dl.redirected, 'S3 downloads redirect to a presigned URL').to.equal(true);
    expect(dl.location).to.match(/^http:\/\/127\.0\.0\.1:\d+\/.*X-Amz-Signature=/);
    const m4aSeconds = probeSeconds(m4a);
    expect(m4aSeconds).to.be.within(BROADCAST_SECONDS - 1, BROADCAST_SECONDS + 1);
    const codec = execFileSync('ffprobe', ['-v', 'error', '-show_entries', 'stream=codec_name', '-of', 'csv=p=0', m4a]).toString().trim();
    expect(codec).to.equal('aac');
    const mix = decodeToPcm(m4a);
    const mixAnn = toneDb(mix, 440, 0, mix.length);
    const mixBob = toneDb(mix, 660, 15 * SAMPLE_RATE, mix.length - 15 * SAMPLE_RATE);
    expect(mixAnn, 'Ann is in the mix').to.be.above(-35);
    expect(mixBob, 'Bob is in the mix').to.be.above(-35);

    // Each performer's track: only their tone, on the mix's timeline.
    const figures: Record<string, unknown> = { segments, m4aSeconds: m4aSeconds.toFixed(2), stopToArchivedMs: Math.round(stopToArchivedMs) };
    for (const [name, own, other] of [['Ann', 440, 660], ['Bob', 660, 440]] as const) {
      const pid = manifest.performers.find((p) => p.displayName === name)!.performerId;
      const file = tmp.file(`track-${name}.opus`);
      await download(app.url, rec, `track:${pid}`, file);
      const trackSeconds = probeSeconds(file);
      expect(trackSeconds, `${name}'s track spans the broadcast`).to.be.within(m4aSeconds - 0.5, m4aSeconds + 0.5);
      const pcm = decodeToPcm(file);
      const ownDb = toneDb(pcm, own, 15 * SAMPLE_RATE, pcm.length - 15 * SAMPLE_RATE);
      const otherDb = toneDb(pcm, other, 15 * SAMPLE_RATE, pcm.length - 15 * SAMPLE_RATE);
      expect(ownDb, `${name}'s tone in ${name}'s track`).to.be.above(-35);
      expect(otherDb, `the other performer's tone is not in ${name}'s track`).to.be.below(ownDb - 40);
      if (name === 'Bob') expect(rmsDb(pcm, 0, 8 * SAMPLE_RATE), "Bob's track is silent before he joined").to.be.below(-70);
      // At each burst's end in the track (clean: one performer), the shift of the same tone's burst in the mix
      // (envelopeLag: on/off envelopes, so the levelling compressor ducking one performer under the other does not
      // matter). Ends, not onsets: the first burst after a join begins with the performer's stream, and the mix shows
      // that onset early with the track in place (an Opus decoder's quiet start lifted by the compressor: up to 36 ms
      // early, and -150 to +125 ms off when levels were correlated; see envelopeLag).
      const offsets = toneEnds(pcm, own).map((e) => envelopeLag(pcm, mix, own, e, LAG_RANGE_S, { before: 0.2, after: 0.1 }));
      const firstOffset = offsets[0] ?? NaN;
      const worst = Math.max(...offsets.slice(1).map(Math.abs));
      figures[name] = { trackSeconds: trackSeconds.toFixed(2), ownDb: ownDb.toFixed(1), otherDb: otherDb.toFixed(1), bursts: offsets.length,
        medianOffsetMs: (median(offsets) * 1000).toFixed(1), firstOffsetMs: (firstOffset * 1000).toFixed(1), worstOffsetMs: (worst * 1000).toFixed(1) };
      console.log(`      ${name}: ${JSON.stringify(figures[name])} ${Math.max(worst, Math.abs(firstOffset)) > 0.02 ? `offsets ms: ${offsets.map((o) => Math.round(o * 1000)).join(',')}` : ''}`);
      // One burst per period after the performer joined (Bob: from 10 s), all but the edges matched (the last burst
      // may still be on when the broadcast stops: it has no end).
      const expectedBursts = (BROADCAST_SECONDS - (name === 'Bob' ? 10 : 0)) / (name === 'Ann' ? 1.0 : 1.3);
      expect(offsets.length, `${name}: bursts matched between mix and track`).to.be.above(expectedBursts * 0.8 - 1);
      expect(Math.abs(median(offsets)), `${name}'s track is aligned with the mix (median)`).to.be.below(ALIGNED_S);
      expect(Math.abs(firstOffset), `${name}'s track is aligned with the mix (the first burst after joining)`).to.be.below(ALIGNED_S);
      expect(worst, `${name}'s track is aligned with the mix (every later burst)`).to.be.below(ALIGNED_S);
    }
    console.log(`      archive figures: ${JSON.stringify(figures)}`);
  });

  it(`S3 down for ${OUTAGE_SECONDS} s mid-broadcast: live HLS never notices, and the archive completes with no object missing`, async () => {
    const stage = await createStage(app, 'Outage');
    await transition(app, stage.id, 'start');
    const watcher = new PlaylistWatcher(path.join(app.stages.links.hlsDir(stage.id), 'index.m3u8'));
    try {
      await sleep(8_000);
      const retriesBefore = app.archiver.queue.counters.retries;
      await s3.pause();
      const pausedAt = performance.now();
      await sleep(OUTAGE_SECONDS * 1000);
      const queuedDuringOutage = (await app.archiver.queue.stats()).pending;
      await s3.resume();
      const resumedAt = performance.now();
      await sleep(8_000);
      // Still on air, and the live playlist went on, before the stop: a failure below is the archive's, not the mix's.
      const view = (await (await fetch(`${app.url}/api/stages/${stage.id}`)).json()) as { status?: string };
      expect(view.status, 'the stage is still on air before the stop').to.equal('live');
      expect(watcher.gapsMs().length, 'the live playlist listed segments through the outage').to.be.above(OUTAGE_SECONDS);
      await transition(app, stage.id, 'stop');
      const { rec } = await waitArchived(app.url, stage.id, 60_000);
      const recoveredMs = performance.now() - resumedAt;
      watcher.stop();
      const manifest = await verifyArchive(store, rec, app.stages.links.hlsDir(stage.id));
      const retries = app.archiver.queue.counters.retries - retriesBefore;
      const gaps = watcher.gapsMs();
      console.log(`      outage figures: ${JSON.stringify({ outageSeconds: Math.round((resumedAt - pausedAt) / 1000), queuedDuringOutage, retries,
        segments: manifest.objects.filter((o) => o.kind === 'segment').length, archivedAfterResumeMs: Math.round(recoveredMs), largestSegmentGapMs: Math.max(...gaps) })}`);
      expect(retries, 'uploads failed and were retried during the outage').to.be.above(0);
      expect(queuedDuringOutage, 'segments waited in the queue during the outage').to.be.above(OUTAGE_SECONDS / 2);
      expect(Math.max(...gaps), 'the live playlist kept its cadence through the outage').to.be.below(1500);
    } finally {
      watcher.stop();
    }
  });
});
