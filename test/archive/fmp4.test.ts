// The archive of fMP4 segments without a stage: real FFmpeg fragmented MP4 cut by the live writer into init sections
// and segments, two FFmpeg runs (a crash-restart: run 1 starts at 7 s on the programme clock, 2 s after run 0 ended),
// the real sink, write-behind, PGlite, local store and finalization. Three broadcasts share the folder: one whose sink
// saw everything, one whose sink missed the tail of run 1, one whose sink missed run 1 entirely (its init section
// too), as a crash leaves them; finalization finds the strays on disk, and all three archives come out the same.
import fs from 'node:fs';
import crypto from 'node:crypto';
import path from 'node:path';
import { expect } from 'chai';
import { initTiming, segmentTiming } from '../../pipelines/archive/fmp4.ts';
import { buildVodPlaylist } from '../../pipelines/archive/vod.ts';
import { runFfmpeg } from '../../pipelines/ffmpeg/index.ts';
import { LiveHlsWriter, type ListedSegment } from '../../pipelines/hls/liveWriter.ts';
import type { MixerRun } from '../../pipelines/mixer/mixer.ts';
import { Archiver, keyPrefix, type Manifest } from '../../services/archive/archiver.ts';
import { ArchiveSegmentSink } from '../../services/archive/sink.ts';
import { openStore, type ObjectStore } from '../../services/archive/store.ts';
import { ArchiveRepo, type ArchiveObject } from '../../services/db/archive.ts';
import { BroadcastRepo } from '../../services/db/broadcasts.ts';
import type { Db } from '../../services/db/db.ts';
import { openDb } from '../../services/db/index.ts';
import { StageRepo } from '../../services/db/repositories.ts';
import { WriteBehind } from '../../services/db/writeBehind.ts';
import { WRITE_EXECUTORS } from '../../services/db/writes.ts';
import { createLogger } from '../../services/logger.ts';
import { verifyArchive } from '../support/archive.ts';
import { decodeToPcm, rmsDb, SAMPLE_RATE, toneOnsets } from '../support/audio.ts';
import { eventually } from '../support/browser.ts';
import { TempDir } from '../support/media.ts';

const log = createLogger(process.env['TEST_LOG_LEVEL'] ?? 'error', { silent: !process.env['TEST_LOG_LEVEL'] });
/** Run 1 starts here on the programme clock; run 0 lasts RUN_SECONDS. */
const RUN1_START = 7;
const RUN_SECONDS = 5;
/** Parts of 9 AAC frames (0.192 s), as the mixer makes them for 0.2 s. */
const FRAG_MICROS = Math.round((8.5 * 1024 * 1e6) / 48000);

/** A run's fragmented MP4 as the mixer's FFmpeg writes it: bursts of one tone, 0.3 s at 0.5 s into every second. */
async function fmp4Run(file: string, freq: number): Promise<Buffer> {
  await runFfmpeg({
    args: ['-v', 'error', '-nostdin', '-y', '-f', 'lavfi', '-i', `aevalsrc='if(between(mod(t,1),0.5,0.8),0.5*sin(2*PI*${freq}*t),0)':s=48000:d=${RUN_SECONDS}`,
      '-c:a', 'aac', '-b:a', '128k', '-ar', '48000', '-ac', '2', '-f', 'mp4', '-movflags', 'cmaf+empty_moov+default_base_moof',
      '-frag_duration', String(FRAG_MICROS), file],
  });
  return fs.readFileSync(file);
}

