// Browser performers on one stage hear each other through mediasoup: real Chromium, fake mics playing tones.
import { expect } from 'chai';
import type { App } from '../../services/app.ts';
import { createStage, startTestApp, transition } from '../support/app.ts';
import { BrowserSet, eventually, hearsAt } from '../support/browser.ts';
import { TempDir } from '../support/media.ts';

/**
 * A tone counts as heard above HEARD_DB (present tones measure -40 to -56 dB here), and as absent when it is at least
 * ABSENT_BELOW dB under the loudest tone heard (absent ones measure 44 to 70 dB under it: Opus coding noise).
 */
const HEARD_DB = -60;
const ABSENT_BELOW = 30;
const absent = (levels: number[], i: number) => levels[i]! < Math.max(...levels) - ABSENT_BELOW;

describe('e2e: performers hear each other', function () {
  this.timeout(120_000);
  let app: App;
  let tmp: TempDir;
  let browsers: BrowserSet;

  before(async () => {
    tmp = new TempDir();
    browsers = new BrowserSet(tmp);
    app = await startTestApp();
  });

  after(async () => {
    await browsers?.close();
    await app?.close();
    tmp?.remove();
  });

  it('two performers hear each other and not themselves; a third hears both; a leave is announced', async () => {
    const stage = await createStage(app, 'Tones');
    const a = await browsers.performer(stage.performerUrl, 440, 'Ann');
    const b = await browsers.performer(stage.performerUrl, 660, 'Bob');

    const aHears = await eventually(() => hearsAt(a, [440, 660]), ([, f660]) => f660! > HEARD_DB, 10_000);
    const bHears = await eventually(() => hearsAt(b, [440, 660]), ([f440]) => f440! > HEARD_DB, 10_000);
    expect(aHears[1], 'Ann hears Bob (660 Hz)').to.be.greaterThan(HEARD_DB);
    expect(absent(aHears, 0), `Ann does not hear herself (440 Hz): ${aHears}`).to.equal(true);
    expect(bHears[0], 'Bob hears Ann (440 Hz)').to.be.greaterThan(HEARD_DB);
    expect(absent(bHears, 1), `Bob does not hear himself (660 Hz): ${bHears}`).to.equal(true);

    const c = await browsers.performer(stage.performerUrl, 880, 'Cat');
    const cHears = await eventually(() => hearsAt(c, [440, 660, 880]), ([x, y]) => x! > HEARD_DB && y! > HEARD_DB, 10_000);
    expect(cHears[0], 'Cat hears Ann').to.be.greaterThan(HEARD_DB);
    expect(cHears[1], 'Cat hears Bob').to.be.greaterThan(HEARD_DB);
    expect(absent(cHears, 2), `Cat does not hear herself: ${cHears}`).to.equal(true);
    await eventually(() => hearsAt(a, [880]), ([f]) => f! > HEARD_DB, 10_000);
    expect((await hearsAt(a, [880]))[0], 'Ann hears Cat once she joins').to.be.greaterThan(HEARD_DB);

    const view = (await (await fetch(`${app.url}/api/stages/${stage.id}`)).json()) as { performers: { displayName: string }[] };
    expect(view.performers.map((p) => p.displayName).sort()).to.deep.equal(['Ann', 'Bob', 'Cat']);

    await a.getByRole('button', { name: 'Leave' }).click();
    await a.waitForFunction(() => document.body.dataset['state'] === 'idle');
    for (const [page, name] of [[b, 'Bob'], [c, 'Cat']] as const) {
      const names = await eventually(
        () => page.evaluate(() => window.stageDebug.remotes().map((r) => r.displayName)),
        (n) => !n.includes('Ann'),
        5000,
      );
      expect(names, `${name} is told Ann left`).to.not.include('Ann');
      expect(await page.locator('#performers li', { hasText: 'Ann' }).count(), `${name}'s list drops Ann`).to.equal(0);
    }
    const bAfter = await eventually(() => hearsAt(b, [440, 880]), (l) => absent(l, 0), 5000);
    expect(absent(bAfter, 0), `Ann is no longer heard: ${bAfter}`).to.equal(true);
    expect(bAfter[1], 'Cat is still heard').to.be.greaterThan(HEARD_DB);
  });

  it("the performer page shows the stage's title and its real on-air state from the first paint, before joining", async () => {
    const stage = await createStage(app, 'Morning show');
    const read = async () => {
      const page = await browsers.listener();
      await page.goto(stage.performerUrl);
      await page.waitForFunction(() => document.getElementById('stage-title')?.textContent === 'Morning show', null, { timeout: 10_000 });
      const shown = { title: await page.locator('#stage-title').textContent(), onAir: await page.locator('#on-air').textContent(), state: await page.evaluate(() => document.body.dataset['state']) };
      await page.close();
      return shown;
    };
    expect(await read(), 'an idle stage, nobody joined').to.deep.equal({ title: 'Morning show', onAir: 'Off air', state: 'idle' });
    await browsers.performer(stage.performerUrl, 440, 'Ann');
    await transition(app, stage.id, 'start');
    expect(await read(), 'the stage on air, the page not joined').to.deep.equal({ title: 'Morning show', onAir: 'On air', state: 'idle' });
  });
});
