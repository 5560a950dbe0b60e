// The speaking detector on speech. Its leads were fitted on tone bursts (timeline.test.ts; END_LEAD_S since refitted
// on some of these voices, see its comment), so here they are judged on other data: espeak-ng sentences with pauses,
// four voices at 140-200 words a minute, two Chromium performers per broadcast speaking in turns and over each other
// (voice processing off: the page's raw=1, as in the tone test). Truth is the speech in each performer's own archived
// track; the detector's intervals are timeline.json's.
import fs from 'node:fs';
import { expect } from 'chai';
import type { Browser } from 'playwright-core';
import type { App } from '../../services/app.ts';
import { END_LEAD_S, ONSET_LEAD_S, SPEAKING_HANGOVER_S } from '../../services/broadcast/liveTimeline.ts';
import type { TimelineFile } from '../../services/timeline/files.ts';
import { createStage, startTestApp, transition } from '../support/app.ts';
import { download, waitArchived } from '../support/archive.ts';
import { decodeToPcm } from '../support/audio.ts';
import { joinAsPerformer, launchPerformerBrowser } from '../support/browser.ts';
import { TempDir } from '../support/media.ts';
import { agreement, edgeErrors, median, speechActivity, speechWav, windowLevels, type SpeechScript } from '../support/speech.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** On air this long: ~10 sentences and their pauses per performer. */
const BROADCAST_MS = 45_000;
/**
 * Ground truth: a 20 ms window of a performer's track is speech when its RMS is within this many dB of the track's
 * speech level (its 90th percentile, -18 to -21 dBFS here). Pauses in the tracks sit near -100 dBFS and few windows lie
 * between the two (the edges of phrases): any limit from 25 to 45 dB gives the same truth within ~20 ms at the edges.
 */
const VAD_WITHIN_DB = 40;
/*
 * The limits, fixed before the first run (from what tones gave and the observer's 100 ms reports, not from these runs)
 * and unchanged since:
 * - agreement above 85 % of windows, the tone test's limit: phrases last 1.5-4 s, so an error of ~0.15 s at each
 *   edge costs under 15 %;
 * - medians of the onset and offset errors within ±0.15 s: one and a half of the observer's intervals. A lead off by
 *   more is wrong for speech, not noise.
 * With END_LEAD_S at the tones' 0.05, 3 of the first 4 runs failed: 6 of their 16 medians of offset error were beyond
 * -0.15 s (the intervals ended early). See the comment at END_LEAD_S for its refit on some voices, checked on the others.
 */
const MIN_AGREEMENT = 0.85;
const MAX_MEDIAN_EDGE_S = 0.15;

/** Pauses after each sentence, seconds: some bridged by the hangover (< 0.6 s), some not. */
const PAUSES_A = [0.4, 1.5, 0.3, 3.0, 0.9, 0.5, 2.2, 4.0, 0.7, 1.2];
const PAUSES_B = [3.5, 0.5, 1.0, 0.35, 2.0, 5.0, 0.8, 0.45, 1.8, 2.6];
const withPauses = (texts: string[], pauses: number[]): [string, number][] => texts.map((t, i) => [t, pauses[i % pauses.length]!]);

