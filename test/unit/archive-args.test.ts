// Golden tests: the exact FFmpeg and ffprobe arguments of the archive's derived files.
import { expect } from 'chai';
import { concatArgs, concatList, remuxArgs, silenceArgs } from '../../pipelines/archive/vodArgs.ts';
import { probeDurationArgs } from '../../pipelines/ffmpeg/probe.ts';

describe('archive FFmpeg and ffprobe arguments', () => {
  it('remux: a run (init section, then fMP4 segments) on stdin → AAC copied into an .m4a, moov first, no bitstream filter', () => {
    expect(remuxArgs('/spool/b1/audio.m4a.tmp.m4a')).to.deep.equal([
      '-v', 'error', '-nostdin', '-y',
      '-f', 'mp4', '-i', 'pipe:0',
      '-map', '0:a:0', '-c', 'copy', '-movflags', '+faststart', '-f', 'mp4',
      '/spool/b1/audio.m4a.tmp.m4a',
    ]);
  });

  it('silence: a gap as AAC-LC 48 kHz stereo at the programme bitrate, in whole AAC frames of 1024 samples', () => {
    expect(silenceArgs(110, 128, '/w/gap_1.m4a')).to.deep.equal([
      '-v', 'error', '-nostdin', '-y',
      '-f', 'lavfi', '-i', 'anullsrc=r=48000:cl=stereo:n=1024', '-frames:a', '110',
      '-c:a', 'aac', '-b:a', '128k', '-f', 'mp4',
      '/w/gap_1.m4a',
    ]);
  });

  it('concat: the listed parts joined, AAC copied, moov first', () => {
    expect(concatArgs('/w/list.txt', '/spool/b1/audio.m4a.tmp.m4a')).to.deep.equal([
      '-v', 'error', '-nostdin', '-y',
      '-f', 'concat', '-safe', '0', '-i', '/w/list.txt',
      '-map', '0:a:0', '-c', 'copy', '-movflags', '+faststart', '-f', 'mp4',
      '/spool/b1/audio.m4a.tmp.m4a',
    ]);
  });

  it("concat list: one quoted line per part, a quote in a name escaped as '\\''", () => {
    expect(concatList(['/w/gap_1.m4a', "/w/it's/run_1.m4a"])).to.equal("file '/w/gap_1.m4a'\nfile '/w/it'\\''s/run_1.m4a'\n");
  });

  it('probe: the format duration alone, as a bare number', () => {
    expect(probeDurationArgs('/spool/b1/audio.m4a')).to.deep.equal(['-v', 'error', '-show_entries', 'format=duration', '-of', 'csv=p=0', '/spool/b1/audio.m4a']);
  });
});
