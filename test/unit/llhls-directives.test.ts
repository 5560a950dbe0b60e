// The pure rules of the origin's LL-HLS side (services/http/live.ts): delivery directives, what a published playlist
// holds, when it answers a blocking reload, how far ahead a client may block; and the cache's second look at a file
// the writer says it has written (services/http/liveCache.ts).
import fs from 'node:fs';
import { expect } from 'chai';
import { furthestBlockable, parseDirectives, playlistHas, playlistState, type Directives } from '../../services/http/live.ts';
import { LiveFileCache, type CachedFile } from '../../services/http/liveCache.ts';
import { TempDir } from '../support/media.ts';

/** An LL-HLS playlist as the live writer renders it: segments 7 and 8 complete, 9 being made (2 parts so far). */
const LIVE = `#EXTM3U
#EXT-X-VERSION:9
#EXT-X-TARGETDURATION:1
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.576
#EXT-X-PART-INF:PART-TARGET=0.192
#EXT-X-MEDIA-SEQUENCE:7
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MAP:URI="init_0.mp4"
#EXT-X-PROGRAM-DATE-TIME:2026-12-01T10:00:07.000Z
#EXTINF:0.96,
seg_00007.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-12-01T10:00:07.960Z
#EXT-X-PART:DURATION=0.192,URI="part_00008_0.m4s",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.192,URI="part_00008_1.m4s",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.192,URI="part_00008_2.m4s",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.192,URI="part_00008_3.m4s",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.192,URI="part_00008_4.m4s",INDEPENDENT=YES
#EXTINF:0.96,
seg_00008.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-12-01T10:00:08.920Z
#EXT-X-PART:DURATION=0.192,URI="part_00009_0.m4s",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.192,URI="part_00009_1.m4s",INDEPENDENT=YES
#EXT-X-PRELOAD-HINT:TYPE=PART,URI="part_00009_2.m4s"
`;

