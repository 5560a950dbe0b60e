// A performer whose page reloads mid-broadcast comes back as the same performer (the page keeps a resume token in
// its tab's sessionStorage): one track in the archive, continuous on the mix's timeline (silence for the gap), her
// bursts lined up with the mix before and after it, one performer row in the admin view, two sessions of one
// performer in the database.
import { expect } from 'chai';
import { io } from 'socket.io-client';
import type { App } from '../../services/app.ts';
import type { Manifest } from '../../services/archive/archiver.ts';
import type { AdminSnapshot } from '../../services/shared/admin.ts';
import { createStage, startTestApp, TEST_ADMIN_TOKEN, transition } from '../support/app.ts';
import { download, waitArchived } from '../support/archive.ts';
import { decodeToPcm, envelopeLag, SAMPLE_RATE, toneEnds, toneOnsets } from '../support/audio.ts';
import { BrowserSet } from '../support/browser.ts';
import { pulseWav, TempDir } from '../support/media.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('e2e: a performer who reloads the page resumes as the same performer', function () {
  this.timeout(180_000);
  let tmp: TempDir;
  let browsers: BrowserSet;
  let app: App;

  before(async () => {
    tmp = new TempDir();
    browsers = new BrowserSet(tmp);
    app = await startTestApp({ CDN_DIR: tmp.file('cdn') });
  });
  after(async () => {
    await browsers?.close();
    await app?.close();
    tmp?.remove();
  });

  it('one track, aligned with the mix within 50 ms before and after the reload; one row in the admin view', async () => {
    const stage = await createStage(app, 'Reload');
    const page = await browsers.performer(stage.performerUrl, 440, 'Ann', pulseWav(tmp, 440, { periodSec: 1, onSec: 0.4 }));
    const annId = await page.evaluate(() => window.stageDebug.performerId());
    await transition(app, stage.id, 'start');
    await sleep(12_000);

    // The reload: the page comes back by itself (its tab holds the resume token) as the same performer.
    const reloadedAt = performance.now();
    await page.reload();
    await page.waitForFunction(() => document.body.dataset['state'] === 'publishing', null, { timeout: 15_000 });
    const backMs = performance.now() - reloadedAt;
    expect(await page.evaluate(() => document.body.dataset['resumed']), 'the join resumed').to.equal('true');
    expect(await page.evaluate(() => window.stageDebug.performerId()), 'the same performer').to.equal(annId);
    console.log(`      back on stage ${Math.round(backMs)} ms after the reload began`);

    // The admin view has her once.
    const socket = io(`${app.url}/admin`, { transports: ['websocket'], reconnection: false, forceNew: true, auth: { token: TEST_ADMIN_TOKEN } });
    try {
      await sleep(1_500);
      const snap = await new Promise<AdminSnapshot>((resolve) => socket.once('snapshot', resolve));
      const row = snap.stages.find((s) => s.id === stage.id)!;
      expect(row.performers.map((p) => p.id), 'one performer row').to.deep.equal([annId]);
      expect(row.performers[0]).to.include({ displayName: 'Ann', publishing: true, onAir: true });
    } finally {
      socket.close();
    }
    await sleep(12_000);
    await transition(app, stage.id, 'stop');

    const { rec } = await waitArchived(app.url, stage.id, 60_000);
    const manifestFile = tmp.file('manifest.json');
    await download(app.url, rec, 'manifest', manifestFile);
    const manifest = JSON.parse((await import('node:fs')).readFileSync(manifestFile, 'utf8')) as Manifest;
    expect(manifest.performers.map((p) => p.performerId), 'one performer in the archive').to.deep.equal([annId]);
    expect(manifest.objects.filter((o) => o.kind === 'track').map((o) => o.performerId), 'one track').to.deep.equal([annId]);
    const sessions = await app.db.query<{ n: number }>('select count(*)::int as n from performer_sessions where performer_id = $1', [annId]);
    expect(sessions.rows[0]!.n, 'two sessions (before and after the reload) of one performer').to.equal(2);

    const m4a = tmp.file('audio.m4a');
    await download(app.url, rec, 'audio', m4a);
    const track = tmp.file('track.opus');
    await download(app.url, rec, `track:${annId}`, track);
    const mix = decodeToPcm(m4a);
    const pcm = decodeToPcm(track);
    expect(Math.abs(pcm.length - mix.length) / SAMPLE_RATE, 'the track spans the programme').to.be.below(0.5);

    // The reload shows in her track as one break in the bursts' 1 s rhythm (the page's microphone starts its file
    // again): her bursts are there on both sides of it, in the same track.
    // (A burst already sounding when the track began is cut: its onset is not one.)
    // Likewise after the reload: when the new page's stream starts during one of its bursts, that cut burst shows as
    // an onset less than a period before the next one; it belongs to the break (the rhythm resumes at the next).
    const onsets = toneOnsets(pcm, 440).filter((t) => t > 0.5);
    const irregular = onsets.slice(1).map((t, i) => ({ from: onsets[i]!, to: t })).filter((g) => Math.abs(g.to - g.from - 1) > 0.15);
    const breaks = irregular.reduce<{ from: number; to: number }[]>((out, g) => {
      const last = out.at(-1);
      if (last && last.to === g.from && g.to - g.from < 1 - 0.15) last.to = g.to;
      else out.push({ ...g });
      return out;
    }, []);
    expect(breaks, `one break in the rhythm (onsets ${onsets.map((t) => t.toFixed(2)).join(' ')})`).to.have.length(1);
    const gap = breaks[0]!;
    const before = onsets.filter((t) => t <= gap.from);
    const after = onsets.filter((t) => t >= gap.to);
    expect(before.length, 'bursts before the reload').to.be.at.least(8);
    expect(after.length, 'bursts after the reload').to.be.at.least(8);
    // Each burst, at its end (a stream's first packets decode quietly at its start: see test/archive/archive.test.ts),
    // in the mix against the track: cross-correlated on/off envelopes, searched ±250 ms.
    const ends = toneEnds(pcm, 440);
    const offsets = (from: number, to: number) =>
      ends.filter((e) => e > from && e < to).map((e) => Math.round(envelopeLag(pcm, mix, 440, e, 0.25, { before: 0.2, after: 0.1 }) * 1000));
    const beforeMs = offsets(0, gap.from + 0.5);
    const afterMs = offsets(gap.to, Infinity);
    expect(beforeMs.length, 'burst ends before the reload').to.be.at.least(8);
    expect(afterMs.length, 'burst ends after the reload').to.be.at.least(8);
    console.log(`      track vs mix offsets (ms) before the reload: ${beforeMs.join(',')}; after: ${afterMs.join(',')}; break ${gap.from.toFixed(2)}-${gap.to.toFixed(2)} s`);
    for (const [label, ms] of [['before', beforeMs], ['after', afterMs]] as const) {
      expect(Math.max(...ms.map(Math.abs)), `every burst ${label} the reload lines up within 50 ms`).to.be.below(50);
    }
  });
});
