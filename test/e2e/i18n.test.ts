// Every page in the reader's language: Chromium with a ja-JP locale sees the performer, listener and admin pages in
// Japanese, an en-US one in English (every translated element, the lines the scripts write, no text node left in the
// other language, dates through Intl), on a stage on air with a performer on it, so the pages show what they show
// during a show (the admin's performer rows and archive state, the listener playing); the switcher's choice is kept
// for the browser.
import { expect } from 'chai';
import type { Browser, Page } from 'playwright-core';
import type { App } from '../../services/app.ts';
import { en } from '../../services/pages/i18n/en.ts';
import { ja } from '../../services/pages/i18n/ja.ts';
import { createStage, startTestApp, TEST_ADMIN_TOKEN, transition } from '../support/app.ts';
import { joinAsPerformer, launchBrowser, launchPerformerBrowser } from '../support/browser.ts';
import { TempDir, toneWav } from '../support/media.ts';

type Cat = Record<string, string>;

/** Elements whose translated text is not what the catalogue says, and text nodes still in the other language. */
async function languageProblems(page: Page, cat: Cat, other: Cat): Promise<{ wrong: string[]; foreign: string[]; lang: string }> {
  return page.evaluate(
    ({ cat, other }) => {
      const wrong: string[] = [];
      for (const e of document.querySelectorAll<HTMLElement>('[data-i18n]')) {
        const key = e.dataset['i18n']!;
        // Elements the script rewrites later (a title, a state badge) are checked by their own test below.
        if (['stage-title', 'on-air', 'encoder-state', 'call-end'].includes(e.id) || e.tagName === 'TITLE') continue;
        if (e.textContent !== cat[key]) wrong.push(`${key}: ${e.textContent}`);
      }
      for (const e of document.querySelectorAll<HTMLElement>('[data-i18n-placeholder]')) {
        if ((e as HTMLInputElement).placeholder !== cat[e.dataset['i18nPlaceholder']!]) wrong.push(`placeholder ${e.dataset['i18nPlaceholder']}`);
      }
      const theirs = new Set(Object.keys(other).filter((k) => other[k] !== cat[k]).map((k) => other[k]!.trim()));
      const foreign: string[] = [];
      const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
      for (let n = walker.nextNode(); n; n = walker.nextNode()) {
        const text = n.textContent?.trim() ?? '';
        if (text && theirs.has(text)) foreign.push(text);
      }
      return { wrong, foreign, lang: document.documentElement.lang };
    },
    { cat, other },
  );
}

