// Graceful shutdown. In process: draining refuses new work. Then the real service (services/main.ts) as a child process
// on PostgreSQL and an S3 server, a Chromium performer on air, and SIGTERM to its PID: the broadcast ends cleanly
// (ENDLIST, performers told, broadcast row ended, archive finalized), uploads get the grace, the process exits 0, and
// what could not be uploaded is finished by the next start.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { expect } from 'chai';
import pg from 'pg';
import type { Page } from 'playwright-core';
import { parseMediaPlaylist } from '../../pipelines/hls/playlist.ts';
import { PLAYLIST_NAME } from '../../pipelines/mixer/ffmpegArgs.ts';
import type { App } from '../../services/app.ts';
import { openStore, type ObjectStore } from '../../services/archive/store.ts';
import { createLogger } from '../../services/logger.ts';
import { TEST_ADMIN_TOKEN, createStage, startTestApp, transition } from '../support/app.ts';
import { download, verifyArchive, waitArchived } from '../support/archive.ts';
import { decodeToPcm, toneDb } from '../support/audio.ts';
import { BrowserSet, eventually } from '../support/browser.ts';
import { connectClient, type TestClient } from '../support/client.ts';
import { TempDir } from '../support/media.ts';
import { createDatabase, findFreePort, startPostgres, type PostgresServer } from '../support/postgres.ts';
import { startS3, type S3Server } from '../support/s3.ts';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const admin = { authorization: `Bearer ${TEST_ADMIN_TOKEN}`, 'content-type': 'application/json' };
const TONE = 440;

/** A performer connection without media that records what the server tells it. */
async function watchingPerformer(baseUrl: string, stageId: string, key: string): Promise<{ client: TestClient; events: string[] }> {
  const client = await connectClient(baseUrl);
  const events: string[] = [];
  client.socket.on('stageStatus', ({ status }: { status: string }) => events.push(`stageStatus:${status}`));
  client.socket.on('disconnect', (reason) => events.push(`disconnect:${reason}`));
  const joined = await client.request('join', { stageId, key, displayName: 'Watcher' });
  expect(joined.ok, JSON.stringify(joined)).to.equal(true);
  return { client, events };
}

/**
 * The performer heard the broadcast end, then lost its connection: the server's disconnect packet, or the connection
 * closing under it when the process closes every connection at once (the packet is not always flushed first).
 */
function expectToldAndDisconnected(events: string[]): void {
  expect(events.slice(0, 2), 'told the broadcast ended').to.deep.equal(['stageStatus:live', 'stageStatus:ended']);
  expect(events.slice(2), 'then disconnected').to.have.length(1);
  expect(events[2]).to.match(/^disconnect:(io server disconnect|transport close)$/);
}

