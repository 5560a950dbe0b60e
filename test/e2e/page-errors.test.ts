// The performer page explains why it cannot join: wrong key, full stage, denied microphone.
import { expect } from 'chai';
import type { Browser, Page } from 'playwright-core';
import type { App } from '../../services/app.ts';
import { createStage, startTestApp } from '../support/app.ts';
import { joinAsPerformer, launchPerformerBrowser } from '../support/browser.ts';
import { TempDir, toneWav } from '../support/media.ts';

describe('e2e: performer page errors', function () {
  this.timeout(90_000);
  let app: App;
  let tmp: TempDir;
  let browser: Browser;
  let denying: Browser;

  before(async () => {
    tmp = new TempDir();
    app = await startTestApp({ MAX_PERFORMERS_PER_STAGE: '1' });
    browser = await launchPerformerBrowser(toneWav(tmp, 440));
    denying = await launchPerformerBrowser(toneWav(tmp, 440), { grantMic: false });
  });
  after(async () => {
    await browser?.close();
    await denying?.close();
    await app?.close();
    tmp?.remove();
  });

  async function tryJoin(b: Browser, url: string): Promise<{ page: Page; error: string; code: string | undefined }> {
    const page = await b.newPage();
    await page.goto(`${url}&name=Tester`);
    await page.getByRole('button', { name: 'Join stage' }).click();
    await page.waitForFunction(() => document.body.dataset['state'] === 'error', null, { timeout: 15_000 });
    return { page, error: (await page.locator('#error').textContent()) ?? '', code: await page.evaluate(() => document.body.dataset['error']) };
  }

  it('a wrong key is refused with a clear message', async () => {
    const stage = await createStage(app);
    const other = await createStage(app);
    const { error, code, page } = await tryJoin(browser, `${app.url}/stage/${stage.id}?key=${other.performerKey}`);
    expect(code).to.equal('UNAUTHORIZED');
    expect(error).to.match(/wrong key/i);
    expect(await page.getByRole('button', { name: 'Join stage' }).isEnabled(), 'can try again').to.equal(true);
    await page.close();
  });

  it('the performer past the limit is told the stage is full', async () => {
    const stage = await createStage(app);
    const first = await joinAsPerformer(browser, stage.performerUrl, 'First');
    const { error, code, page } = await tryJoin(browser, stage.performerUrl);
    expect(code).to.equal('STAGE_FULL');
    expect(error).to.match(/stage is full/i);
    await page.close();
    await first.close();
  });

  it('a denied microphone is explained', async () => {
    const stage = await createStage(app);
    const { error, code, page } = await tryJoin(denying, stage.performerUrl);
    expect(code).to.equal('MIC_DENIED');
    expect(error).to.match(/microphone access was denied/i);
    const view = (await (await fetch(`${app.url}/api/stages/${stage.id}`)).json()) as { performers: unknown[] };
    expect(view.performers, 'nobody joined').to.have.length(0);
    await page.close();
  });
});