const SCRIPTS: Record<string, SpeechScript> = {
  'en 160': {
    voice: 'en', wpm: 160, leadSec: 0.5,
    sentences: withPauses([
      'Good evening, and welcome to the late show.',
      'Tonight we talk about music, old records, and the people who made them.',
      'First, the news.',
      'The river rose again this week, and the bridge on the north road is closed until Friday.',
      'Drivers should take the long way round, through the village.',
      'In sport, the home team won, for the third time this season.',
      'Now, the weather.',
      'Rain in the morning, clearing later, with a cold wind from the west.',
      'Tomorrow looks brighter, at least in the south.',
      'Stay with us, there is plenty more to come.',
    ], PAUSES_A),
  },
  'de 180': {
    voice: 'de', wpm: 180, leadSec: 2.5,
    sentences: withPauses([
      'Guten Abend, und herzlich willkommen.',
      'Heute sprechen wir über alte Platten, und über die Menschen, die sie gemacht haben.',
      'Zuerst die Nachrichten.',
      'Der Fluss ist wieder gestiegen, und die Brücke im Norden bleibt bis Freitag gesperrt.',
      'Autofahrer sollten den Umweg durch das Dorf nehmen.',
      'Im Sport hat die Heimmannschaft gewonnen, zum dritten Mal in dieser Saison.',
      'Und nun das Wetter.',
      'Morgens Regen, später freundlicher, mit kaltem Wind aus Westen.',
      'Morgen wird es heller, zumindest im Süden.',
      'Bleiben Sie dran, es kommt noch mehr.',
    ], PAUSES_B),
  },
  'en-us 140': {
    voice: 'en-us', wpm: 140, leadSec: 1.0,
    sentences: withPauses([
      'Hi everyone, thanks for tuning in.',
      'We have a great guest today, a drummer who has played on more records than she can count.',
      'Welcome to the show.',
      'So, tell me, how did it all start?',
      'Well, my father had a band, and I used to sit behind the drums after practice.',
      'That sounds wonderful.',
      'It was loud, I can tell you that, and the neighbors were not happy.',
      'And your first real gig?',
      'A wedding, believe it or not, in a barn, in the middle of winter.',
      'We will hear more about that, right after this song.',
    ], PAUSES_A),
  },
  'fr 200': {
    voice: 'fr', wpm: 200, leadSec: 3.0,
    sentences: withPauses([
      'Bonsoir à tous, et bienvenue dans notre émission.',
      'Ce soir, nous parlons de musique, de vieux disques, et de ceux qui les ont faits.',
      "D'abord, les nouvelles.",
      'La rivière a encore monté cette semaine, et le pont du nord reste fermé jusqu’à vendredi.',
      'Les automobilistes passeront par le village.',
      "Côté sport, l'équipe locale a gagné, pour la troisième fois cette saison.",
      'Et maintenant, la météo.',
      "De la pluie le matin, des éclaircies l'après-midi, avec un vent froid venu de l'ouest.",
      'Demain, ce sera plus lumineux, au moins dans le sud.',
      'Restez avec nous, la suite arrive.',
    ], PAUSES_B),
  },
};

interface Figures {
  name: string;
  voice: string;
  agreement: number;
  windows: number;
  medianOnset: number;
  medianOffset: number;
  groups: number;
  merged: number;
  split: number;
  missed: number;
  falseAlarms: number;
  speechLevelDb: number;
  onsets: number[];
  offsets: number[];
}

const ms = (s: number) => `${s >= 0 ? '+' : ''}${Math.round(s * 1000)} ms`;

