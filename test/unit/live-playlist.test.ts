// The live playlist (pipelines/hls/livePlaylist.ts) and the fMP4 reading it relies on (pipelines/hls/mp4.ts): golden
// text for LL-HLS and classic playlists, and fragment timing read from real FFmpeg output.
import { execFileSync } from 'node:child_process';
import { expect } from 'chai';
import { renderLivePlaylist, type LivePlaylistState } from '../../pipelines/hls/livePlaylist.ts';
import { BoxReader, fragmentTiming, timescaleOf, trexDefaultDuration } from '../../pipelines/hls/mp4.ts';
import { mixerOutputOptions, partFrames } from '../../pipelines/mixer/ffmpegArgs.ts';

const part = (msn: number, i: number) => ({ uri: `part_${String(msn).padStart(5, '0')}_${i}.m4s`, duration: 0.192 });
const seg = (msn: number, pdt: string, extra: Partial<LivePlaylistState['segments'][number]> = {}) => ({
  msn,
  uri: `seg_${String(msn).padStart(5, '0')}.m4s`,
  duration: 0.96,
  programDateTime: pdt,
  discontinuity: false,
  map: 'init_0.mp4',
  parts: [0, 1, 2, 3, 4].map((i) => part(msn, i)),
  ...extra,
});

describe('live playlist', () => {
  const state: LivePlaylistState = {
    segments: [seg(7, '2030-01-01T00:00:06.720Z'), seg(8, '2030-01-01T00:00:07.680Z'), seg(9, '2030-01-01T00:00:08.640Z', { discontinuity: true, map: 'init_1.mp4' })],
    partial: { msn: 10, programDateTime: '2030-01-01T00:00:09.600Z', discontinuity: false, map: 'init_1.mp4', parts: [part(10, 0), part(10, 1)] },
    preloadHint: 'part_00010_2.m4s',
    discontinuitySequence: 2,
    dateRanges: ['#EXT-X-DATERANGE:ID="c1",CLASS="com.stage-radio.chapter",START-DATE="2030-01-01T00:00:07.000Z",X-TITLE="Intro"'],
    ended: false,
  };

  it('a first segment after a discontinuity keeps its DISCONTINUITY (its number is the header plus one, as for players that saw it listed later)', () => {
    const text = renderLivePlaylist(
      { ...state, segments: state.segments.slice(2), discontinuitySequence: 2, dateRanges: [] },
      { targetDuration: 1, partTarget: null, partHoldBack: 0.6, partsForSegments: 2 },
    );
    const lines = text.split('\n');
    expect(lines.slice(lines.indexOf('#EXT-X-MEDIA-SEQUENCE:9'), lines.indexOf('seg_00009.m4s') + 1)).to.deep.equal([
      '#EXT-X-MEDIA-SEQUENCE:9',
      '#EXT-X-DISCONTINUITY-SEQUENCE:2',
      '#EXT-X-INDEPENDENT-SEGMENTS',
      '#EXT-X-DISCONTINUITY',
      '#EXT-X-MAP:URI="init_1.mp4"',
      '#EXT-X-PROGRAM-DATE-TIME:2030-01-01T00:00:08.640Z',
      '#EXTINF:0.96,',
      'seg_00009.m4s',
    ]);
  });

  it('LL-HLS: server control, part target, parts of the last segments, the segment being made (undated), a preload hint', () => {
    expect(renderLivePlaylist(state, { targetDuration: 1, partTarget: 0.2, partHoldBack: 0.6, partsForSegments: 2 })).to.equal(
      [
        '#EXTM3U',
        '#EXT-X-VERSION:9',
        '#EXT-X-TARGETDURATION:1',
        '#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.60',
        '#EXT-X-PART-INF:PART-TARGET=0.20',
        '#EXT-X-MEDIA-SEQUENCE:7',
        '#EXT-X-DISCONTINUITY-SEQUENCE:2',
        '#EXT-X-INDEPENDENT-SEGMENTS',
        '#EXT-X-DATERANGE:ID="c1",CLASS="com.stage-radio.chapter",START-DATE="2030-01-01T00:00:07.000Z",X-TITLE="Intro"',
        '#EXT-X-MAP:URI="init_0.mp4"',
        '#EXT-X-PROGRAM-DATE-TIME:2030-01-01T00:00:06.720Z',
        '#EXTINF:0.96,',
        'seg_00007.m4s',
        '#EXT-X-PROGRAM-DATE-TIME:2030-01-01T00:00:07.680Z',
        ...[0, 1, 2, 3, 4].map((i) => `#EXT-X-PART:DURATION=0.192,URI="part_00008_${i}.m4s",INDEPENDENT=YES`),
        '#EXTINF:0.96,',
        'seg_00008.m4s',
        '#EXT-X-DISCONTINUITY',
        '#EXT-X-MAP:URI="init_1.mp4"',
        '#EXT-X-PROGRAM-DATE-TIME:2030-01-01T00:00:08.640Z',
        ...[0, 1, 2, 3, 4].map((i) => `#EXT-X-PART:DURATION=0.192,URI="part_00009_${i}.m4s",INDEPENDENT=YES`),
        '#EXTINF:0.96,',
        'seg_00009.m4s',
        // The segment being made: no PROGRAM-DATE-TIME of its own (hls.js 1.6 throws on a DATERANGE it cannot place).
        '#EXT-X-PART:DURATION=0.192,URI="part_00010_0.m4s",INDEPENDENT=YES',
        '#EXT-X-PART:DURATION=0.192,URI="part_00010_1.m4s",INDEPENDENT=YES',
        '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="part_00010_2.m4s"',
        '',
      ].join('\n'),
    );
  });

  it('classic (LL-HLS off): whole segments only, no parts, no hint, version 7', () => {
    const text = renderLivePlaylist(state, { targetDuration: 1, partTarget: null, partHoldBack: 0.6, partsForSegments: 2 });
    expect(text).to.not.match(/EXT-X-PART|PRELOAD-HINT|SERVER-CONTROL/);
    expect(text).to.match(/^#EXT-X-VERSION:7$/m);
    expect(text.match(/^seg_\d+\.m4s$/gm)).to.deep.equal(['seg_00007.m4s', 'seg_00008.m4s', 'seg_00009.m4s']);
    expect(text.trimEnd().split('\n').at(-1)).to.equal('seg_00009.m4s');
  });

  it('ended: ENDLIST, no hint, the segment being made is not listed', () => {
    const text = renderLivePlaylist({ ...state, ended: true }, { targetDuration: 1, partTarget: 0.2, partHoldBack: 0.6, partsForSegments: 2 });
    expect(text).to.match(/#EXT-X-ENDLIST\n$/);
    expect(text).to.not.match(/PRELOAD-HINT|part_00010/);
  });
});

describe('fragmented MP4 from FFmpeg', () => {
  it('parts are exactly partFrames() AAC frames: tfdt and durations read from each moof', () => {
    const opts = mixerOutputOptions({ inputs: 1, partSeconds: 0.2, aacBitrateKbps: 128 });
    const at = (flag: string) => opts[opts.indexOf(flag) + 1]!;
    // The mixer's own muxer options, on a tone.
    const out = execFileSync('ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000', '-t', '3', '-c:a', 'aac', '-b:a', '128k', '-ar', '48000', '-ac', '2',
      '-f', 'mp4', '-movflags', at('-movflags'), '-frag_duration', at('-frag_duration'), 'pipe:1'], { maxBuffer: 16 << 20 });
    expect(partFrames(0.2)).to.equal(9);
    const reader = new BoxReader();
    // Fed in awkward pieces: boxes are cut anywhere.
    const boxes = [];
    for (let i = 0; i < out.length; i += 777) boxes.push(...reader.push(out.subarray(i, i + 777)));
    expect(reader.buffered).to.equal(0);
    expect(boxes.slice(0, 2).map((b) => b.type)).to.deep.equal(['ftyp', 'moov']);
    const moov = boxes[1]!.bytes;
    expect(timescaleOf(moov)).to.equal(48000);
    const fallback = trexDefaultDuration(moov);
    const frags = boxes.filter((b) => b.type === 'moof').map((b) => fragmentTiming(b.bytes, fallback)!);
    expect(boxes.filter((b) => b.type === 'mdat')).to.have.length(frags.length);
    const full = frags.slice(0, -1);
    expect(full.every((f) => f.sampleCount === 9 && f.duration === 9 * 1024), JSON.stringify(full.slice(0, 3))).to.equal(true);
    // Each fragment starts where the previous one ended (the first at 0, or before it by AAC's priming samples).
    expect(frags[0]!.baseMediaDecodeTime).to.be.within(-1024, 0);
    for (let i = 1; i < frags.length; i++) expect(frags[i]!.baseMediaDecodeTime).to.equal(frags[i - 1]!.baseMediaDecodeTime + frags[i - 1]!.duration);
  });

  it('a corrupt stream is refused, not followed', () => {
    const r = new BoxReader();
    expect(r.push(Buffer.from([0, 0, 0, 4, 0x66, 0x72, 0x65, 0x65]))).to.deep.equal([]);
    expect(r.failed).to.match(/a box of 4 bytes/);
  });
});