describe('shutdown: draining (in process)', function () {
  this.timeout(60_000);
  let app: App;
  let tmp: TempDir;
  const clients: TestClient[] = [];

  before(async () => {
    tmp = new TempDir();
    app = await startTestApp({ MEDIASOUP_WORKERS: '1', CDN_DIR: tmp.file('cdn') });
  });
  after(async () => {
    for (const c of clients) c.close();
    await app?.close();
    tmp?.remove();
  });

  it('refuses joins, new stages and going on air with UNAVAILABLE, says draining on /healthz, then ends the broadcast and tells its performers', async () => {
    const live = await createStage(app, 'On air at shutdown');
    const idle = await createStage(app, 'Idle at shutdown');
    const { client, events } = await watchingPerformer(app.url, live.id, live.performerKey);
    clients.push(client);
    await transition(app, live.id, 'start');
    const playlist = path.join(app.stages.links.hlsDir(live.id), PLAYLIST_NAME);
    await eventually(async () => (fs.existsSync(playlist) ? parseMediaPlaylist(fs.readFileSync(playlist, 'utf8')).segments.length : 0), (n) => n >= 2, 15_000, 100);
    expect((await fetch(`${app.url}/healthz`)).status).to.equal(200);

    app.drain();

    const health = await fetch(`${app.url}/healthz`);
    expect(health.status, 'a load balancer stops sending').to.equal(503);
    expect(((await health.json()) as { status: string }).status).to.equal('draining');

    const late = await connectClient(app.url);
    clients.push(late);
    const join = await late.request('join', { stageId: idle.id, key: idle.performerKey, displayName: 'Late' });
    expect(join.ok ? null : join.error).to.deep.equal({ code: 'UNAVAILABLE', message: 'the server is shutting down' });

    const create = await fetch(`${app.url}/api/stages`, { method: 'POST', headers: admin, body: JSON.stringify({ title: 'Too late' }) });
    expect(create.status).to.equal(503);
    expect(((await create.json()) as { error: { code: string } }).error.code).to.equal('UNAVAILABLE');
    const start = await fetch(`${app.url}/api/stages/${idle.id}/start`, { method: 'POST', headers: admin, body: '{}' });
    expect(start.status).to.equal(503);
    expect(((await start.json()) as { error: { code: string; message: string } }).error).to.deep.equal({ code: 'UNAVAILABLE', message: 'the server is shutting down' });
    const viaSocket = await client.request('startBroadcast', {});
    expect(viaSocket.ok ? null : viaSocket.error.code, 'going on air over Socket.IO too').to.equal('UNAVAILABLE');

    // What is on air goes on until the shutdown proper: the live stage is still live, reads still work.
    const view = (await (await fetch(`${app.url}/api/stages/${live.id}`)).json()) as { status: string };
    expect(view.status).to.equal('live');
    expect(events).to.deep.equal(['stageStatus:live']);

    await app.close();
    await eventually(async () => events.length, (n) => n >= 3, 5_000, 20);
    const text = fs.readFileSync(playlist, 'utf8');
    expect(text).to.match(/#EXT-X-ENDLIST\s*$/);
    expectToldAndDisconnected(events);
  });
});

interface LogLine {
  level: string;
  message: string;
  [k: string]: unknown;
}

interface Service {
  child: ChildProcess;
  logs: LogLine[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
}

describe('shutdown: SIGTERM to the real service (PostgreSQL, S3)', function () {
  this.timeout(240_000);
  let tmp: TempDir;
  let pgServer: PostgresServer;
  let s3: S3Server;
  let store: ObjectStore;
  let browsers: BrowserSet;
  const children: ChildProcess[] = [];
  const clients: TestClient[] = [];
  let dbCount = 0;

  before(async () => {
    tmp = new TempDir();
    browsers = new BrowserSet(tmp);
    [pgServer, s3] = await Promise.all([startPostgres(), startS3()]);
    store = openStore(s3.config(), createLogger('error'));
  });
  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    await browsers.close();
    await s3.resume();
  });
  after(async () => {
    for (const c of children) {
      if (c.exitCode === null && c.signalCode === null) {
        const exited = new Promise((r) => c.once('exit', r));
        c.kill('SIGKILL');
        await exited;
      }
    }
    store?.close();
    await s3?.stop();
    await pgServer?.stop();
    tmp?.remove();
  });

  /** One isolated deployment: its own database, CDN and spool folders, port. */
  async function deployment(): Promise<{ dbUrl: string; port: number; dir: string }> {
    const name = `shutdown_${++dbCount}`;
    return { dbUrl: await createDatabase(pgServer.url, name), port: await findFreePort(), dir: tmp.file(name) };
  }

  async function startService(d: { dbUrl: string; port: number; dir: string }, env: Record<string, string> = {}): Promise<Service> {
    const child = spawn(process.execPath, ['--import', 'tsx', 'services/main.ts'], {
      cwd: ROOT,
      env: {
        PATH: process.env['PATH'],
        HOME: process.env['HOME'],
        PORT: String(d.port),
        HOST: '127.0.0.1',
        ADMIN_TOKEN: TEST_ADMIN_TOKEN,
        LOG_LEVEL: 'info',
        RTC_LISTEN_IP: '127.0.0.1',
        MEDIASOUP_WORKERS: '1',
        DATABASE_URL: d.dbUrl,
        CDN_DIR: path.join(d.dir, 'cdn'),
        ARCHIVE_SPOOL_DIR: path.join(d.dir, 'spool'),
        JOURNAL_DIR: path.join(d.dir, 'journal'),
        ARCHIVE_SWEEP_SECONDS: '1',
        AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
        ...s3.env(),
        ...env,
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    children.push(child);
    const logs: LogLine[] = [];
    readline.createInterface({ input: child.stdout! }).on('line', (line) => {
      if (!line.startsWith('{')) return;
      try {
        logs.push(JSON.parse(line) as LogLine);
      } catch {
        // not a log line
      }
    });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolve) =>
      child.once('exit', (code, signal) => resolve({ code, signal, at: performance.now() })),
    );
    const up = await eventually(() => fetch(`http://127.0.0.1:${d.port}/healthz`).then((r) => r.status, () => 0), (s) => s === 200 || child.exitCode !== null, 60_000, 200);
    expect(up, 'the service answers /healthz').to.equal(200);
    return { child, logs, exited };
  }

  /** A stage on air with a Chromium performer singing TONE and a watching performer connection. */
  async function onAir(base: string): Promise<{ stage: { id: string; performerKey: string }; page: Page; events: string[] }> {
    const res = await fetch(`${base}/api/stages`, { method: 'POST', headers: admin, body: JSON.stringify({ title: 'Shutdown' }) });
    expect(res.status).to.equal(201);
    const stage = (await res.json()) as { id: string; performerKey: string; performerUrl: string };
    const page = await browsers.performer(stage.performerUrl, TONE, 'Singer');
    const { client, events } = await watchingPerformer(base, stage.id, stage.performerKey);
    clients.push(client);
    const start = await fetch(`${base}/api/stages/${stage.id}/start`, { method: 'POST', headers: admin, body: '{}' });
    expect(start.status).to.equal(200);
    await page.waitForFunction(() => document.body.dataset['stageStatus'] === 'live', null, { timeout: 10_000 });
    return { stage, page, events };
  }

  /** The live playlists end with ENDLIST and every segment they list is on disk. Returns the segments listed. */
  function checkPlaylists(hlsDir: string): number {
    let listed = 0;
    for (const name of [PLAYLIST_NAME]) {
      const text = fs.readFileSync(path.join(hlsDir, name), 'utf8');
      expect(text, `${name} ends with ENDLIST`).to.match(/#EXT-X-ENDLIST\s*$/);
      const { segments } = parseMediaPlaylist(text);
      expect(segments.length, `${name} lists segments`).to.be.above(0);
      for (const s of segments) expect(fs.existsSync(path.join(hlsDir, s.uri)), `${name}: ${s.uri} exists`).to.equal(true);
      if (name === PLAYLIST_NAME) listed = segments.length;
    }
    return listed;
  }

  async function dbState(dbUrl: string, stageId: string) {
    const db = new pg.Client({ connectionString: dbUrl });
    await db.connect();
    try {
      const b = await db.query<{ id: string; ended_at: Date | null; end_reason: string | null; archive_status: string }>(
        `select id, ended_at, end_reason, archive_status from broadcasts where stage_id = $1`,
        [stageId],
      );
      const stage = await db.query<{ status: string }>(`select status from stages where id = $1`, [stageId]);
      const objects = await db.query<{ state: string; n: number }>(
        `select state, count(*)::int as n from archive_objects where broadcast_id = $1 group by state`,
        [b.rows[0]?.id ?? ''],
      );
      const openSessions = await db.query<{ n: number }>(`select count(*)::int as n from performer_sessions where stage_id = $1 and left_at is null`, [stageId]);
      return {
        broadcast: b.rows[0]!,
        broadcasts: b.rows.length,
        stageStatus: stage.rows[0]!.status,
        objects: Object.fromEntries(objects.rows.map((r) => [r.state, r.n])) as Record<string, number>,
        openSessions: openSessions.rows[0]!.n,
      };
    } finally {
      await db.end();
    }
  }

  const logged = (svc: Service, message: string) => svc.logs.find((l) => l.message === message);

  it('with S3 up: exits 0 within the grace, the broadcast ends cleanly and is archived before the exit', async () => {
    const d = await deployment();
    const base = `http://127.0.0.1:${d.port}`;
    const svc = await startService(d);
    const { stage, page, events } = await onAir(base);
    await sleep(8_000);

    const t0 = performance.now();
    svc.child.kill('SIGTERM');
    const exit = await svc.exited;
    const exitMs = exit.at - t0;
    expect(exit.code, 'exit code').to.equal(0);
    expect(exitMs, 'exits within the grace + 10 s').to.be.below((20 + 10) * 1000);

    const hlsDir = path.join(d.dir, 'cdn', 'live', stage.id);
    const listed = checkPlaylists(hlsDir);
    expectToldAndDisconnected(events);
    expect(await page.evaluate(() => document.body.dataset['stageStatus']), 'the performer page shows the end').to.equal('ended');

    const state = await dbState(d.dbUrl, stage.id);
    expect(state.stageStatus).to.equal('ended');
    expect(state.broadcast.ended_at).to.not.equal(null);
    expect(state.broadcast.end_reason).to.equal('server shutting down');
    expect(state.openSessions, 'every performer session is closed').to.equal(0);
    expect(state.broadcast.archive_status, 'archived before the exit').to.equal('archived');
    expect(state.objects).to.deep.equal({ uploaded: state.objects['uploaded'] });
    const flushed = logged(svc, 'shutdown: every upload of the ended broadcasts is done');
    expect(flushed, 'the flush is logged').to.not.equal(undefined);
    expect(flushed!['left']).to.equal(0);

    // A restart finds nothing to repair, and the archive holds every segment, with the tone up to the end.
    const again = await startService(d);
    expect(logged(again, 'ended broadcasts an earlier run left on air'), 'nothing was left on air').to.equal(undefined);
    expect(logged(again, 'finalizing an archive an earlier run left unfinished')).to.equal(undefined);
    const { rec } = await waitArchived(base, stage.id, 10_000);
    const manifest = await verifyArchive(store, rec, hlsDir);
    const segments = manifest.objects.filter((o) => o.kind === 'segment');
    expect(manifest.objects.filter((o) => o.kind === 'track'), "the performer's track").to.have.length(1);
    const m4a = tmp.file(`${stage.id}.m4a`);
    await download(base, rec, 'audio', m4a);
    const pcm = decodeToPcm(m4a);
    const seconds = pcm.length / 48000;
    const lastTwo = toneDb(pcm, TONE, pcm.length - 2 * 48000 - 24000, 2 * 48000);
    expect(lastTwo, 'the tone is in the programme up to the end').to.be.above(-30);
    const t2 = performance.now();
    again.child.kill('SIGTERM');
    const second = await again.exited;
    expect(second.code).to.equal(0);
    expect(logged(again, 'shutdown: uploading what the ended broadcasts left'), 'nothing on air: no grace to wait').to.equal(undefined);
    console.log(`      shutdown (S3 up) figures: ${JSON.stringify({ exitMs: Math.round(exitMs), segmentsListed: listed, segmentsArchived: segments.length,
      uploadedDuringGrace: flushed!['uploaded'], graceWaitMs: flushed!['waitedMs'], audioSeconds: Number(seconds.toFixed(2)), toneLast2sDb: Number(lastTwo.toFixed(1)),
      idleExitMs: Math.round(second.at - t2) })}`);
  });

  it('with S3 down and SHUTDOWN_GRACE_SECONDS=2: exits after the grace with uploads queued; the next start archives every segment', async () => {
    const d = await deployment();
    const base = `http://127.0.0.1:${d.port}`;
    const svc = await startService(d, { SHUTDOWN_GRACE_SECONDS: '2' });
    const { stage, events } = await onAir(base);
    await sleep(5_000);
    await s3.pause();
    await sleep(3_000);

    const t0 = performance.now();
    svc.child.kill('SIGTERM');
    const exit = await svc.exited;
    const exitMs = exit.at - t0;
    expect(exit.code).to.equal(0);
    expect(exitMs, 'exits within the grace + 10 s').to.be.below((2 + 10) * 1000);
    const left = logged(svc, 'shutdown: uploads left queued for the next start');
    expect(left, 'what is left is logged').to.not.equal(undefined);
    // The grace (finalizing, then uploading) starts once the broadcast has ended: from its end to the uploads given up.
    const offAir = logged(svc, 'off air');
    const graceUsedMs = Date.parse(String(left!['timestamp'])) - Date.parse(String(offAir!['timestamp']));
    expect(graceUsedMs, 'the whole grace was given').to.be.within(1900, 3500);
    expect(left!['cutShort']).to.equal(false);

    const hlsDir = path.join(d.dir, 'cdn', 'live', stage.id);
    const listed = checkPlaylists(hlsDir);
    expectToldAndDisconnected(events);
    const state = await dbState(d.dbUrl, stage.id);
    expect(state.stageStatus).to.equal('ended');
    expect(state.broadcast.end_reason).to.equal('server shutting down');
    expect(state.broadcast.archive_status, 'finalized, waiting for uploads').to.equal('uploading');
    const pending = (state.objects['pending'] ?? 0) + (state.objects['uploading'] ?? 0);
    expect(pending, 'uploads stay queued in the database').to.be.above(3);
    expect(left!['left'], 'the log says how many').to.equal(pending);
    expect(state.objects['failed'] ?? 0).to.equal(0);

    await s3.resume();
    const t1 = performance.now();
    const again = await startService(d);
    const { rec } = await waitArchived(base, stage.id, 60_000);
    const restartToArchivedMs = performance.now() - t1;
    const manifest = await verifyArchive(store, rec, hlsDir);
    const segments = manifest.objects.filter((o) => o.kind === 'segment');
    expect(segments.length).to.be.at.least(listed);
    const vod = (await store.getBuffer(rec.files.find((f) => f.file === 'playlist')!.key)).toString();
    expect(vod).to.match(/#EXT-X-ENDLIST\s*$/);
    expect(parseMediaPlaylist(vod).segments).to.have.length(segments.length);
    again.child.kill('SIGTERM');
    expect((await again.exited).code).to.equal(0);
    console.log(`      shutdown (S3 down, grace 2 s) figures: ${JSON.stringify({ exitMs: Math.round(exitMs), graceWaitMs: left!['waitedMs'], pendingAtExit: pending,
      uploadedDuringGrace: left!['uploaded'], segmentsArchived: segments.length, restartToArchivedMs: Math.round(restartToArchivedMs) })}`);
  });

  it('a second SIGTERM during the grace cuts it short: a quick exit, uploads left queued', async () => {
    const d = await deployment();
    const base = `http://127.0.0.1:${d.port}`;
    const svc = await startService(d, { SHUTDOWN_GRACE_SECONDS: '120' });
    const res = await fetch(`${base}/api/stages`, { method: 'POST', headers: admin, body: JSON.stringify({ title: 'Twice' }) });
    const stage = (await res.json()) as { id: string; performerKey: string };
    const { client, events } = await watchingPerformer(base, stage.id, stage.performerKey);
    clients.push(client);
    expect((await fetch(`${base}/api/stages/${stage.id}/start`, { method: 'POST', headers: admin, body: '{}' })).status).to.equal(200);
    await sleep(4_000);
    await s3.pause();
    await sleep(2_000);

    svc.child.kill('SIGTERM');
    const flushing = await eventually(async () => logged(svc, 'shutdown: uploading what the ended broadcasts left'), (l) => l !== undefined, 20_000, 50);
    expect(flushing, 'the grace started').to.not.equal(undefined);
    // During the grace the service still serves the final playlist, and says it is draining.
    const health = await fetch(`${base}/healthz`);
    expect(health.status).to.equal(503);
    const live = await fetch(`${base}/live/${stage.id}/index.m3u8`);
    expect(await live.text()).to.match(/#EXT-X-ENDLIST\s*$/);
    const t0 = performance.now();
    svc.child.kill('SIGTERM');
    const exit = await svc.exited;
    const exitMs = exit.at - t0;
    expect(exit.code).to.equal(0);
    expect(exitMs, 'a quick exit after the second signal').to.be.below(5_000);
    const left = logged(svc, 'shutdown: uploads left queued for the next start');
    expect(left!['cutShort']).to.equal(true);
    expect(left!['left'] as number).to.be.above(0);
    expectToldAndDisconnected(events);
    checkPlaylists(path.join(d.dir, 'cdn', 'live', stage.id));
    const state = await dbState(d.dbUrl, stage.id);
    expect(state.broadcast.end_reason).to.equal('server shutting down');
    expect(state.broadcast.archive_status).to.equal('uploading');
    console.log(`      shutdown (second signal) figures: ${JSON.stringify({ secondSignalToExitMs: Math.round(exitMs), left: left!['left'] })}`);
  });
});
