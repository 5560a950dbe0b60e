// Making and running a show from the browser, without curl: in the admin page a new stage is created (with a call-in
// rate), its performer link opened in a second browser that publishes a tone, the show started and stopped from the
// stage list, and the recording downloaded from it and decoded.
import { expect } from 'chai';
import type { Browser } from 'playwright-core';
import type { App } from '../../services/app.ts';
import { CallRepo } from '../../services/db/calls.ts';
import { startTestApp, TEST_ADMIN_TOKEN } from '../support/app.ts';
import { decodeToPcm, SAMPLE_RATE, toneDb } from '../support/audio.ts';
import { launchBrowser, launchPerformerBrowser } from '../support/browser.ts';
import { TempDir, toneWav } from '../support/media.ts';

describe('admin page: a show made, run and downloaded from the browser', function () {
  this.timeout(180_000);
  const tmp = new TempDir();
  let app: App;
  const browsers: Browser[] = [];

  before(async () => {
    app = await startTestApp({ CDN_DIR: tmp.file('cdn') });
  });
  after(async () => {
    await Promise.all(browsers.map((b) => b.close()));
    await app?.close();
    tmp.remove();
  });

  it('creates a stage with its links (the performer link marked secret), starts and stops it, and downloads the recording', async () => {
    const adminBrowser = await launchBrowser();
    browsers.push(adminBrowser);
    const context = await adminBrowser.newContext({ acceptDownloads: true });
    const admin = await context.newPage();
    admin.on('pageerror', (err) => process.stderr.write(`[admin page] ${err.message}\n`));
    await admin.goto(`${app.url}/admin#token=${TEST_ADMIN_TOKEN}`);
    await admin.waitForFunction(() => document.body.dataset['state'] === 'live', null, { timeout: 15_000 });
    await admin.locator('#no-shows').waitFor({ state: 'visible', timeout: 10_000 });

    // A bad currency: a clear error, and no stage made.
    await admin.getByLabel('Title').fill('Not made');
    await admin.getByLabel('Amount').fill('1');
    await admin.getByLabel('Currency').fill('E1');
    await admin.getByRole('button', { name: 'New stage' }).click();
    await admin.locator('#shows-error').filter({ hasText: /three-letter code/ }).waitFor({ timeout: 5_000 });
    expect((await app.stages.list()).stages, 'no stage made').to.have.length(0);

    await admin.getByLabel('Title').fill('Evening show');
    await admin.getByLabel('Amount').fill('0.50');
    await admin.getByLabel('Currency').fill('eur');
    await admin.getByRole('button', { name: 'New stage' }).click();
    const created = admin.locator('#created');
    await created.waitFor({ state: 'visible', timeout: 10_000 });
    expect(await admin.locator('#shows-error').textContent()).to.equal('');
    const stageId = (await created.getAttribute('data-stage'))!;
    const performerUrl = (await admin.locator('#created-performer').getAttribute('href'))!;
    expect(performerUrl).to.match(new RegExp(`^${app.url}/stage/${stageId}\\?key=[\\w-]{20,}$`));
    expect(await admin.locator('#created-listen').textContent()).to.equal(`${app.url}/listen/${stageId}`);
    expect(await admin.locator('#created-hls').textContent()).to.equal(`${app.url}/live/${stageId}/index.m3u8`);
    expect(await created.textContent()).to.match(/This link is a secret/);
    expect(await new CallRepo(app.db).rate(stageId), 'call rate, 0.50 EUR a minute').to.deep.equal({ currency: 'EUR', amountMinor: 50 });
    const row = admin.locator(`#stage-list tr[data-stage="${stageId}"]`);
    await row.waitFor({ timeout: 10_000 });
    expect(await row.getAttribute('data-status')).to.equal('idle');

    // The performer link, in a second browser with a 440 Hz microphone.
    const performerBrowser = await launchPerformerBrowser(toneWav(tmp, 440));
    browsers.push(performerBrowser);
    const performer = await performerBrowser.newPage();
    await performer.goto(`${performerUrl}&name=Ann&raw=1`);
    await performer.getByRole('button', { name: 'Join stage' }).click();
    await performer.waitForFunction(() => document.body.dataset['state'] === 'publishing', null, { timeout: 15_000 });
    await admin.locator(`#stage-list tr[data-stage="${stageId}"] td.num`).filter({ hasText: '1' }).waitFor({ timeout: 10_000 });

    await row.getByRole('button', { name: 'Start' }).click();
    await admin.locator(`#stage-list tr[data-stage="${stageId}"][data-status="live"]`).waitFor({ timeout: 15_000 });
    expect((await app.stages.view(stageId))?.status).to.equal('live');
    // The performer's page sees the show it did not start go on air.
    await performer.locator('#on-air[data-status="live"]').waitFor({ timeout: 10_000 });
    await new Promise((r) => setTimeout(r, 6_000));
    await admin.locator(`#stage-list tr[data-stage="${stageId}"]`).getByRole('button', { name: 'Stop' }).click();
    await admin.locator(`#stage-list tr[data-stage="${stageId}"][data-status="ended"]`).waitFor({ timeout: 15_000 });

    await admin.locator(`#stage-list tr[data-stage="${stageId}"]`).getByRole('button', { name: 'Recordings' }).click();
    const archived = admin.locator(`tr[data-recordings-of="${stageId}"] li[data-status="archived"]`);
    await archived.waitFor({ timeout: 60_000 });
    const [download] = await Promise.all([admin.waitForEvent('download'), archived.getByRole('link', { name: 'Download audio' }).click()]);
    const file = tmp.file('downloaded-audio');
    await download.saveAs(file);
    expect(download.suggestedFilename(), 'the archive names the file').to.match(/-audio\./);
    const pcm = decodeToPcm(file);
    const seconds = pcm.length / SAMPLE_RATE;
    expect(seconds, 'recording length (s)').to.be.within(4, 30);
    const mid = Math.floor(pcm.length / 2);
    expect(toneDb(pcm, 440, mid - SAMPLE_RATE, 2 * SAMPLE_RATE), '440 Hz in the downloaded audio').to.be.greaterThan(-30);
  });
});
