// The on-air sound, judged by listening to a corpus through the mixer's exact filter graph and AAC encoder (the same
// builders the mixer runs), offline: speech at levels from -40 to -1 dBFS peak in several voices and languages, two
// speakers 25 dB apart, music, and speech over music. The chain's constants were set on other voices, texts and
// music (docs/decisions.md, "On-air sound"); none of this material was used to set them.
import { expect } from 'chai';
import { mixerFilter } from '../../pipelines/mixer/ffmpegArgs.ts';
import { SAMPLE_RATE, median } from '../support/audio.ts';
import {
  atPeak, bestLag, concat, filterOffline, loudness, mixOffline, music, pinkNoise, rmsOf, silence, slotsInput, speech, sum,
  type Loudness, type Pcm,
} from '../support/corpus.ts';
import { TempDir } from '../support/media.ts';
import type { SpeechScript } from '../support/speech.ts';

/** The mixer's slots (the default MAX_PERFORMERS): every item goes through all of them, the unused ones silent. */
const SLOTS = 8;
const TARGET_LUFS = -16;
const TOLERANCE_LU = 1;
const MAX_TRUE_PEAK = -1;
/** A microphone's and a room's floor under every voice: pink noise at this RMS. */
const FLOOR_DB = -75;

const pauses = [0.6, 1.4, 0.4, 2.0, 0.8];
const script = (voice: string, wpm: number, texts: string[]): SpeechScript => ({ voice, wpm, leadSec: 0.3, sentences: texts.map((t, i) => [t, pauses[i % pauses.length]!]) });

const SCRIPTS = {
  annie: script('en-us+Annie', 130, [
    'This is the evening programme, coming to you live from the old mill.',
    'Tonight, we have three guests, and a lot of questions from you.',
    'Our first caller has been waiting since the top of the hour.',
    'Go ahead, you are on the air.',
    'We will take a short break after this, so stay close to your radio.',
  ]),
  ja: script('ja', 150, [
    'こんばんは、夜の番組の時間です。',
    '今日は音楽と旅の話をしましょう。',
    '最初のお便りは、北の町から届きました。',
    '雨の日が続いていますが、皆さんお元気ですか。',
  ]),
  es: script('es', 175, [
    'Buenas noches, y bienvenidos a la tertulia de los martes.',
    'Hoy hablamos del mercado, de los precios, y de la cosecha de este año.',
    'Tengo aquí las cifras de la cooperativa, y son mejores de lo que esperábamos.',
    'Pero primero, escuchemos a nuestro invitado.',
  ]),
  rp: script('en-gb-x-rp', 210, [
    'Thank you, it is a pleasure to be here, and I have brought some numbers of my own.',
    'The harvest came in early, which nobody expected after such a wet spring.',
    'Prices held, more or less, though the small farms felt the squeeze.',
    'I think the real story is the weather, and what it will do next year.',
  ]),
};

/** Music the chain was not set on: other chords, tempo and waves than the tuning set's. */
const MUSIC = { chords: [['D3', 'F3', 'A3'], ['A#2', 'D3', 'F3'], ['F2', 'A2', 'C3', 'F3'], ['C3', 'E3', 'G3']], bpm: 96, wave: 'sawtooth' };

interface Row {
  item: string;
  loudness: Loudness;
  note?: string;
}