describe('timeline: speaking intervals on speech (espeak-ng)', function () {
  this.timeout(240_000);
  let tmp: TempDir;
  let app: App;
  const all: Figures[] = [];

  before(async () => {
    tmp = new TempDir();
    app = await startTestApp({ CDN_DIR: tmp.file('cdn') });
  });
  after(async () => {
    await app?.close();
    tmp?.remove();
    if (all.length > 0) {
      console.log(`      speech vs detector (leads: onset ${ONSET_LEAD_S} s, end ${END_LEAD_S} s; hangover ${SPEAKING_HANGOVER_S} s):`);
      for (const f of all) {
        console.log(`        ${f.name} (${f.voice}): agreement ${(f.agreement * 100).toFixed(1)} % of ${f.windows}; median onset ${ms(f.medianOnset)}, offset ${ms(f.medianOffset)} over ${f.groups} (merged ${f.merged}, split ${f.split}, missed ${f.missed}, false ${f.falseAlarms}); speech at ${f.speechLevelDb.toFixed(1)} dBFS`);
      }
      if (process.env['SPEECH_FIGURES']) fs.appendFileSync(process.env['SPEECH_FIGURES'], all.map((f) => JSON.stringify(f)).join('\n') + '\n');
    }
  });

  async function broadcast(title: string, performers: [name: string, voice: string][]): Promise<Figures[]> {
    const stage = await createStage(app, title);
    const browsers: Browser[] = [];
    try {
      for (const [name, voice] of performers) {
        const browser = await launchPerformerBrowser(speechWav(tmp, voice.replace(/\W/g, '_'), SCRIPTS[voice]!));
        browsers.push(browser);
        await joinAsPerformer(browser, stage.performerUrl, name);
      }
      await transition(app, stage.id, 'start');
      await sleep(BROADCAST_MS);
      await transition(app, stage.id, 'stop');
    } finally {
      await Promise.all(browsers.map((b) => b.close()));
    }
    const { rec } = await waitArchived(app.url, stage.id, 30_000);
    const tl = tmp.file(`${stage.id}-timeline.json`);
    await download(app.url, rec, 'timeline', tl);
    const timeline = JSON.parse(fs.readFileSync(tl, 'utf8')) as TimelineFile;
    const mf = tmp.file(`${stage.id}-manifest.json`);
    await download(app.url, rec, 'manifest', mf);
    const manifest = JSON.parse(fs.readFileSync(mf, 'utf8')) as { performers: { performerId: string; displayName: string }[] };

    const figures: Figures[] = [];
    for (const [name, voice] of performers) {
      const pid = manifest.performers.find((p) => p.displayName === name)!.performerId;
      const file = tmp.file(`${stage.id}-${name}.opus`);
      await download(app.url, rec, `track:${pid}`, file);
      const levels = windowLevels(decodeToPcm(file));
      const { speechLevelDb, intervals: truth } = speechActivity(levels, { withinDb: VAD_WITHIN_DB, bridgeSec: SPEAKING_HANGOVER_S });
      const detected = timeline.speaking.find((s) => s.performerId === pid)?.intervals ?? [];
      // The first and last second are left out: the track and the detector both start and stop there.
      const from = 1;
      const to = timeline.durationSeconds - 1;
      const a = agreement(truth, detected, from, to);
      const e = edgeErrors(truth, detected, from, to);
      if (process.env['DEBUG_SPEAKING']) console.log(`      ${name} truth ${JSON.stringify(truth)}\n      ${name} detected ${JSON.stringify(detected)}`);
      // SPEECH_FIGURES=<file>: each run's figures go there, and the window levels and intervals to <file>.raw, to be
      // analysed across runs (another VAD limit, another lead) without running again.
      if (process.env['SPEECH_FIGURES']) fs.appendFileSync(`${process.env['SPEECH_FIGURES']}.raw`, JSON.stringify({ name, voice, durationSeconds: timeline.durationSeconds, detected, levels: levels.map((l) => Math.round(Math.max(l, -200) * 10) / 10) }) + '\n');
      figures.push({
        name, voice, agreement: a.share, windows: a.windows, medianOnset: median(e.onsets), medianOffset: median(e.offsets), groups: e.onsets.length,
        merged: e.merged, split: e.split, missed: e.missed, falseAlarms: e.falseAlarms, speechLevelDb,
        onsets: e.onsets.map((x) => Math.round(x * 1000) / 1000), offsets: e.offsets.map((x) => Math.round(x * 1000) / 1000),
      });
    }
    all.push(...figures);
    return figures;
  }

  function check(figures: Figures[]): void {
    for (const f of figures) {
      const what = `${f.name} (${f.voice})`;
      expect(f.groups, `${what}: speech runs matched to speaking intervals`).to.be.at.least(5);
      expect(f.agreement, `${what}: share of 20 ms windows where the detector agrees with the speech`).to.be.above(MIN_AGREEMENT);
      expect(Math.abs(f.medianOnset), `${what}: median onset error (s)`).to.be.at.most(MAX_MEDIAN_EDGE_S);
      expect(Math.abs(f.medianOffset), `${what}: median offset error (s)`).to.be.at.most(MAX_MEDIAN_EDGE_S);
    }
  }

  it('English (en, 160 wpm) and German (de, 180 wpm): intervals agree with the speech in each own track', async () => {
    check(await broadcast('Speech 1', [['Ann', 'en 160'], ['Bob', 'de 180']]));
  });

  it('American English (en-us, 140 wpm) and French (fr, 200 wpm): the same', async () => {
    check(await broadcast('Speech 2', [['Cleo', 'en-us 140'], ['Dan', 'fr 200']]));
  });
});
