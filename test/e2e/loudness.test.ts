// The on-air sound, live: two Chromium performers read speech into their microphones with the voice processing every
// performer gets by default (echo cancellation, noise suppression, auto gain), one speaking loud (peaks at -1 dBFS)
// and one quiet (peaks at -28 dBFS), in voices, languages and texts the chain was not set on. The live HLS, as a
// listener gets it, is measured as EBU R128 measures loudness (FFmpeg's ebur128, true peak on).
import { expect } from 'chai';
import type { Browser } from 'playwright-core';
import type { App } from '../../services/app.ts';
import { createStage, startTestApp, transition } from '../support/app.ts';
import { joinAsPerformer, launchPerformerBrowser } from '../support/browser.ts';
import { atPeak, loudness, speech, writeWav } from '../support/corpus.ts';
import { PlaylistWatcher } from '../support/hls.ts';
import { TempDir } from '../support/media.ts';
import type { SpeechScript } from '../support/speech.ts';

/** Programme measured, seconds (at least 30, the minimum), after SETTLE_SECONDS of it. */
const MEASURE_SECONDS = Number(process.env['LOUDNESS_SECONDS'] ?? 40);
/** The levellers meet each voice once; the first voice starts after its page's lead silence. */
const SETTLE_SECONDS = 8;

const pauses = [0.5, 1.8, 0.7, 3.0, 1.0];
const script = (voice: string, wpm: number, leadSec: number, texts: string[]): SpeechScript => ({ voice, wpm, leadSec, sentences: texts.map((t, i) => [t, pauses[i % pauses.length]!]) });

/** The loud one: Scottish English. */
const LOUD = script('en-gb-scotland', 155, 0.5, [
  'Good afternoon, this is the lunchtime programme, and we are live from the harbour.',
  'The boats are back, the fish market is open, and the sun has finally come out.',
  'Later on we have the results of the sailing race, and a word from the lifeboat crew.',
  'But first, a look at what is happening in town this weekend.',
  'There is a craft fair in the church hall, and a concert on Saturday night.',
  'If you want to tell us what you think, send us a message, or call in.',
]);
/** The quiet one: Brazilian Portuguese, 27 dB lower. */
const QUIET = script('pt-br', 165, 3.0, [
  'Boa tarde a todos, é um prazer estar aqui com vocês hoje.',
  'Eu vim falar sobre o festival de música, que começa na próxima semana.',
  'Teremos bandas de todo o país, e a entrada é gratuita para as crianças.',
  'Os ingressos já estão à venda, no centro da cidade e na internet.',
  'Espero ver muita gente lá, com chuva ou com sol.',
]);

describe('e2e: on-air loudness on speech from browsers', function () {
  this.timeout(180_000);
  let app: App;
  let tmp: TempDir;
  const browsers: Browser[] = [];

  before(async () => {
    tmp = new TempDir();
    app = await startTestApp({ CDN_DIR: tmp.file('cdn') });
  });
  after(async () => {
    await Promise.all(browsers.map((b) => b.close()));
    await app?.close();
    tmp?.remove();
  });

  it(`two performers read speech (peaks at -1 and -28 dBFS, voice processing on): the live HLS holds -16 ± 1 LUFS integrated and ≤ -1 dBTP over ${MEASURE_SECONDS} s`, async () => {
    const mics = {
      Ann: writeWav(tmp.file('ann.wav'), atPeak(speech(tmp, 'loud', LOUD), -1), 'pcm_s16le'),
      Rui: writeWav(tmp.file('rui.wav'), atPeak(speech(tmp, 'quiet', QUIET), -28), 'pcm_s16le'),
    };
    const stage = await createStage(app, 'Loudness');
    for (const [name, wav] of Object.entries(mics)) {
      const browser = await launchPerformerBrowser(wav);
      browsers.push(browser);
      await joinAsPerformer(browser, stage.performerUrl, name, { raw: false });
    }
    await transition(app, stage.id, 'start');
    const mixer = app.registry.get(stage.id)!.broadcast!.mixer;
    const watcher = new PlaylistWatcher(mixer.playlistPath);
    const seconds = (from: number) => watcher.segments.slice(from).reduce((s, x) => s + x.duration, 0);
    let from = 0;
    try {
      await watcher.waitFor((w) => seconds(0) >= SETTLE_SECONDS && w.segments.length > 0, 30_000);
      from = watcher.segments.length;
      await watcher.waitFor(() => seconds(from) >= MEASURE_SECONDS, (MEASURE_SECONDS + 30) * 1000);
    } finally {
      watcher.stop();
    }
    const measured = seconds(from);
    const l = loudness(watcher.concatInput(from));
    console.log(`      live programme over ${measured.toFixed(1)} s: ${l.integrated} LUFS integrated, true peak ${l.truePeak} dBTP, loudness range ${l.lra} LU`);
    expect(measured, 'programme measured (s)').to.be.at.least(30);
    expect(l.integrated, 'integrated loudness (LUFS)').to.be.within(-17, -15);
    expect(l.truePeak, 'true peak (dBTP)').to.be.at.most(-1);
  });
});
