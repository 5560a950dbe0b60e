// The live playlist publisher's pure parts: DATERANGE tags, which ranges a window carries, where they go.
import fs from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import { dateRangeTag, PlaylistPublisher, rangesForWindow, withDateRanges, type DateRange } from '../../pipelines/hls/publisher.ts';
import { parseMediaPlaylist } from '../../pipelines/hls/playlist.ts';
import { createLogger } from '../../services/logger.ts';
import { TempDir } from '../support/media.ts';

const FFMPEG_PLAYLIST = `#EXTM3U
#EXT-X-VERSION:3
#EXT-X-TARGETDURATION:1
#EXT-X-MEDIA-SEQUENCE:0
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-PROGRAM-DATE-TIME:2026-11-23T10:00:00.000+0000
#EXTINF:1.000000,
seg_00000.ts
#EXT-X-PROGRAM-DATE-TIME:2026-11-23T10:00:01.000+0000
#EXTINF:1.000000,
seg_00001.ts
`;

const range = (id: string, cls: string, startDate: string, attributes: Record<string, string> = {}): DateRange => ({ id, class: cls, startDate, attributes });

describe('playlist publisher', () => {
  it('writes a DATERANGE tag with quoted attributes that cannot break out of their quotes', () => {
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
    const ids = rangesForWindow(ranges, Date.parse('2026-11-23T10:00:00.000Z')).map((r) => r.id);
    expect(ids).to.deep.equal(['c2', 't1', 'm1', 'c3']);
    expect(rangesForWindow(ranges, null)).to.have.length(5);
  });

  it('puts the tags after the header, before the first segment, and the playlist still parses', () => {
    const out = withDateRanges(FFMPEG_PLAYLIST, ['#EXT-X-DATERANGE:ID="a",START-DATE="2026-11-23T10:00:00.200Z"']);
    const lines = out.split('\n');
    expect(lines.indexOf('#EXT-X-DATERANGE:ID="a",START-DATE="2026-11-23T10:00:00.200Z"')).to.equal(5);
    expect(parseMediaPlaylist(out).segments.map((s) => s.uri)).to.deep.equal(['seg_00000.ts', 'seg_00001.ts']);
    expect(withDateRanges(FFMPEG_PLAYLIST, [])).to.equal(FFMPEG_PLAYLIST);
  });

  it('publishes whole files on every change, learns programme time 0, and ends with ENDLIST', async () => {
    const tmp = new TempDir();
    const source = path.join(tmp.path, '.mix.m3u8');
    const target = path.join(tmp.path, 'index.m3u8');
    const pub = new PlaylistPublisher(source, target, createLogger('error'));
    try {
      pub.start();
      fs.writeFileSync(source, FFMPEG_PLAYLIST);
      await pub.publish();
      expect(fs.readFileSync(target, 'utf8')).to.equal(FFMPEG_PLAYLIST);
      expect(pub.originDate).to.equal('2026-11-23T10:00:00.000Z');
      pub.setDateRanges([range('x', 'com.stage-radio.marker', '2026-11-23T10:00:01.250Z', { 'X-LABEL': 'here' })]);
      await pub.publish();
      expect(fs.readFileSync(target, 'utf8')).to.include('#EXT-X-DATERANGE:ID="x",CLASS="com.stage-radio.marker"');
      // While FFmpeg rewrites its playlist many times, every read of the published one is a whole playlist.
      let torn = 0;
      const reader = setInterval(() => {
        const text = fs.readFileSync(target, 'utf8');
        if (!text.startsWith('#EXTM3U') || !text.trimEnd().endsWith('.ts')) torn++;
      }, 1);
      for (let i = 0; i < 200; i++) {
        const tmpFile = `${source}.tmp`;
        fs.writeFileSync(tmpFile, FFMPEG_PLAYLIST.replace('seg_00001', `seg_${String(i + 1).padStart(5, '0')}`));
        fs.renameSync(tmpFile, source);
        await new Promise((r) => setTimeout(r, 2));
      }
      await pub.publish();
      clearInterval(reader);
      expect(torn, 'no half-written playlist was ever read').to.equal(0);
      expect(fs.readFileSync(target, 'utf8')).to.include('seg_00200.ts');
      await pub.end();
      expect(fs.readFileSync(target, 'utf8').trimEnd().endsWith('#EXT-X-ENDLIST')).to.equal(true);
    } finally {
      pub.close();
      tmp.remove();
    }
  });
});