describe('pipeline: on-air sound on speech and music (offline, the mixer\'s own graph)', function () {
  this.timeout(180_000);
  let tmp: TempDir;
  const rows: Row[] = [];
  let voices: { annie: Pcm; ja: Pcm; es: Pcm; rp: Pcm };
  let floor: (seconds: number) => Pcm;

  before(() => {
    tmp = new TempDir();
    voices = {
      annie: speech(tmp, 'annie', SCRIPTS.annie),
      ja: speech(tmp, 'ja', SCRIPTS.ja),
      es: speech(tmp, 'es', SCRIPTS.es),
      rp: speech(tmp, 'rp', SCRIPTS.rp),
    };
    const noise = pinkNoise(tmp, 120, FLOOR_DB);
    floor = (seconds) => noise.subarray(0, Math.round(seconds * SAMPLE_RATE));
  });
  after(() => {
    if (rows.length > 0) {
      console.log('      programme through the mixer\'s graph (integrated LUFS, true peak dBTP, loudness range LU):');
      for (const r of rows) console.log(`        ${r.item.padEnd(34)} ${r.loudness.integrated.toFixed(1).padStart(6)} LUFS ${r.loudness.truePeak.toFixed(1).padStart(6)} dBTP  LRA ${r.loudness.lra.toFixed(1)}${r.note ? `  ${r.note}` : ''}`);
    }
    tmp?.remove();
  });

  /** Adds the floor under a voice (its whole length). */
  const onFloor = (pcm: Pcm) => sum(pcm, floor(pcm.length / SAMPLE_RATE));
  const seconds = (pcm: Pcm) => pcm.length / SAMPLE_RATE;

  function programme(name: string, slots: Pcm[]): { file: string; loudness: Loudness } {
    const file = mixOffline(slotsInput(tmp, name, slots, SLOTS), SLOTS, tmp.file(`${name}.mp4`));
    return { file, loudness: loudness(file) };
  }

  function expectOnTarget(item: string, l: Loudness, note?: string): void {
    rows.push({ item, loudness: l, ...(note ? { note } : {}) });
    expect(l.integrated, `${item}: integrated loudness (LUFS)`).to.be.within(TARGET_LUFS - TOLERANCE_LU, TARGET_LUFS + TOLERANCE_LU);
    expect(l.truePeak, `${item}: true peak (dBTP)`).to.be.at.most(MAX_TRUE_PEAK);
  }

  for (const peak of [-40, -20, -1]) {
    it(`one speaker at ${peak} dBFS peak (American English, then Japanese) comes out at -16 ± 1 LUFS, true peak ≤ -1 dBTP`, () => {
      const voice = onFloor(atPeak(concat(voices.annie, silence(1), voices.ja), peak));
      expectOnTarget(`speech at ${peak} dBFS peak`, programme(`speech${-peak}`, [voice]).loudness);
    });
  }

  it('two speakers 25 dB apart, in turns: the programme on target, and each at the same short-term loudness within 4 LU', () => {
    // Turns: es (loud, -3 dBFS peak) on slot 0, then rp (25 dB quieter) on slot 1, three times; each slot carries its
    // own floor throughout, as an open microphone does.
    const loud = atPeak(voices.es, -3);
    const quiet = atPeak(voices.rp, -28);
    const turns: { who: 'loud' | 'quiet'; from: number; to: number }[] = [];
    const a: Pcm[] = [];
    const b: Pcm[] = [];
    let t = 0;
    for (let k = 0; k < 3; k++) {
      for (const [who, v] of [['loud', loud], ['quiet', quiet]] as const) {
        turns.push({ who, from: t, to: t + seconds(v) });
        a.push(who === 'loud' ? v : silence(seconds(v)), silence(1));
        b.push(who === 'quiet' ? v : silence(seconds(v)), silence(1));
        t += seconds(v) + 1;
      }
    }
    const { loudness: l } = programme('two', [onFloor(concat(...a)), onFloor(concat(...b))]);
    // Short-term loudness (3 s windows) lying wholly inside one speaker's turn, after their first turn (the levelling
    // meets each voice once).
    const inside = (who: 'loud' | 'quiet') =>
      l.frames.filter((f) => turns.slice(2).some((u) => u.who === who && f.t - 3 >= u.from && f.t <= u.to)).map((f) => f.s);
    const sLoud = median(inside('loud'));
    const sQuiet = median(inside('quiet'));
    const firstTurns = (who: 'loud' | 'quiet') => median(l.frames.filter((f) => turns.slice(0, 2).some((u) => u.who === who && f.t - 3 >= u.from && f.t <= u.to)).map((f) => f.s));
    const note = `alone: loud ${sLoud.toFixed(1)}, quiet ${sQuiet.toFixed(1)} LUFS short-term (first turns ${firstTurns('loud').toFixed(1)}, ${firstTurns('quiet').toFixed(1)})`;
    expectOnTarget('two speakers 25 dB apart', l, note);
    expect(inside('loud').length, 'short-term windows inside the loud speaker\'s turns').to.be.at.least(20);
    expect(inside('quiet').length, 'short-term windows inside the quiet speaker\'s turns').to.be.at.least(20);
    expect(Math.abs(sLoud - sQuiet), `short-term loudness apart while each speaks alone (LU); ${note}`).to.be.at.most(4);
  });

  it('music (chords, bass and a drum pulse) on target, with a short-term loudness that does not pump', () => {
    const m = atPeak(music(tmp, 'test', { ...MUSIC, seconds: 40 }), -10);
    const { loudness: l } = programme('music', [m]);
    // After the first 5 s (the levelling meets the music), the music itself is steady: its short-term loudness should
    // be too. A leveller that pumped on the drum would move it by several LU.
    const steady = l.frames.filter((f) => f.t >= 5).map((f) => f.s);
    const spread = Math.max(...steady) - Math.min(...steady);
    expectOnTarget('music at -10 dBFS peak', l, `short-term spread ${spread.toFixed(1)} LU`);
    expect(spread, 'short-term loudness range over the steady music (LU)').to.be.at.most(3);
  });

  it('speech over music, as two performers (a voice and a bed 14 dB under it) and as one (voice and music in one microphone): on target', () => {
    const v = onFloor(atPeak(concat(voices.rp, silence(1), voices.annie), -6));
    const bed = atPeak(music(tmp, 'test', { ...MUSIC, seconds: seconds(v) }), -20);
    expectOnTarget('speech over a music bed (2 slots)', programme('over2', [v, bed]).loudness);
    const voice = atPeak(concat(voices.es, silence(1), voices.ja), -3);
    const mixed = atPeak(sum(voice, atPeak(music(tmp, 'test', { ...MUSIC, seconds: seconds(voice) }), -15)), -3);
    expectOnTarget('speech and music in one slot', programme('over1', [onFloor(mixed)]).loudness);
  });

  it('a performer silent for 10 s: the programme stays at or below -60 dBFS, without swelling, and their return is not a blast', () => {
    const v = atPeak(voices.annie, -20);
    const first = v.subarray(0, Math.round(20 * SAMPLE_RATE));
    const voice = onFloor(concat(first, silence(10), v.subarray(0, Math.round(12 * SAMPLE_RATE))));
    const { loudness: l } = programme('gap', [voice]);
    const pcm = filterOffline(slotsInput(tmp, 'gap', [voice], SLOTS), mixerFilter(SLOTS));
    // 0.5 s windows over the silence, from 0.5 s after the last word (the speech's own tail) to its end.
    let lastWord = seconds(first);
    while (lastWord > 0 && rmsOf(first, Math.round((lastWord - 0.05) * SAMPLE_RATE), Math.round(lastWord * SAMPLE_RATE)) < -60) lastWord -= 0.05;
    const windows: number[] = [];
    for (let t = lastWord + 0.5; t + 0.5 <= seconds(first) + 10; t += 0.5) windows.push(rmsOf(pcm, Math.round(t * SAMPLE_RATE), Math.round((t + 0.5) * SAMPLE_RATE)));
    const maxDb = Math.max(...windows);
    // The voice's momentary loudness (400 ms) once it is back, against its own before the silence.
    const before = l.frames.filter((f) => f.t > 5 && f.t <= seconds(first)).map((f) => f.m).sort((x, y) => x - y);
    const after = l.frames.filter((f) => f.t > seconds(first) + 10 && f.t <= seconds(first) + 12).map((f) => f.m);
    const typical = before[Math.floor(before.length * 0.95)]!;
    const back = Math.max(...after);
    rows.push({ item: 'speech, 10 s silent, speech', loudness: l, note: `silence ${windows[0]!.toFixed(0)} → ${windows.at(-1)!.toFixed(0)} dBFS (max ${maxDb.toFixed(1)}); back at ${back.toFixed(1)} LUFS momentary, before ${typical.toFixed(1)} (95th pct)` });
    expect(windows.length, 'windows over the silence').to.be.at.least(15);
    expect(maxDb, `the programme's level in the silence (dBFS RMS, 0.5 s windows): ${windows.map((w) => w.toFixed(0)).join(' ')}`).to.be.at.most(-60);
    expect(back, 'momentary loudness in the 2 s after the voice returns, against the 95th percentile before (LUFS)').to.be.at.most(typical + 3);
  });

  it('the chain delays the programme by at most 100 ms (cross-correlation with the slots\' sum, searched to 500 ms); on the programme clock only the limiter\'s 5 ms remain', () => {
    const v = onFloor(atPeak(voices.es, -12));
    const input = slotsInput(tmp, 'delay', [v], SLOTS);
    // From 5 s in (the levelling has met the voice), 2 s of programme against the input. The wall-clock delay is the
    // graph's without the lookahead's compensation (the samples it holds back); the programme clock's offset is the
    // graph's as the mixer runs it.
    const lag = (filter: string) => bestLag(v, filterOffline(input, filter), 5 * SAMPLE_RATE, 2 * SAMPLE_RATE, 0.5 * SAMPLE_RATE) / SAMPLE_RATE;
    const delaySec = lag(mixerFilter(SLOTS, { compensateLookahead: false }));
    const clockSec = lag(mixerFilter(SLOTS));
    rows.push({ item: 'delay of the chain', loudness: { integrated: NaN, truePeak: NaN, lra: NaN, frames: [] }, note: `${(delaySec * 1000).toFixed(2)} ms; on the programme clock ${(clockSec * 1000).toFixed(2)} ms` });
    expect(delaySec, 'delay (s)').to.be.within(0, 0.1);
    expect(clockSec, 'offset on the programme clock (s): the limiter\'s lookahead').to.be.within(0.004, 0.006);
  });
});
