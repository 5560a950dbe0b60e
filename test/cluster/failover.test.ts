// Cluster mode (docs/cluster.md): a node dies mid-show (SIGKILL to its whole process group: the service, its media
// workers, its FFmpeg mixes) and the others continue its shows. Three real service processes on Debian's
// redis-server and a real PostgreSQL, each with its own port, RTC port range, CDN folder, spool and journal.
import fs from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import pg from 'pg';
import type { Browser, Page } from 'playwright-core';
import { parseMediaPlaylist } from '../../pipelines/hls/playlist.ts';
import { TEST_ADMIN_TOKEN } from '../support/app.ts';
import { decodeToPcm, toneDb } from '../support/audio.ts';
import { eventually, launchPerformerBrowser } from '../support/browser.ts';
import { segmentsInput } from '../support/hls.ts';
import { TempDir, toneWav } from '../support/media.ts';
import { findFreePort, startPostgres, type PostgresServer } from '../support/postgres.ts';
import { startRedis, type RedisServer } from '../support/redis.ts';
import { ServiceProcess } from '../support/service.ts';

const admin = { authorization: `Bearer ${TEST_ADMIN_TOKEN}`, 'content-type': 'application/json' };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** The bound: every stage of the dead node on air elsewhere, its performers publishing, within this. */
const RECOVERY_LIMIT_MS = 15_000;

