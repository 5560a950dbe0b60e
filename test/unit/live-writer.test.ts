// The live HLS writer (pipelines/hls/liveWriter.ts), fed real FFmpeg fragmented MP4 (the mixer's own muxer options):
// parts and segments on disk, each segment its parts byte for byte, PROGRAM-DATE-TIME from the programme clock,
// DATERANGE tags, a new run after a restart (DISCONTINUITY, a new EXT-X-MAP), ENDLIST; and the DATERANGE helpers.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import { dateRangeTag, rangesForWindow, type DateRange } from '../../pipelines/hls/dateRange.ts';
import { LiveHlsWriter, type ListedSegment, type PublishedPart } from '../../pipelines/hls/liveWriter.ts';
import { parseMediaPlaylist } from '../../pipelines/hls/playlist.ts';
import { mixerOutputOptions } from '../../pipelines/mixer/ffmpegArgs.ts';
import { createLogger } from '../../services/logger.ts';
import { decodeToPcm, toneDb } from '../support/audio.ts';
import { TempDir } from '../support/media.ts';

const range = (id: string, cls: string, startDate: string, attributes: Record<string, string> = {}): DateRange => ({ id, class: cls, startDate, attributes });

/** FFmpeg encoding `seconds` of a tone in real time, with the mixer's encoder and muxer options, into the writer. */
function feed(writer: LiveHlsWriter, run: number, seconds: number, freq: number): Promise<void> {
  const o = mixerOutputOptions({ inputs: 1, partSeconds: 0.2, aacBitrateKbps: 128 });
  const muxer = o.slice(o.indexOf('-c:a'));
  const proc = spawn('ffmpeg', ['-v', 'error', '-re', '-f', 'lavfi', '-i', `sine=frequency=${freq}:sample_rate=48000`, '-t', String(seconds), ...muxer, 'pipe:1'], { stdio: ['ignore', 'pipe', 'inherit'] });
  proc.stdout.pipe(writer.runStream(run));
  return new Promise((resolve) => proc.on('close', () => resolve()));
}

