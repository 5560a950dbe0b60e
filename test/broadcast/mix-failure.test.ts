// FFmpeg crashing in a loop is given up on after the documented number of restarts (DEFAULT_MAX_RESTARTS, in a row):
// the broadcast ends as failed (its playlist gets ENDLIST, its archive what there is), and the error is clear in the
// log, /healthz and the admin view. The real service in a child process; its mix FFmpeg killed each time it starts.
import { expect } from 'chai';
import { io } from 'socket.io-client';
import { DEFAULT_MAX_RESTARTS } from '../../pipelines/ffmpeg/index.ts';
import type { AdminSnapshot } from '../../services/shared/admin.ts';
import { TEST_ADMIN_TOKEN } from '../support/app.ts';
import { waitArchived } from '../support/archive.ts';
import { eventually } from '../support/browser.ts';
import { descendants } from '../support/handles.ts';
import { TempDir } from '../support/media.ts';
import { findFreePort } from '../support/postgres.ts';
import { ServiceProcess } from '../support/service.ts';

const admin = { authorization: `Bearer ${TEST_ADMIN_TOKEN}`, 'content-type': 'application/json' };

describe('broadcast: a mix that keeps crashing', function () {
  this.timeout(120_000);
  let tmp: TempDir;
  let svc: ServiceProcess | null = null;

  before(() => (tmp = new TempDir()));
  after(async () => {
    await svc?.stop();
    tmp?.remove();
  });

  it(`stops after ${DEFAULT_MAX_RESTARTS} restarts in a row and ends the broadcast as failed, said in the log, /healthz and the admin view`, async () => {
    svc = await ServiceProcess.start(await findFreePort(), {
      PGLITE_DIR: 'memory',
      ARCHIVE_DIR: tmp.file('archive'),
      ARCHIVE_SPOOL_DIR: tmp.file('spool'),
      JOURNAL_DIR: tmp.file('journal'),
      CDN_DIR: tmp.file('cdn'),
    });
    const base = svc.url;
    const stage = (await (await fetch(`${base}/api/stages`, { method: 'POST', headers: admin, body: JSON.stringify({ title: 'Crashing' }) })).json()) as { id: string };
    expect((await fetch(`${base}/api/stages/${stage.id}/start`, { method: 'POST', headers: admin, body: '{}' })).status).to.equal(200);
    const mixes = () => descendants(svc!.pid).filter((p) => p.comm === 'ffmpeg' && p.cmdline.includes('-frag_duration'));
    // A few segments first, so the archive has something.
    await eventually(async () => (await (await fetch(`${base}/live/${stage.id}/index.m3u8`)).text()).match(/^seg_/gm)?.length ?? 0, (n) => n >= 2, 15_000);

    // Every mix FFmpeg that appears is killed, until the service stops starting them.
    const killed = new Set<number>();
    const deadline = Date.now() + 30_000;
    let quietSince = Date.now();
    while (Date.now() < deadline && Date.now() - quietSince < 4_000) {
      for (const p of mixes()) {
        if (killed.has(p.pid)) continue;
        killed.add(p.pid);
        quietSince = Date.now();
        process.kill(p.pid, 'SIGKILL');
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    console.log(`      mix FFmpegs killed: ${killed.size} (the first run and ${killed.size - 1} restarts)`);
    expect(killed.size, 'the first run, then exactly the documented number of restarts').to.equal(1 + DEFAULT_MAX_RESTARTS);
    expect(mixes(), 'no more restarts').to.deep.equal([]);

    // The log: one clear error saying it gave up, and why.
    const gaveUp = await eventually(async () => svc!.logged('ffmpeg keeps dying; not restarting it again'), (l) => l.length > 0, 5_000);
    expect(gaveUp).to.have.length(1);
    expect(gaveUp[0]!.level).to.equal('error');
    const off = svc.logged('off air').find((l) => l['stageId'] === stage.id);
    expect(off, 'the broadcast ended').to.not.equal(undefined);
    expect(off).to.include({ status: 'failed', level: 'error' });
    expect(String(off!['reason'])).to.match(/^the mix failed: /);

    // The stage is off air, its playlist ended.
    const view = (await (await fetch(`${base}/api/stages/${stage.id}`)).json()) as { status: string };
    expect(view.status).to.equal('ended');
    expect(await (await fetch(`${base}/live/${stage.id}/index.m3u8`)).text()).to.match(/#EXT-X-ENDLIST\s*$/);

    // /healthz: degraded, with the failure in its problems.
    const health = (await (await fetch(`${base}/healthz`)).json()) as { status: string; problems: string[] };
    expect(health.status).to.equal('degraded');
    expect(health.problems.join('\n')).to.match(new RegExp(`stage ${stage.id}: broadcast \\S+ failed: the mix failed`));

    // The admin view: the stage, its FFmpeg's failure and why the broadcast ended.
    const socket = io(`${base}/admin`, { transports: ['websocket'], reconnection: false, forceNew: true, auth: { token: TEST_ADMIN_TOKEN } });
    try {
      const snap = await new Promise<AdminSnapshot>((resolve) => socket.once('snapshot', resolve));
      const row = snap.stages.find((s) => s.id === stage.id);
      expect(row?.status).to.equal('ended');
      expect(row?.ffmpeg?.restarts).to.equal(DEFAULT_MAX_RESTARTS);
      expect(row?.ffmpeg?.failure).to.be.a('string').and.not.equal('');
      expect(row?.endReason).to.match(/^the mix failed: /);
      expect(snap.problems.join('\n')).to.match(/failed: the mix failed/);
    } finally {
      socket.close();
    }

    // The archive has what was recorded before the mix failed.
    const { rec } = await waitArchived(base, stage.id, 30_000);
    expect(rec.status).to.equal('archived');
    expect(rec.segments.count).to.be.at.least(2);
  });
});
