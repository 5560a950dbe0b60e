// Golden tests: the exact SDP and FFmpeg arguments of the mixer.
import { expect } from 'chai';
import { mixerFilter, mixerInputOptions, mixerOutputOptions, partFrames } from '../../pipelines/mixer/ffmpegArgs.ts';
import { buildMixerSdp } from '../../pipelines/mixer/sdp.ts';

describe('mixer SDP and FFmpeg arguments', () => {
  it('SDP: one Opus stream per slot on loopback', () => {
    expect(buildMixerSdp([50000, 50002])).to.equal(
      [
        'v=0',
        'o=- 0 0 IN IP4 127.0.0.1',
        's=stage-radio mix',
        'c=IN IP4 127.0.0.1',
        't=0 0',
        'm=audio 50000 RTP/AVP 100',
        'a=rtpmap:100 opus/48000/2',
        'a=recvonly',
        'm=audio 50002 RTP/AVP 100',
        'a=rtpmap:100 opus/48000/2',
        'a=recvonly',
        '',
      ].join('\n'),
    );
  });

  it('input options allow only file/rtp/udp and skip probing', () => {
    expect(mixerInputOptions()).to.deep.equal(['-protocol_whitelist', 'file,rtp,udp', '-probesize', '32', '-analyzeduration', '0']);
  });

  it('filter: each slot gated and levelled (10 ms lookahead), amix without normalization, then the K-weighted master and the limiter; the lookahead’s samples cut from the programme clock', () => {
    const slot = (i: number) =>
      `[0:a:${i}]agate=threshold=0.0008:ratio=10:range=0.001:attack=5:release=300:detection=rms,asplit=2[lk${i}][la${i}];` +
      `[la${i}]adelay=delays=10:all=1[ld${i}];` +
      `[ld${i}][lk${i}]sidechaincompress=threshold=0.001:ratio=20:attack=10:release=9000:makeup=64:knee=4:detection=rms[lv${i}];`;
    expect(mixerFilter(2)).to.equal(
      slot(0) + slot(1) +
        '[lv0][lv1]amix=inputs=2:normalize=0:dropout_transition=0[sum];' +
        '[sum]asplit=2[summ][sumk];[sumk]pan=mono|c0=0.5*c0+0.5*c1,highpass=f=38:t=q:w=0.5,highshelf=f=1682:g=4:t=q:w=0.7071[sums];' +
        '[summ][sums]sidechaincompress=threshold=0.01:ratio=20:attack=2000:release=2000:makeup=12:knee=6:detection=rms,' +
        'alimiter=limit=0.75:attack=5:release=50:level=disabled,atrim=start_sample=480,asetpts=N/SR/TB[mix]',
    );
  });

  it('output: AAC-LC 48 kHz stereo as fragmented MP4 on stdout, one fragment per LL-HLS part of whole AAC frames', () => {
    expect(mixerOutputOptions({ inputs: 2, partSeconds: 0.2, aacBitrateKbps: 128 })).to.deep.equal([
      '-filter_complex', mixerFilter(2),
      '-map', '[mix]',
      '-c:a', 'aac',
      '-aac_coder', 'fast',
      '-b:a', '128k',
      '-ar', '48000',
      '-ac', '2',
      '-f', 'mp4',
      '-movflags', 'cmaf+empty_moov+default_base_moof',
      // 8.5 frames: FFmpeg closes a fragment at the 9th (0.192 s).
      '-frag_duration', '181333',
      '-flush_packets', '1',
    ]);
    expect([0.1, 0.2, 0.25, 0.5, 1].map(partFrames), 'frames per part: never longer than asked').to.deep.equal([4, 9, 11, 23, 46]);
    const frag = (p: number) => mixerOutputOptions({ inputs: 1, partSeconds: p, aacBitrateKbps: 96 })[mixerOutputOptions({ inputs: 1, partSeconds: p, aacBitrateKbps: 96 }).indexOf('-frag_duration') + 1];
    expect(frag(0.5)).to.equal('480000');
  });
});