async function api<T>(base: string, method: string, route: string, body?: unknown): Promise<{ status: number; body: T }> {
  const res = await fetch(`${base}${route}`, { method, headers: admin, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  return { status: res.status, body: (await res.json().catch(() => null)) as T };
}

interface Listened {
  mediaSequence: number;
  segments: { uri: string; duration: number; discontinuity: boolean; programDateTime: string | null }[];
  pcm: Float32Array | null;
}

/** The stage's live playlist through `base`, and its last `count` segments decoded (when they share one init). */
async function listen(base: string, stageId: string, dir: TempDir, count = 3): Promise<Listened> {
  const url = `${base}/live/${stageId}/`;
  const res = await fetch(`${url}index.m3u8`);
  if (res.status !== 200) return { mediaSequence: -1, segments: [], pcm: null };
  const pl = parseMediaPlaylist(await res.text());
  const last = pl.segments.slice(-count);
  let pcm: Float32Array | null = null;
  if (last.length === count && new Set(last.map((s) => s.map)).size === 1) {
    const local = dir.file(`l-${stageId}-${Date.now()}`);
    fs.mkdirSync(local, { recursive: true });
    for (const uri of new Set(last.flatMap((s) => [s.uri, ...(s.map ? [s.map] : [])]))) {
      const r = await fetch(`${url}${uri}`);
      if (r.status !== 200) return { mediaSequence: pl.mediaSequence, segments: pl.segments, pcm: null };
      fs.writeFileSync(path.join(local, uri), Buffer.from(await r.arrayBuffer()));
    }
    pcm = decodeToPcm(segmentsInput(local, last));
  }
  return { mediaSequence: pl.mediaSequence, segments: pl.segments, pcm };
}

/** Wall-clock time between the end of one segment and the start of another (their PROGRAM-DATE-TIMEs). */
function gapSeconds(a: { programDateTime: string | null; duration: number }, b: { programDateTime: string | null }): number {
  return (Date.parse(b.programDateTime!) - (Date.parse(a.programDateTime!) + a.duration * 1000)) / 1000;
}

describe('cluster: a node dies mid-show (three service processes)', function () {
  this.timeout(240_000);
  let tmp: TempDir;
  let redis: RedisServer;
  let pgs: PostgresServer;
  let db: pg.Client;
  const nodes: ServiceProcess[] = [];
  const envs: Record<string, string>[] = [];
  const ports: number[] = [];
  let browser: Browser | null = null;

  const nodeEnv = (i: number): Record<string, string> => ({
    REDIS_URL: redis.url,
    DATABASE_URL: pgs.url,
    NODE_ID: `node-${i}`,
    TLS: 'off',
    RTC_MIN_PORT: String(44000 + i * 1000),
    RTC_MAX_PORT: String(44000 + i * 1000 + 999),
    CDN_DIR: tmp.file(`cdn-${i}`),
    ARCHIVE_DIR: tmp.file('archive'),
    ARCHIVE_SPOOL_DIR: tmp.file(`spool-${i}`),
    JOURNAL_DIR: tmp.file(`journal-${i}`),
    TLS_DIR: tmp.file('tls'),
  });

  before(async () => {
    tmp = new TempDir();
    redis = await startRedis();
    pgs = await startPostgres();
    db = new pg.Client({ connectionString: pgs.url });
    await db.connect();
    for (let i = 1; i <= 3; i++) {
      envs.push(nodeEnv(i));
      ports.push(await findFreePort());
    }
  });

  after(async () => {
    await browser?.close();
    await Promise.all(nodes.map((n) => n.stop()));
    await db?.end();
    await redis?.close();
    await pgs?.stop();
    tmp?.remove();
  });

  it('SIGKILLed with 4 stages on air: within 15 s each is on air on a survivor, continuing its HLS; its browser performers publish again by themselves; usage is ticked once per stage and minute; the archives end complete once the node is back', async () => {
    // node-1 alone first, so that every stage is placed on it.
    nodes[0] = await ServiceProcess.start(ports[0]!, envs[0]!);
    const victim = nodes[0]!;
    const stages: { id: string; performerKey: string }[] = [];
    for (let i = 0; i < 4; i++) {
      const r = await api<{ id: string; performerKey: string }>(victim.url, 'POST', '/api/stages', { title: `Show ${i}` });
      expect(r.status).to.equal(201);
      stages.push(r.body);
      expect((await api(victim.url, 'POST', `/api/stages/${r.body.id}/start`, {})).status).to.equal(200);
    }
    nodes[1] = await ServiceProcess.start(ports[1]!, envs[1]!);
    nodes[2] = await ServiceProcess.start(ports[2]!, envs[2]!);
    const [, n2, n3] = nodes as [ServiceProcess, ServiceProcess, ServiceProcess];

    // A Chromium performer on two of them (one browser, one tab each), opened through node-1 (it serves them).
    browser = await launchPerformerBrowser(toneWav(tmp, 660));
    const pages: Page[] = [];
    for (const s of stages.slice(0, 2)) {
      const page = await browser.newPage();
      page.on('pageerror', (err) => process.stderr.write(`[page] ${err.message}\n`));
      await page.goto(`${victim.url}/stage/${s.id}?key=${encodeURIComponent(s.performerKey)}&name=Host&raw=1`);
      await page.getByRole('button', { name: 'Join stage' }).click();
      await page.waitForFunction(() => document.body.dataset['state'] === 'publishing', null, { timeout: 15_000 });
      pages.push(page);
    }
    // A listener page playing the first stage, opened on node-1 too.
    const listener = await browser.newPage();
    listener.on('pageerror', (err) => process.stderr.write(`[listener] ${err.message}\n`));
    await listener.goto(`${victim.url}/listen/${stages[0]!.id}`);
    await listener.waitForFunction(() => document.body.dataset['state'] === 'playing', null, { timeout: 30_000 });
    await sleep(4000);
    // What a listener of node-2 heard before: the tone, and where the playlist was.
    const before = await listen(n2.url, stages[0]!.id, tmp);
    expect(before.pcm, 'segments before the kill').to.not.equal(null);
    expect(toneDb(before.pcm!, 660), 'the performer before the kill (dBFS)').to.be.greaterThan(-30);
    const lastBefore = before.segments.at(-1)!;
    // Who performs on the two stages with a browser, by the database's open sessions.
    const performersOf = async (stageIds: string[]) =>
      (
        await db.query<{ stage_id: string; performer_id: string }>(
          'select stage_id, performer_id from performer_sessions where stage_id = any($1) and left_at is null order by stage_id',
          [stageIds],
        )
      ).rows;
    const browserStages = stages.slice(0, 2).map((s) => s.id);
    const performersBefore = await eventually(() => performersOf(browserStages), (r) => r.length === 2, 5000);
    expect(performersBefore.length, 'one open session on each stage with a browser').to.equal(2);

    const killedAt = performance.now();
    await victim.stop();
    // Every stage back on air on node-2 or node-3, in its new broadcast.
    const onAirElsewhere = async () => {
      const { rows } = await db.query<{ stage_id: string; node_id: string }>(
        `select stage_id, node_id from broadcasts where stage_id = any($1) and ended_at is null and node_id <> 'node-1'`,
        [stages.map((s) => s.id)],
      );
      return rows;
    };
    const moved = await eventually(onAirElsewhere, (r) => r.length === 4, RECOVERY_LIMIT_MS + 5000, 200);
    const movedMs = performance.now() - killedAt;
    expect(moved.length, 'stages on air on a survivor').to.equal(4);
    const perNode = ['node-2', 'node-3'].map((n) => moved.filter((r) => r.node_id === n).length);
    // The performers' pages, with no action by anyone: on a survivor, publishing.
    const publishing = await eventually(
      () => Promise.all(pages.map((p) => p.evaluate(() => document.body.dataset['state']).catch(() => 'navigating'))),
      (states) => states.every((s) => s === 'publishing'),
      RECOVERY_LIMIT_MS + 5000 - (performance.now() - killedAt),
      200,
    );
    const publishingMs = performance.now() - killedAt;
    // The same performers (their resume tokens are in Redis, carried by the pages to the new node): the same ids, one
    // open session each (the dead node's closed by the takeover).
    expect(await Promise.all(pages.map((p) => p.evaluate(() => document.body.dataset['resumed']))), 'the pages joined as the same performers').to.deep.equal(['true', 'true']);
    const performersAfter = await eventually(
      () => performersOf(browserStages),
      (r) => r.length === 2 && r.every((x, i) => x.performer_id === performersBefore[i]!.performer_id),
      5000,
    );
    expect(performersAfter, 'open sessions after the move: the same performer ids').to.deep.equal(performersBefore);
    // The listener page, with no action by anyone: on a survivor, playing.
    const playing = await eventually(
      () => listener.evaluate(() => document.body.dataset['state']).catch(() => 'navigating'),
      (st) => st === 'playing' && new URL(listener.url()).origin !== new URL(victim.url).origin,
      Math.max(1000, RECOVERY_LIMIT_MS + 5000 - (performance.now() - killedAt)),
      200,
    );
    const playingMs = performance.now() - killedAt;
    const origins = pages.map((p) => new URL(p.url()).origin);
    console.log(`      the listener page plays again after ${(playingMs / 1000).toFixed(1)} s, on ${new URL(listener.url()).origin}`);
    expect(playing, 'the listener page').to.equal('playing');
    expect(playingMs, 'the listener page playing again (ms)').to.be.at.most(RECOVERY_LIMIT_MS);
    console.log(`      node-1 killed: 4 stages on air again after ${(movedMs / 1000).toFixed(1)} s (node-2 ${perNode[0]}, node-3 ${perNode[1]}); both performers publishing after ${(publishingMs / 1000).toFixed(1)} s, on ${origins.join(', ')}`);
    expect(movedMs, 'all four on air elsewhere (ms)').to.be.at.most(RECOVERY_LIMIT_MS);
    expect(publishing, 'performers publishing').to.deep.equal(['publishing', 'publishing']);
    expect(publishingMs, 'performers publishing again (ms)').to.be.at.most(RECOVERY_LIMIT_MS);
    for (const o of origins) expect([n2.url, n3.url].map((u) => new URL(u).origin)).to.include(o);

    // The listener of node-2: the same address goes on after one DISCONTINUITY, numbers continuing, the tone back.
    await sleep(4000);
    const after = await eventually(() => listen(n2.url, stages[0]!.id, tmp), (l) => l.pcm !== null && toneDb(l.pcm, 660) > -30, 10_000, 500);
    expect(after.pcm, 'segments after the move').to.not.equal(null);
    expect(toneDb(after.pcm!, 660), 'the performer after the move (dBFS)').to.be.greaterThan(-30);
    const firstNew = after.segments.find((s) => s.discontinuity) ?? after.segments[0]!;
    expect(after.mediaSequence, 'segment numbers continue').to.be.greaterThan(Number(/(\d+)/.exec(lastBefore.uri)![1]));
    const { rows: cont } = await db.query<{ hls_first_msn: number; hls_first_cc: number }>(
      'select hls_first_msn, hls_first_cc from broadcasts where stage_id = $1 and ended_at is null',
      [stages[0]!.id],
    );
    expect(cont[0]!.hls_first_msn, 'the new playlist starts after the old one').to.be.greaterThan(Number(/(\d+)/.exec(lastBefore.uri)![1]));
    expect(cont[0]!.hls_first_cc, 'after one discontinuity').to.equal(1);
    expect(firstNew.discontinuity, 'the first new segment follows a DISCONTINUITY').to.equal(true);
    const gapS = gapSeconds(lastBefore, firstNew);
    console.log(`      listener's break (node death): programme time from the end of ${lastBefore.uri} (the last segment node-2 listed before the kill) to ${firstNew.uri} (the first after the DISCONTINUITY): ${gapS.toFixed(1)} s`);

    // Exactly once: each stage's on-air minutes, one row each, none missing between the first and the last.
    const { rows: ticks } = await db.query<{ stage_id: string; minute: Date; n: number }>(
      `select stage_id, minute, count(*)::int as n from usage_ticks where stage_id = any($1) and performer_id = '' group by stage_id, minute order by stage_id, minute`,
      [stages.map((s) => s.id)],
    );
    for (const s of stages) {
      const mine = ticks.filter((t) => t.stage_id === s.id);
      expect(mine.length, `${s.id} ticked`).to.be.greaterThan(0);
      expect(mine.every((t) => t.n === 1), `${s.id}: one tick per minute`).to.equal(true);
      const span = (mine.at(-1)!.minute.getTime() - mine[0]!.minute.getTime()) / 60_000 + 1;
      expect(mine.length, `${s.id}: no minute missing`).to.equal(span);
    }

    // The history of ownership: node-1's holding of each stage ended as expired (it died) when a survivor took it.
    const { rows: leases } = await db.query<{ stage_id: string; node_id: string; end_reason: string | null }>(
      'select stage_id, node_id, end_reason from stage_leases where stage_id = any($1) order by stage_id, taken_at, id',
      [stages.map((s) => s.id)],
    );
    for (const s of stages) {
      const h = leases.filter((l) => l.stage_id === s.id).map((l) => [l.node_id, l.end_reason]);
      expect(h.length, `${s.id}: holdings of its lease`).to.equal(2);
      expect(h[0], `${s.id}: node-1's holding`).to.deep.equal(['node-1', 'expired']);
      expect(h[1]![0], `${s.id}: the survivor's holding`).to.not.equal('node-1');
      expect(h[1]![1], `${s.id}: the survivor's holding is open`).to.equal(null);
    }

    // node-1 comes back: it finalizes and uploads the broadcasts it was recording, from its own disk.
    nodes[0] = await ServiceProcess.start(ports[0]!, envs[0]!);
    const { rows: interrupted } = await db.query<{ id: string }>(`select id from broadcasts where stage_id = any($1) and node_id = 'node-1'`, [stages.map((s) => s.id)]);
    expect(interrupted.length).to.equal(4);
    const archived = await eventually(
      async () => (await db.query<{ archive_status: string }>('select archive_status from broadcasts where id = any($1)', [interrupted.map((r) => r.id)])).rows,
      (r) => r.every((x) => x.archive_status === 'archived' || x.archive_status === 'failed'),
      60_000,
      500,
    );
    expect(archived.map((r) => r.archive_status), 'the interrupted broadcasts').to.deep.equal(['archived', 'archived', 'archived', 'archived']);
    const { rows: segs } = await db.query<{ n: number; uploaded: number }>(
      `select count(*)::int as n, count(*) filter (where state = 'uploaded')::int as uploaded from archive_objects where broadcast_id = any($1) and kind = 'segment'`,
      [interrupted.map((r) => r.id)],
    );
    expect(segs[0]!.n, 'segments archived').to.be.greaterThan(4 * 5);
    expect(segs[0]!.uploaded).to.equal(segs[0]!.n);
  });

  it('SIGTERM hands a node\'s stages over before it exits: each goes on on another node, its playlist continuing after one DISCONTINUITY', async () => {
    const leaving = nodes[1]!;
    const { rows: mine } = await db.query<{ stage_id: string }>(`select stage_id from broadcasts where node_id = 'node-2' and ended_at is null order by stage_id`);
    expect(mine.length, 'stages on air on node-2').to.be.greaterThan(0);
    const watchThrough = nodes[2]!.url;
    await sleep(2000);
    const before = await listen(watchThrough, mine[0]!.stage_id, tmp);
    const lastBefore = before.segments.at(-1)!;
    const t0 = performance.now();
    process.kill(leaving.pid, 'SIGTERM');
    const moved = await eventually(
      async () =>
        (await db.query<{ n: number }>(`select count(*)::int as n from broadcasts where stage_id = any($1) and ended_at is null and node_id <> 'node-2'`, [mine.map((m) => m.stage_id)])).rows[0]!.n,
      (n) => n === mine.length,
      15_000,
      100,
    );
    const movedMs = performance.now() - t0;
    expect(moved, 'every stage of node-2 on air elsewhere').to.equal(mine.length);
    const exit = await leaving.exited;
    expect(exit.code, 'node-2 exits cleanly').to.equal(0);
    expect(leaving.logged('shutdown: stages handed over to the other nodes').length).to.equal(1);
    const { rows: status } = await db.query<{ status: string }>('select status from stages where id = any($1)', [mine.map((m) => m.stage_id)]);
    expect(status.every((r) => r.status === 'live'), 'the stages stayed live').to.equal(true);
    await sleep(3000);
    const after = await eventually(() => listen(watchThrough, mine[0]!.stage_id, tmp), (l) => l.segments.some((x) => x.discontinuity), 10_000, 300);
    const firstNew = after.segments.find((x) => x.discontinuity)!;
    expect(firstNew, 'a DISCONTINUITY in the continuing playlist').to.not.equal(undefined);
    expect(Number(/(\d+)/.exec(firstNew.uri)![1])).to.be.greaterThan(Number(/(\d+)/.exec(lastBefore.uri)![1]));
    const gapS = gapSeconds(lastBefore, firstNew);
    console.log(`      node-2 drained by SIGTERM: ${mine.length} stage(s) on air elsewhere ${(movedMs / 1000).toFixed(1)} s after the signal; listener's break ${gapS.toFixed(1)} s of programme time (from the end of ${lastBefore.uri} to ${firstNew.uri})`);
  });
});
