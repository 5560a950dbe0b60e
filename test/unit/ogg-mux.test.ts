// The one-pipe mixer input's framing: eight Opus slots in one Ogg stream, written tick by tick into FFmpeg's stdin as
// the mixer would, decode to eight continuous tracks; mixed with amix, the tone of the one slot that has it is heard
// from start to end, and the length is the ticks' length.
import { spawn } from 'node:child_process';
import { expect } from 'chai';
import { OggMux } from '../../pipelines/mixer/oggMux.ts';
import { OPUS_SILENCE } from '../../pipelines/mixer/rtp.ts';
import { readOggStreams } from '../support/ogg.ts';
import { SAMPLE_RATE, toneDb } from '../support/audio.ts';

/** A 440 Hz tone as 20 ms stereo Opus packets (FFmpeg's encoder, RTP payloads read back from an Ogg file's pages). */
async function tonePackets(seconds: number): Promise<Buffer[]> {
  const ogg = await run('ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', `sine=frequency=440:sample_rate=48000:duration=${seconds}`, '-ac', '2', '-c:a', 'libopus', '-b:a', '64k', '-frame_duration', '20', '-f', 'ogg', '-'], null);
  const packets = readOggStreams(ogg).streams[0] ?? [];
  return packets.slice(2);
}

function run(cmd: string, args: string[], input: Buffer[] | null): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: [input ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    child.stdout!.on('data', (d: Buffer) => out.push(d));
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(Buffer.concat(out)) : reject(new Error(`${cmd} exited ${code}: ${err}`))));
    if (input && child.stdin) {
      for (const b of input) child.stdin.write(b);
      child.stdin.end();
    }
  });
}

describe('unit: OggMux (every slot in one Ogg stream)', function () {
  this.timeout(30_000);

  it('eight slots, one with a tone, written tick by tick, decode through amix to the tone for exactly the ticks\' length', async () => {
    const seconds = 3;
    const tone = await tonePackets(seconds);
    const mux = new OggMux(8);
    const writes = [mux.header()];
    const ticks = seconds * 50;
    for (let t = 0; t < ticks; t++) {
      writes.push(mux.tick(Array.from({ length: 8 }, (_, slot) => [{ payload: slot === 3 ? (tone[t] ?? OPUS_SILENCE) : OPUS_SILENCE, samples: 960 }])));
    }
    const inputs = Array.from({ length: 8 }, (_, i) => `[0:a:${i}]`).join('');
    const pcmBuf = await run('ffmpeg', ['-v', 'error', '-probesize', '32', '-analyzeduration', '0', '-f', 'ogg', '-i', 'pipe:0',
      '-filter_complex', `${inputs}amix=inputs=8:normalize=0[m]`, '-map', '[m]', '-ac', '1', '-ar', String(SAMPLE_RATE), '-f', 'f32le', '-'], writes);
    const pcm = new Float32Array(pcmBuf.buffer, pcmBuf.byteOffset, Math.floor(pcmBuf.length / 4));
    expect(pcm.length / SAMPLE_RATE, 'seconds decoded').to.be.closeTo(seconds, 0.03);
    for (let s = 0; s < seconds; s += 0.5) {
      const start = Math.floor((s + 0.1) * SAMPLE_RATE);
      expect(toneDb(pcm, 440, start, Math.floor(0.3 * SAMPLE_RATE)), `tone at ${s + 0.1} s`).to.be.greaterThan(-20);
    }
  });

  it('splits a tick that needs more than 255 lacing values over pages; refuses a tick before header() and a packet no Opus packet can be', () => {
    const mux = new OggMux(1);
    expect(() => mux.tick([[{ payload: OPUS_SILENCE, samples: 960 }]])).to.throw(/header\(\) first/);
    mux.header();
    // 200 packets of 300 bytes take 2 lacing values each: 400, over two pages.
    const out = mux.tick([Array.from({ length: 200 }, () => ({ payload: Buffer.alloc(300, 1), samples: 960 }))]);
    expect(out.toString('latin1').split('OggS').length - 1).to.equal(2);
    expect(() => mux.tick([[{ payload: Buffer.alloc(300 * 255, 1), samples: 960 }]])).to.throw(/not an Opus packet/);
  });
});