describe('live HLS writer', function () {
  this.timeout(30_000);

  it('writes parts and segments (each its parts byte for byte, each stamped when its last part arrived), PDT on the programme clock, DATERANGE, a new run with DISCONTINUITY and EXT-X-MAP, ENDLIST', async () => {
    const tmp = new TempDir();
    const origin = Date.now();
    const runStarts = [0, 3.5];
    const writer = new LiveHlsWriter({
      dir: tmp.path,
      playlistName: 'index.m3u8',
      segmentSeconds: 1,
      partSeconds: 0.192,
      lowLatency: true,
      listSize: 10,
      originWallMs: () => origin,
      runStartSeconds: (run) => runStarts[run] ?? null,
      log: createLogger('error'),
    });
    const listed: ListedSegment[] = [];
    const parts: PublishedPart[] = [];
    writer.observer.on('segmentListed', (s) => listed.push(s));
    writer.observer.on('partPublished', (p) => parts.push(p));
    try {
      await feed(writer, 0, 2.5, 440);
      writer.setDateRanges([range('c1', 'com.stage-radio.chapter', new Date(origin + 1500).toISOString(), { 'X-TITLE': 'Intro' })]);
      // A restart: the second run starts 3.5 s into the programme (a 1 s gap).
      await feed(writer, 1, 2.5, 660);
      await writer.end();
      const text = fs.readFileSync(writer.playlistPath, 'utf8');
      expect(writer.text).to.equal(text);
      expect(text).to.match(/#EXT-X-ENDLIST\n$/);
      expect(text).to.not.match(/PRELOAD-HINT/);
      expect(text).to.match(/^#EXT-X-DATERANGE:ID="c1",CLASS="com.stage-radio.chapter".*X-TITLE="Intro"$/m);
      const playlist = parseMediaPlaylist(text);
      const maps = [...text.matchAll(/^#EXT-X-MAP:URI="([^"]+)"$/gm)].map((m) => m[1]);
      expect(maps, 'one init section per run').to.deep.equal(['init_0.mp4', 'init_1.mp4']);
      expect(text.match(/^#EXT-X-DISCONTINUITY$/gm), 'one discontinuity: the restart').to.have.length(1);
      // Segments: numbered on, each one its parts' bytes, PDT = origin + programme time.
      const segs = playlist.segments;
      expect(segs.map((s) => s.uri)).to.deep.equal(segs.map((_, i) => `seg_${String(i).padStart(5, '0')}.m4s`));
      const run1 = segs.findIndex((s) => s.discontinuity);
      expect(run1).to.be.greaterThan(0);
      expect(Date.parse(segs[0]!.programDateTime!)).to.equal(origin);
      expect(Date.parse(segs[run1]!.programDateTime!), 'the second run starts where the programme clock was').to.equal(origin + 3500);
      for (const s of listed) {
        const segBytes = fs.readFileSync(path.join(tmp.path, s.uri));
        const mine = parts.filter((p) => p.msn === s.sequence);
        if (mine.length === 0) continue; // the parts of old segments are deleted as they leave the window
        const joined = Buffer.concat(mine.map((p) => fs.readFileSync(path.join(tmp.path, p.uri))));
        expect(segBytes.equals(joined), `${s.uri} is its parts`).to.equal(true);
      }
      // Each segment's last part came out of FFmpeg (here: the feed) after the test began and before it was listed.
      for (const s of listed) expect(s.arrivedAtMs, `${s.uri} arrived`).to.be.within(origin, s.listedAtMs);
      // Within a run, each segment starts where the previous one ended.
      for (let i = 1; i < run1; i++) expect(Date.parse(segs[i]!.programDateTime!)).to.be.closeTo(Date.parse(segs[i - 1]!.programDateTime!) + segs[i - 1]!.duration * 1000, 1);
      // Parts: exactly 0.192 s, each published after its file exists.
      expect(parts.every((p) => fs.existsSync(path.join(tmp.path, p.uri)) || p.msn < listed.at(-1)!.sequence - 9)).to.equal(true);
      // The audio: run 0's tone, then run 1's, each decodable behind its init section.
      const decode = (from: number, to: number) =>
        decodeToPcm(`concat:${[path.join(tmp.path, segs[from]!.map!), ...segs.slice(from, to).map((s) => path.join(tmp.path, s.uri))].join('|')}`);
      const a = decode(0, run1);
      const b = decode(run1, segs.length);
      expect(toneDb(a, 440)).to.be.above(-30);
      expect(toneDb(b, 660)).to.be.above(-30);
      expect(toneDb(b, 440), 'no 440 in the second run').to.be.below(-60);
    } finally {
      tmp.remove();
    }
  });

  it('DATERANGE tags: quoted attributes cannot break out of their quotes', () => {
    const tag = dateRangeTag({ ...range('e1', 'com.stage-radio.chapter', '2026-11-23T10:00:00.500Z', { 'X-TITLE': 'He said "hi"\r\nbye', 'bad key': 'x' }), durationSeconds: 0 });
    expect(tag).to.equal(`#EXT-X-DATERANGE:ID="e1",CLASS="com.stage-radio.chapter",START-DATE="2026-11-23T10:00:00.500Z",DURATION=0.000,X-TITLE="He said 'hi'  bye"`);
  });

  it('a window carries the ranges inside it plus the current one of each class', () => {
    const ranges = [
      range('c1', 'chapter', '2026-11-23T09:00:00.000Z'),
      range('c2', 'chapter', '2026-11-23T09:30:00.000Z'),
      range('t1', 'track', '2026-11-23T09:40:00.000Z'),
      range('m1', 'marker', '2026-11-23T09:50:00.000Z'),
      range('c3', 'chapter', '2026-11-23T10:00:00.500Z'),
    ];
    expect(rangesForWindow(ranges, Date.parse('2026-11-23T10:00:00.000Z')).map((r) => r.id)).to.deep.equal(['c2', 't1', 'm1', 'c3']);
    expect(rangesForWindow(ranges, null)).to.have.length(5);
  });
});