describe('e2e: pages in Japanese and English, by the browser\'s language', function () {
  this.timeout(120_000);
  const tmp = new TempDir();
  let app: App;
  let browser: Browser;
  let performerBrowser: Browser;
  let stage: { id: string; performerUrl: string };

  before(async () => {
    app = await startTestApp({ CDN_DIR: tmp.file('cdn') });
    stage = await createStage(app, '朝の番組');
    browser = await launchBrowser();
    // A performer on the stage (its own browser, in the machine's language) and the show on air.
    performerBrowser = await launchPerformerBrowser(toneWav(tmp, 440));
    await joinAsPerformer(performerBrowser, stage.performerUrl, 'Aki');
    await transition(app, stage.id, 'start');
  });
  after(async () => {
    await performerBrowser?.close();
    await browser?.close();
    await app?.close();
    tmp.remove();
  });

  for (const [locale, cat, other] of [['ja-JP', ja, en], ['en-US', en, ja]] as const) {
    it(`${locale.startsWith('en') ? 'an' : 'a'} ${locale} browser sees every page (performer, listener, admin) in ${cat === ja ? 'Japanese' : 'English'}`, async () => {
      const context = await browser.newContext({ locale });
      const code = locale.slice(0, 2);
      try {
        const performer = await context.newPage();
        await performer.goto(stage.performerUrl);
        await performer.waitForFunction(() => document.getElementById('stage-title')?.textContent === '朝の番組', null, { timeout: 10_000 });
        const p = await languageProblems(performer, cat, other);
        expect(p, 'performer page').to.deep.equal({ wrong: [], foreign: [], lang: code });
        expect(await performer.locator('#status').textContent()).to.equal(cat['performer.ready']);
        expect(await performer.locator('#on-air').textContent()).to.equal(cat['status.live']);
        expect(await performer.title()).to.equal(cat['performer.docTitle'].replace('{title}', '朝の番組'));
        // A message the script writes on a user's mistake: joining without a name.
        await performer.getByRole('button', { name: cat['performer.join'] }).click();
        expect(await performer.locator('#error').textContent()).to.equal(cat['performer.nameFirst']);

        const listener = await context.newPage();
        await listener.goto(stage.performerUrl.replace(/\/stage\/([^?]+)\?.*$/, '/listen/$1'));
        await listener.waitForFunction(() => document.body.dataset['state'] === 'playing', null, { timeout: 20_000 });
        await listener.waitForFunction(() => (document.getElementById('behind')?.textContent ?? '') !== '', null, { timeout: 10_000 });
        expect(await languageProblems(listener, cat, other), 'listener page').to.deep.equal({ wrong: [], foreign: [], lang: code });
        expect(await listener.locator('#status').textContent()).to.equal(cat['listener.playing']);
        expect(await listener.locator('#badge').textContent()).to.equal(cat['status.live']);
        expect(await listener.locator('#behind').textContent()).to.match(new RegExp(`^${cat['listener.behind'].replace('{seconds}', '[0-9.]+')}$`));

        const admin = await context.newPage();
        await admin.goto(`${app.url}/admin#token=${TEST_ADMIN_TOKEN}`);
        await admin.waitForFunction(() => document.body.dataset['state'] === 'live', null, { timeout: 10_000 });
        await admin.locator(`#stage-list tr[data-stage="${stage.id}"]`).waitFor({ timeout: 10_000 });
        await admin.locator('#totals div').first().waitFor({ timeout: 10_000 });
        // The show's own section: its performer's row (publishing, on air) and the archive's state.
        const section = admin.locator(`section.stage[data-stage-id="${stage.id}"]`);
        await section.locator('tbody tr').first().waitFor({ timeout: 10_000 });
        expect(await languageProblems(admin, cat, other), 'admin page').to.deep.equal({ wrong: [], foreign: [], lang: code });
        expect(await admin.locator('#status').textContent()).to.equal(cat['admin.connected']);
        const performerRow = (await section.locator('tbody tr').first().locator('td').allTextContents()).slice(0, 3);
        expect(performerRow).to.deep.equal(['Aki', '', cat['admin.p.onAir']]);
        expect(await section.textContent()).to.include(cat['shows.archive.recording']);
        const row = admin.locator(`#stage-list tr[data-stage="${stage.id}"]`);
        expect(await row.locator('.badge').textContent()).to.equal(cat['status.live']);
        expect(await row.getByRole('button').first().textContent()).to.equal(cat['shows.stop']);
        // The creation date through Intl: 2026/12/07 8:01 in Japanese, Dec 7, 2026, 8:01 AM in American English.
        const created = (await row.locator('td').nth(2).textContent()) ?? '';
        expect(created).to.match(code === 'ja' ? /^\d{4}\/\d{1,2}\/\d{1,2} \d{1,2}:\d{2}$/ : /^[A-Z][a-z]{2} \d{1,2}, \d{4}, \d{1,2}:\d{2}\s?[AP]M$/);
        // A form error written by the script, in the page's language.
        await admin.locator('#new-title').fill('x');
        await admin.locator('#new-rate').fill('1');
        await admin.locator('#new-currency').fill('E');
        await admin.locator('#create-stage').click();
        await admin.waitForFunction((want) => document.getElementById('shows-error')?.textContent === want, cat['shows.error.currencyCode'], { timeout: 5_000 });
      } finally {
        await context.close();
      }
    });
  }

  it('the switcher changes the language and the browser keeps the choice', async () => {
    const context = await browser.newContext({ locale: 'ja-JP' });
    try {
      const page = await context.newPage();
      await page.goto(stage.performerUrl);
      expect(await page.locator('#join').textContent()).to.equal(ja['performer.join']);
      expect(await page.locator('#lang option').allTextContents()).to.deep.equal(['English', '日本語']);
      await Promise.all([page.waitForEvent('load'), page.locator('#lang').selectOption('en')]);
      expect(await page.locator('#join').textContent()).to.equal(en['performer.join']);
      expect(await page.evaluate(() => document.documentElement.lang)).to.equal('en');
      // Another page of the same browser, later: still English, although the browser says Japanese.
      const other = await context.newPage();
      await other.goto(`${app.url}/admin`);
      expect(await other.locator('#connect').textContent()).to.equal(en['admin.connect']);
      expect(await other.locator('#lang').inputValue()).to.equal('en');
    } finally {
      await context.close();
    }
  });
});