describe('archive: fMP4 segments and init sections, finalized from what the sink saw and what is on disk', function () {
  this.timeout(60_000);
  let tmp: TempDir;
  let db: Db;
  let writes: WriteBehind<typeof WRITE_EXECUTORS>;
  let store: ObjectStore;
  let archiver: Archiver;
  const listed: ListedSegment[] = [];
  const ids = { whole: crypto.randomUUID(), tail: crypto.randomUUID(), run: crypto.randomUUID() };
  const stageId = 'fmp4-stage';
  let hlsDir: string;
  let originMs: number;

  before(async () => {
    tmp = new TempDir();
    hlsDir = tmp.file('live');
    fs.mkdirSync(hlsDir, { recursive: true });
    db = await openDb({ kind: 'pglite', dataDir: null }, log);
    writes = new WriteBehind({ db, log, executors: WRITE_EXECUTORS });
    store = openStore({ kind: 'local', dir: tmp.file('archive') }, log);
    archiver = new Archiver({ db, store, writes, log, spoolDir: tmp.file('spool'), aacBitrateKbps: 128,
      queue: { concurrency: 4, retryBaseSeconds: 1, retryMaxSeconds: 2, maxAttempts: 5, retentionSeconds: 3600, sweepSchedule: '*/1 * * * * *' } });
    await new StageRepo(db).create({ id: stageId, title: 'fMP4', performerKeyHash: 'x' });
    originMs = Math.floor(Date.now() / 1000) * 1000;
    const broadcasts = new BroadcastRepo(db);
    const runs: MixerRun[] = [{ index: 0, startSeconds: 0, startedAtMs: originMs }, { index: 1, startSeconds: RUN1_START, startedAtMs: originMs + RUN1_START * 1000 }];
    const writer = new LiveHlsWriter({ dir: hlsDir, playlistName: 'index.m3u8', segmentSeconds: 1, partSeconds: 0.192, lowLatency: true, listSize: 10,
      originWallMs: () => originMs, runStartSeconds: (run) => runs[run]?.startSeconds ?? null, log });
    writer.observer.on('segmentListed', (s) => listed.push(s));
    const sinks: ArchiveSegmentSink[] = [];
    for (const id of Object.values(ids)) {
      // Three broadcasts of one stage in turn (the database allows one open broadcast per stage), recording the same folder.
      await broadcasts.start({ id, stageId });
      await archiver.repo.beginRecording(id, { hlsDir, spoolDir: path.join(tmp.file('spool'), id), keyPrefix: keyPrefix(stageId, id), originAt: new Date(originMs) });
      sinks.push(new ArchiveSegmentSink({ broadcastId: id, hlsDir, keyPrefix: keyPrefix(stageId, id), runs: () => runs, writes, onQueued: () => undefined,
        source: writer.observer, log }));
      await broadcasts.end(id, 'stopped', 'complete');
    }
    const [run0, run1] = [await fmp4Run(tmp.file('run0.mp4'), 440), await fmp4Run(tmp.file('run1.mp4'), 660)];
    for (const [i, bytes] of [run0, run1].entries()) {
      const stream = writer.runStream(i);
      await new Promise<void>((resolve, reject) => stream.end(bytes, (err?: Error | null) => (err ? reject(err) : resolve())));
      // Until the run's last segment is listed; then a pause, as a restarted FFmpeg takes (the files' times tell runs apart).
      await eventually(async () => listed.filter((s) => s.run === i).at(-1)?.endMs ?? 0, (end) => end >= originMs + ((i === 0 ? 0 : RUN1_START) + RUN_SECONDS - 0.1) * 1000, 10_000, 20);
      await new Promise((r) => setTimeout(r, 50));
    }
    await writer.end();
    for (const sink of sinks) await sink.close();
    expect(await writes.flush(10_000), 'every row written').to.equal(true);
    // What a crash takes away: the rows the sink had not written yet.
    const tailFrom = listed.filter((s) => s.run === 1)[2]!.sequence;
    await db.query(`delete from archive_objects where broadcast_id = $1 and kind = 'segment' and seq >= $2`, [ids.tail, tailFrom]);
    await db.query(`delete from archive_objects where broadcast_id = $1 and run = 1`, [ids.run]);
    await archiver.start();
  });

  after(async () => {
    await archiver?.close();
    writes?.close();
    await db?.close();
    tmp?.remove();
  });

  it('the writer made two runs: two init sections, fragments whose timing the archive reads from their moof boxes', () => {
    expect(fs.readdirSync(hlsDir).filter((f) => /^init_\d+\.mp4$/.test(f)).sort()).to.deep.equal(['init_0.mp4', 'init_1.mp4']);
    expect(listed.filter((s) => s.discontinuity)).to.have.length(1);
    for (const s of listed) {
      const init = initTiming(fs.readFileSync(path.join(hlsDir, s.map)))!;
      expect(init.timescale).to.equal(48000);
      const t = segmentTiming(fs.readFileSync(path.join(hlsDir, s.uri)), init)!;
      expect(t.duration, s.uri).to.be.closeTo(s.duration, 1e-9);
    }
  });

  for (const [name, what] of [['whole', 'saw everything'], ['tail', 'missed the tail of run 1'], ['run', 'missed run 1 and its init section']] as const) {
    it(`the sink ${what}: every init section and segment archived, on the programme clock, the VOD playlist with an EXT-X-MAP per run, the .m4a with the gap as silence`, async () => {
      const id = ids[name];
      await archiver.finalize(id);
      const rec = await eventually(() => archiver.repo.recording(id), (r) => r?.archiveStatus === 'archived' || r?.archiveStatus === 'failed', 20_000, 50);
      expect(rec, `${rec?.archiveError}`).to.include({ archiveStatus: 'archived' });
      const objects = await archiver.repo.objects(id);
      const prefix = keyPrefix(stageId, id);
      const manifestKey = `${prefix}manifest.json`;
      const manifest: Manifest = await verifyArchive(store, { files: [{ file: 'manifest', key: manifestKey }] }, hlsDir);

      // Init sections: one per run, before the run's first segment on the programme clock.
      const inits = objects.filter((o) => o.kind === 'init');
      expect(inits.map((o) => [o.key, o.seq, o.run, o.contentType, o.mediaStart])).to.deep.equal([
        [`${prefix}hls/init_0.mp4`, 0, 0, 'audio/mp4', 0],
        [`${prefix}hls/init_1.mp4`, 1, 1, 'audio/mp4', RUN1_START],
      ]);
      expect(manifest.runs).to.deep.equal([
        { index: 0, startSeconds: 0, init: `${prefix}hls/init_0.mp4` },
        { index: 1, startSeconds: RUN1_START, init: `${prefix}hls/init_1.mp4` },
      ]);
      expect(manifest.objects.filter((o) => o.kind === 'init').map((o) => o.run)).to.deep.equal([0, 1]);
      expect(manifest.objects.filter((o) => o.kind === 'segment').map((o) => o.run), "each segment's run").to.deep.equal(listed.map((s) => s.run));

      // Segments: as the writer listed them, whether the sink saw them or finalization found them.
      const segments = objects.filter((o) => o.kind === 'segment');
      expect(segments.map((o) => o.seq)).to.deep.equal(listed.map((s) => s.sequence));
      for (const [i, s] of listed.entries()) {
        const o: ArchiveObject = segments[i]!;
        expect(o.key).to.equal(`${prefix}hls/${s.uri}`);
        expect(o.run, s.uri).to.equal(s.run);
        expect(o.contentType).to.equal('audio/mp4');
        expect(o.durationSeconds!, s.uri).to.be.closeTo(s.duration, 1e-9);
        expect(o.mediaStart!, s.uri).to.be.closeTo((Date.parse(s.programDateTime) - originMs) / 1000, 0.0011);
        expect(o.programDateTime, s.uri).to.equal(s.programDateTime);
        expect(o.discontinuity, s.uri).to.equal(s.discontinuity);
      }

      // The VOD playlist: what the writer listed, with an EXT-X-MAP per run and the DISCONTINUITY between them.
      const vod = (await store.getBuffer(`${prefix}hls/index.m3u8`)).toString();
      expect(vod).to.equal(buildVodPlaylist(listed.map((s) => ({ uri: s.uri, duration: s.duration, programDateTime: s.programDateTime, map: s.map }))));
      expect(vod.match(/^#EXT-X-MAP:URI="init_\d\.mp4"$/gm)).to.deep.equal(['#EXT-X-MAP:URI="init_0.mp4"', '#EXT-X-MAP:URI="init_1.mp4"']);
      expect(vod).to.match(/^#EXT-X-VERSION:7$/m).and.match(/#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI="init_1\.mp4"\n#EXT-X-PROGRAM-DATE-TIME:/);
      expect(vod.match(/^seg_\d+\.m4s$/gm)).to.have.length(listed.length);

      // The .m4a on the programme clock: run 0's bursts, 2 s of silence, run 1's bursts from 7 s on.
      const m4a = tmp.file(`${name}.m4a`);
      fs.writeFileSync(m4a, await store.getBuffer(`${prefix}audio.m4a`));
      const pcm = decodeToPcm(m4a);
      const seconds = pcm.length / SAMPLE_RATE;
      const on440 = toneOnsets(pcm, 440);
      const on660 = toneOnsets(pcm, 660);
      const expected440 = [0.5, 1.5, 2.5, 3.5, 4.5];
      const expected660 = expected440.map((t) => t + RUN1_START);
      console.log(`      ${name}: ${seconds.toFixed(3)} s; 440 Hz onsets ${on440.map((t) => t.toFixed(3)).join(' ')}; 660 Hz onsets ${on660.map((t) => t.toFixed(3)).join(' ')}`);
      expect(seconds).to.be.closeTo(RUN1_START + RUN_SECONDS, 0.1);
      expect(on440).to.have.length(expected440.length);
      expect(on660).to.have.length(expected660.length);
      // (Each run's first frame is the encoder's priming: both runs' bursts come 21 ms late, alike.)
      on440.forEach((t, i) => expect(t, `440 Hz burst ${i}`).to.be.closeTo(expected440[i]! + 0.021, 0.01));
      // Run 1 where it started on the programme clock, within half an AAC frame (the silence is whole frames).
      on660.forEach((t, i) => expect(t - on440[i]!, `660 Hz burst ${i}, from the 440 Hz one`).to.be.closeTo(expected660[i]! - expected440[i]!, 0.012));
      expect(rmsDb(pcm, Math.round(5.2 * SAMPLE_RATE), Math.round(1.6 * SAMPLE_RATE)), 'the gap is silence').to.be.below(-80);
    });
  }
});
