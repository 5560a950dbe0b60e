// The service SIGKILLed mid-broadcast while uploads are pending (S3 down): after a restart the queue finishes them
// and the archive completes with every segment, nothing uploaded before the crash uploaded again, nothing corrupt.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import pg from 'pg';
import { openStore, type ObjectStore } from '../../services/archive/store.ts';
import { createLogger } from '../../services/logger.ts';
import { TEST_ADMIN_TOKEN } from '../support/app.ts';
import { download, verifyArchive, waitArchived } from '../support/archive.ts';
import { decodeToPcm } from '../support/audio.ts';
import { eventually } from '../support/browser.ts';
import { TempDir } from '../support/media.ts';
import { findFreePort, startPostgres, type PostgresServer } from '../support/postgres.ts';
import { startS3, type S3Server } from '../support/s3.ts';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** PIDs of the direct children of pid (Linux /proc). */
function childrenOf(pid: number): { pid: number; comm: string }[] {
  const out: { pid: number; comm: string }[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      const m = /^\d+ \((.*)\) \S+ (\d+)/.exec(stat);
      if (m && Number(m[2]) === pid) out.push({ pid: Number(d), comm: m[1]! });
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

const alive = (pid: number) => fs.existsSync(`/proc/${pid}`) && !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));

describe('archive: the service SIGKILLed with uploads pending', function () {
  this.timeout(240_000);
  let tmp: TempDir;
  let pgServer: PostgresServer;
  let s3: S3Server;
  let store: ObjectStore;
  const children: ChildProcess[] = [];

  before(async () => {
    tmp = new TempDir();
    [pgServer, s3] = await Promise.all([startPostgres(), startS3()]);
    store = openStore(s3.config(), createLogger('error'));
  });
  after(async () => {
    for (const c of children) {
      if (c.pid && c.exitCode === null && c.signalCode === null) {
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

  async function startService(port: number): Promise<ChildProcess> {
    const env: NodeJS.ProcessEnv = {
      PATH: process.env['PATH'],
      HOME: process.env['HOME'],
      PORT: String(port),
      HOST: '127.0.0.1',
      ADMIN_TOKEN: TEST_ADMIN_TOKEN,
      LOG_LEVEL: process.env['TEST_LOG_LEVEL'] ?? 'error',
      RTC_LISTEN_IP: '127.0.0.1',
      MEDIASOUP_WORKERS: '1',
      DATABASE_URL: pgServer.url,
      CDN_DIR: tmp.file('cdn'),
      ARCHIVE_SPOOL_DIR: tmp.file('spool'),
      JOURNAL_DIR: tmp.file('journal'),
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
      ...s3.env(),
    };
    const child = spawn(process.execPath, ['--import', 'tsx', 'services/main.ts'], { cwd: ROOT, env, stdio: ['ignore', 'ignore', 'inherit'] });
    children.push(child);
    const up = await eventually(() => fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.status, () => 0), (s) => s === 200, 60_000, 200);
    expect(up, 'the service answers /healthz').to.equal(200);
    return child;
  }

  it('restarts, finishes the queue, and the archive is complete and uncorrupted', async () => {
    const port = await findFreePort();
    const base = `http://127.0.0.1:${port}`;
    const first = await startService(port);
    const created = await fetch(`${base}/api/stages`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ title: 'Crash' }),
    });
    const stage = (await created.json()) as { id: string };
    const start = await fetch(`${base}/api/stages/${stage.id}/start`, { method: 'POST', headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}`, 'content-type': 'application/json' }, body: '{}' });
    expect(start.status).to.equal(200);
    await sleep(6_000);
    // S3 goes away: segments queue up; then the service is killed with them pending.
    await s3.pause();
    await sleep(6_000);
    const db = new pg.Client({ connectionString: pgServer.url });
    await db.connect();
    try {
      const before = await db.query<{ key: string; uploaded_at: Date; attempts: number }>(
        `select key, uploaded_at, attempts from archive_objects where state = 'uploaded'`,
      );
      const pending = await db.query<{ n: number }>(`select count(*)::int as n from archive_objects where state <> 'uploaded'`);
      expect(before.rows.length, 'segments were uploaded before the outage').to.be.above(2);
      expect(pending.rows[0]!.n, 'uploads are pending when the service is killed').to.be.above(3);

      const ffmpegs = childrenOf(first.pid!).filter((c) => c.comm === 'ffmpeg');
      expect(ffmpegs, 'the mixer runs').to.have.length(1);
      const exited = new Promise((r) => first.once('exit', r));
      first.kill('SIGKILL');
      await exited;
      await eventually(async () => alive(ffmpegs[0]!.pid), (a) => !a, 5_000, 50);
      expect(alive(ffmpegs[0]!.pid), 'FFmpeg died with the service').to.equal(false);

      await s3.resume();
      const t0 = performance.now();
      await startService(port);
      const { rec } = await waitArchived(base, stage.id, 60_000);
      const restartToArchivedMs = performance.now() - t0;
      const hlsDir = path.join(tmp.file('cdn'), 'live', stage.id);
      const manifest = await verifyArchive(store, rec, hlsDir);
      const segments = manifest.objects.filter((o) => o.kind === 'segment');

      // Objects confirmed before the crash were not uploaded again.
      const after = new Map((await db.query<{ key: string; uploaded_at: Date; attempts: number }>(
        `select key, uploaded_at, attempts from archive_objects`,
      )).rows.map((r) => [r.key, r]));
      for (const r of before.rows) {
        expect(after.get(r.key)?.uploaded_at.getTime(), `${r.key} kept its upload`).to.equal(r.uploaded_at.getTime());
        expect(after.get(r.key)?.attempts).to.equal(r.attempts);
      }
      const broadcast = await db.query<{ end_reason: string }>(`select end_reason from broadcasts where id = $1`, [rec.id]);
      expect(broadcast.rows[0]!.end_reason).to.equal('server restarted');

      // The audio file covers every segment and decodes.
      const m4a = tmp.file('crash.m4a');
      await download(base, rec, 'audio', m4a);
      const seconds = decodeToPcm(m4a).length / 48000;
      const segSeconds = segments.reduce((s, o) => s + (o.durationSeconds ?? 0), 0);
      expect(seconds).to.be.closeTo(segSeconds, 0.2);
      const vod = (await store.getBuffer(rec.files.find((f) => f.file === 'playlist')!.key)).toString();
      expect(vod).to.match(/#EXT-X-ENDLIST\s*$/);
      expect(vod.match(/^seg_\d+\.m4s$/gm)).to.have.length(segments.length);
      expect(vod.match(/^#EXT-X-MAP:.*$/gm), 'one run, one init section').to.deep.equal(['#EXT-X-MAP:URI="init_0.mp4"']);
      expect(manifest.objects.filter((o) => o.kind === 'init').map((o) => path.posix.basename(o.key))).to.deep.equal(['init_0.mp4']);
      console.log(`      crash figures: ${JSON.stringify({ uploadedBeforeKill: before.rows.length, pendingAtKill: pending.rows[0]!.n, segments: segments.length,
        audioSeconds: seconds.toFixed(2), restartToArchivedMs: Math.round(restartToArchivedMs) })}`);
    } finally {
      await db.end();
    }
  });
});