describe('LL-HLS origin rules', () => {
  describe('parseDirectives', () => {
    it('reads _HLS_msn and _HLS_part, ignores other parameters and _HLS_skip', () => {
      expect(parseDirectives('_HLS_msn=12&_HLS_part=3')).to.deep.equal({ msn: 12, part: 3 });
      expect(parseDirectives('_HLS_msn=12')).to.deep.equal({ msn: 12, part: null });
      expect(parseDirectives('_HLS_part=0&_HLS_msn=0')).to.deep.equal({ msn: 0, part: 0 });
      expect(parseDirectives('cb=123&_HLS_msn=007&x')).to.deep.equal({ msn: 7, part: null });
      expect(parseDirectives('_HLS_msn=5&_HLS_skip=YES')).to.deep.equal({ msn: 5, part: null });
      expect(parseDirectives('_HLS_msn=5&_HLS_skip=v2')).to.deep.equal({ msn: 5, part: null });
      expect(parseDirectives(''), 'no directive').to.equal(null);
      expect(parseDirectives('cb=1&_hls_msn=abc'), 'names are case-sensitive: not a directive').to.equal(null);
      expect(parseDirectives('_HLS_skip=YES'), 'a delta update alone: the whole playlist, no blocking').to.equal(null);
    });

    it('refuses bad values with a reason, whatever else the query holds', () => {
      const bad = [
        '_HLS_msn=abc',
        '_HLS_msn=-1',
        '_HLS_msn=1.5',
        '_HLS_msn=1e3',
        '_HLS_msn=',
        '_HLS_msn=+1',
        '_HLS_msn=%201',
        '_HLS_msn=0x10',
        '_HLS_msn=1234567890123456',
        '_HLS_msn=1&_HLS_part=x',
        '_HLS_msn=1&_HLS_part=-1',
        '_HLS_msn=1&_HLS_part=',
        '_HLS_part=1',
        'cb=1&_HLS_part=0',
        '_HLS_msn=1&_HLS_msn=2',
        '_HLS_msn=1&_HLS_part=1&_HLS_part=2',
        '_HLS_msn=1&_HLS_skip=NO',
        '_HLS_skip=yes',
        'cb=1&_HLS_msn=abc&x=2',
        '%5FHLS_msn=abc',
      ];
      for (const q of bad) expect(parseDirectives(q), q).to.be.a('string');
    });
  });

  describe('playlistState', () => {
    it('finds the newest complete segment, the newest part, the hint, the target duration', () => {
      expect(playlistState(LIVE)).to.deep.equal({ complete: 8, last: { msn: 9, part: 1 }, targetSeconds: 1, hint: 'part_00009_2.m4s', ended: false });
    });

    it('a segment that has just closed: its parts are the newest, the hint is part 0 of the next', () => {
      const closed = LIVE.split('\n#EXT-X-PROGRAM-DATE-TIME:2026-12-01T10:00:08.920Z')[0] + '\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI="part_00009_0.m4s"\n';
      expect(playlistState(closed)).to.deep.include({ complete: 8, last: { msn: 8, part: 4 }, hint: 'part_00009_0.m4s' });
    });

    it('a classic playlist (no parts), an ended one, an empty one', () => {
      const classic = '#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:3\n#EXTINF:2,\nseg_00003.m4s\n#EXTINF:2,\nseg_00004.m4s\n';
      expect(playlistState(classic)).to.deep.equal({ complete: 4, last: null, targetSeconds: 2, hint: null, ended: false });
      expect(playlistState(`${classic}#EXT-X-ENDLIST\n`).ended).to.equal(true);
      expect(playlistState('')).to.deep.equal({ complete: -1, last: null, targetSeconds: 0, hint: null, ended: false });
      const mapHint = LIVE.replace('TYPE=PART,URI="part_00009_2.m4s"', 'TYPE=MAP,URI="init_1.mp4"');
      expect(playlistState(mapHint).hint, 'only a part hint counts').to.equal(null);
    });
  });

  describe('playlistHas (RFC 8216bis 6.2.5.2)', () => {
    const s = playlistState(LIVE);
    const has = (msn: number, part: number | null) => playlistHas(s, { msn, part } satisfies Directives);

    it('a whole segment: once it is complete', () => {
      expect(has(8, null)).to.equal(true);
      expect(has(2, null), 'long gone from the window: answered at once').to.equal(true);
      expect(has(9, null), 'still being made').to.equal(false);
    });

    it('a part: once it, or anything after it, is listed', () => {
      expect(has(9, 0)).to.equal(true);
      expect(has(9, 1)).to.equal(true);
      expect(has(9, 2), 'the hinted part').to.equal(false);
      expect(has(8, 4)).to.equal(true);
      expect(has(8, 5), 'past the last part of 8: part 0 of 9, which is listed').to.equal(true);
      expect(has(8, 99)).to.equal(true);
      expect(has(10, 0)).to.equal(false);
    });

    it('a part index past the end of a complete segment waits for part 0 of the next', () => {
      const closed = playlistState(LIVE.split('\n#EXT-X-PROGRAM-DATE-TIME:2026-12-01T10:00:08.920Z')[0] + '\n');
      expect(playlistHas(closed, { msn: 8, part: 4 })).to.equal(true);
      expect(playlistHas(closed, { msn: 8, part: 5 })).to.equal(false);
      expect(playlistHas(closed, { msn: 9, part: 0 })).to.equal(false);
    });

    it('an ended playlist answers everything; a classic one answers a segment once complete', () => {
      expect(playlistHas(playlistState(`${LIVE}#EXT-X-ENDLIST\n`), { msn: 50, part: 3 })).to.equal(true);
      const classic = playlistState('#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:3\n#EXTINF:2,\nseg_00003.m4s\n');
      expect(playlistHas(classic, { msn: 3, part: 2 })).to.equal(true);
      expect(playlistHas(classic, { msn: 4, part: 0 })).to.equal(false);
    });
  });

  it('furthestBlockable: one segment past the newest part, whichever of the writer and its playlist is ahead', () => {
    const s = playlistState(LIVE);
    expect(furthestBlockable(s, { msn: 9 })).to.equal(10);
    expect(furthestBlockable(s, null), 'the playlist says 9').to.equal(10);
    expect(furthestBlockable(s, { msn: 10 }), 'the writer has begun 10; its playlist is not out yet').to.equal(11);
    expect(furthestBlockable(playlistState(''), null), 'nothing yet: only the first segment').to.equal(0);
  });

  describe('LiveFileCache, a file the writer says it has written', () => {
    let tmp: TempDir;
    beforeEach(() => (tmp = new TempDir()));
    afterEach(() => tmp.remove());

    it('looks again past a shared stat that found it missing, once for every caller that knows', async () => {
      const cache = new LiveFileCache();
      const f = tmp.file('part_00001_0.m4s');
      expect(await cache.get(f, true)).to.equal('missing');
      fs.writeFileSync(f, 'part');
      expect(await cache.get(f, true), 'within 50 ms the shared stat still says missing').to.equal('missing');
      const all = await Promise.all(Array.from({ length: 50 }, () => cache.get(f, true, true)));
      for (const r of all) expect((r as CachedFile).body.toString()).to.equal('part');
      expect(cache.misses, 'read once').to.equal(1);
      expect(await cache.get(f, true), 'and known to everyone from then on').to.not.equal('missing');
    });

    it('a caller that knows, behind a stat still running, waits for it and looks again only if it missed', async () => {
      const cache = new LiveFileCache();
      const f = tmp.file('part_00002_0.m4s');
      const first = cache.get(f, true); // its stat starts now, before the write
      fs.writeFileSync(f, 'late');
      const knowing = cache.get(f, true, true);
      const [a, b] = await Promise.all([first, knowing]);
      // The first caller's stat may or may not have run before the write; the knowing one gets the file either way.
      expect(a === 'missing' || (a as CachedFile).body.toString() === 'late', String(a)).to.equal(true);
      expect((b as CachedFile).body.toString()).to.equal('late');
    });

    it('a file that truly is not there is still missing', async () => {
      const cache = new LiveFileCache();
      expect(await cache.get(tmp.file('part_00003_0.m4s'), true, true)).to.equal('missing');
    });
  });
});
