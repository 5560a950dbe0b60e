// The whole path: browser performers → mediasoup → FFmpeg mix → HLS → a listener page playing it through hls.js.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { expect } from 'chai';
import type { Page } from 'playwright-core';
import type { App } from '../../services/app.ts';
import { BroadcastRepo, UsageRepo } from '../../services/db/broadcasts.ts';
import { createStage, startTestApp } from '../support/app.ts';
import { BrowserSet, eventually, levelsAt } from '../support/browser.ts';
import { decodeToPcm, toneDb } from '../support/audio.ts';
import { PlaylistWatcher } from '../support/hls.ts';
import { TempDir } from '../support/media.ts';

async function listenerHears(page: Page, freqs: number[]): Promise<number[]> {
  return levelsAt(await page.evaluate(() => window.listenerDebug.spectrum()), freqs);
}

describe('e2e: broadcast to a listener', function () {
  this.timeout(120_000);
  let app: App;
  let tmp: TempDir;
  let browsers: BrowserSet;

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

  it('two performers start a broadcast; a listener on hls.js hears both tones; the live playlist is AAC', async () => {
    const stage = await createStage(app, 'Duet');
    const pages: Page[] = [];
    for (const [freq, name] of [[440, 'Ann'], [660, 'Bob']] as const) pages.push(await browsers.performer(stage.performerUrl, freq, name));
    await pages[0]!.getByRole('button', { name: 'Start broadcast' }).click();
    for (const p of pages) await p.waitForFunction(() => document.body.dataset['stageStatus'] === 'live', null, { timeout: 10_000 });

    const view = (await (await fetch(`${app.url}/api/stages/${stage.id}`)).json()) as { status: string; hlsUrl: string };
    expect(view.status).to.equal('live');

    const listener = await browsers.listener();
    await listener.goto(`${app.url}/listen/${stage.id}`);
    await listener.waitForFunction(() => document.body.dataset['state'] === 'playing', null, { timeout: 30_000 });
    expect(await listener.evaluate(() => document.body.dataset['engine'])).to.equal('hls.js');
    const levels = await eventually(() => listenerHears(listener, [440, 660, 1500]), ([a, b]) => a! > -60 && b! > -60, 20_000);
    expect(levels[0], `listener hears Ann: ${levels}`).to.be.above(-60);
    expect(levels[1], `listener hears Bob: ${levels}`).to.be.above(-60);
    expect(levels[2]!, 'and not noise at 1500 Hz').to.be.below(Math.min(levels[0]!, levels[1]!) - 25);

    const probe = await promisify(execFile)('ffprobe', ['-v', 'error', '-show_entries', 'stream=codec_name,profile,sample_rate,channels', '-of', 'json', view.hlsUrl], { timeout: 20_000 });
    const stream = (JSON.parse(probe.stdout) as { streams: Record<string, unknown>[] }).streams[0]!;
    expect(stream).to.include({ codec_name: 'aac', profile: 'LC', sample_rate: '48000', channels: 2 });

    // The programme itself carries both performers at full level (each alone in its slot).
    const watcher = new PlaylistWatcher(app.registry.get(stage.id)!.broadcast!.mixer.playlistPath);
    await watcher.waitFor((w) => w.segments.length >= 2, 10_000);
    watcher.stop();
    const pcm = decodeToPcm(watcher.concatInput(watcher.segments.length - 2));
    expect(toneDb(pcm, 440), 'Ann in the mix').to.be.above(-25);
    expect(toneDb(pcm, 660), 'Bob in the mix').to.be.above(-25);

    // Usage and the broadcast's performers are recorded.
    expect(await app.usage.tick()).to.equal(3);
    const [broadcast] = await new BroadcastRepo(app.db).listForStage(stage.id);
    const onAir = await new BroadcastRepo(app.db).listPerformers(broadcast!.id);
    expect(onAir.map((p) => p.displayName).sort()).to.deep.equal(['Ann', 'Bob']);
    expect((await new UsageRepo(app.db).list(broadcast!.id)).length).to.equal(3);

    // A performer marks a chapter from the page: it lands on the timeline, placed where her audio is.
    await pages[0]!.getByLabel('Title').fill('Opening song');
    await pages[0]!.getByRole('button', { name: 'Mark now' }).click();
    await pages[0]!.waitForFunction(() => document.getElementById('event-status')?.dataset['eventId'], null, { timeout: 5_000 });
    const statusText = await pages[0]!.locator('#event-status').textContent();
    expect(statusText).to.match(/^Chapter “Opening song” at \d+\.\d s into the broadcast$/);
    const { events } = (await (await fetch(`${app.url}/api/stages/${stage.id}/events`)).json()) as { events: { type: string; mediaTime: number; data: { title?: string; name?: string } }[] };
    const chapter = events.find((e) => e.type === 'chapter');
    expect(chapter?.data).to.deep.include({ title: 'Opening song', name: 'Ann' });
    expect(chapter!.mediaTime).to.be.closeTo(app.registry.get(stage.id)!.broadcast!.mixer.programmeSeconds(), 2);

    await pages[1]!.getByRole('button', { name: 'Stop broadcast' }).click();
    await pages[0]!.waitForFunction(() => document.body.dataset['stageStatus'] === 'ended', null, { timeout: 10_000 });
    await listener.waitForFunction(() => document.body.dataset['state'] === 'ended', null, { timeout: 30_000 });
  });
});
