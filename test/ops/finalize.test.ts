// Finalizing a broadcast's archive (VOD playlist, audio file, tracks, manifest) is a durable step: a shutdown that
// interrupts it, the way systemd stops a service (SIGTERM to every process of it) or a terminal's Ctrl-C (the process
// group), leaves it to the next start, which finishes it: archived, with its audio file, tracks and manifest. A
// remux that hangs cannot hold the shutdown past SHUTDOWN_GRACE_SECONDS. A shutdown by signal starts no media worker
// and rebuilds no stage. The real service in a child process, a Chromium performer, the local archive store.
import path from 'node:path';
import { expect } from 'chai';
import type { Page } from 'playwright-core';
import { TEST_ADMIN_TOKEN } from '../support/app.ts';
import { download, waitArchived } from '../support/archive.ts';
import { decodeToPcm, toneDb } from '../support/audio.ts';
import { BrowserSet, eventually } from '../support/browser.ts';
import { descendants } from '../support/handles.ts';
import { TempDir } from '../support/media.ts';
import { findFreePort } from '../support/postgres.ts';
import { ServiceProcess } from '../support/service.ts';

const admin = { authorization: `Bearer ${TEST_ADMIN_TOKEN}`, 'content-type': 'application/json' };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** The shim that paces the remux at real time (test/support/slow-remux/ffmpeg), first on the service's PATH. */
const SLOW_REMUX_PATH = `${path.join(import.meta.dirname, '../support/slow-remux')}:${process.env['PATH']}`;
const BROADCAST_MS = 8_000;

describe('archive finalization survives the service being stopped while it runs', function () {
  this.timeout(240_000);
  let tmp: TempDir;
  let browsers: BrowserSet;
  const services: ServiceProcess[] = [];

  before(() => {
    tmp = new TempDir();
    browsers = new BrowserSet(tmp);
  });
  afterEach(async () => {
    await browsers.close();
    await Promise.all(services.splice(0).map((s) => s.stop()));
  });
  after(async () => {
    await browsers?.close();
    tmp?.remove();
  });

  /** One deployment's folders (embedded database on disk, local archive): the same for its restart. */
  function deployment(name: string): Record<string, string> {
    return {
      PGLITE_DIR: tmp.file(`${name}/pglite`),
      ARCHIVE_DIR: tmp.file(`${name}/archive`),
      ARCHIVE_SPOOL_DIR: tmp.file(`${name}/spool`),
      JOURNAL_DIR: tmp.file(`${name}/journal`),
      CDN_DIR: tmp.file(`${name}/cdn`),
    };
  }

  async function start(env: Record<string, string>): Promise<ServiceProcess> {
    const svc = await ServiceProcess.start(await findFreePort(), env);
    services.push(svc);
    return svc;
  }

  /** A broadcast of BROADCAST_MS with a Chromium performer, stopped; resolves with the remux FFmpeg once it runs. */
  async function broadcastThenRemux(svc: ServiceProcess): Promise<{ stageId: string; page: Page; remux: { pid: number } }> {
    const res = await fetch(`${svc.url}/api/stages`, { method: 'POST', headers: admin, body: JSON.stringify({ title: 'Finalize' }) });
    const stage = (await res.json()) as { id: string; performerUrl: string };
    const page = await browsers.performer(stage.performerUrl, 440, 'Singer');
    expect((await fetch(`${svc.url}/api/stages/${stage.id}/start`, { method: 'POST', headers: admin, body: '{}' })).status).to.equal(200);
    await sleep(BROADCAST_MS);
    expect((await fetch(`${svc.url}/api/stages/${stage.id}/stop`, { method: 'POST', headers: admin, body: '{}' })).status).to.equal(200);
    const remux = await eventually(async () => descendants(svc.pid).find((p) => p.comm === 'ffmpeg' && p.cmdline.includes('.tmp.m4a')), (p) => p !== undefined, 20_000, 20);
    expect(remux, 'the archive is being remuxed').to.not.equal(undefined);
    return { stageId: stage.id, page, remux: remux! };
  }

  /** After a restart: the archive is archived, with the audio file, the performer's track and the manifest. */
  async function expectArchivedAfterRestart(env: Record<string, string>, stageId: string): Promise<void> {
    const svc = await start(env);
    const { rec } = await waitArchived(svc.url, stageId, 60_000);
    expect(rec.status).to.equal('archived');
    const kinds = rec.files.map((f) => f.kind).sort();
    expect(kinds).to.include.members(['audio', 'manifest', 'playlist', 'track']);
    const m4a = tmp.file(`${stageId}.m4a`);
    await download(svc.url, rec, 'audio', m4a);
    const pcm = decodeToPcm(m4a);
    expect(pcm.length / 48000, 'the audio file holds the broadcast').to.be.within(BROADCAST_MS / 1000 - 2, BROADCAST_MS / 1000 + 2);
    expect(toneDb(pcm, 440), "the performer's tone is in it").to.be.above(-40);
    expect(svc.logged('finalizing an archive that was waiting').length, 'the restart finished what the stop left').to.be.at.least(1);
    await svc.stop();
  }

  it('SIGTERM to every process of the service (as systemd does) mid-remux: the archive is finished at the next start; no worker is respawned, no stage rebuilt', async () => {
    const env = { ...deployment('systemd'), PATH: SLOW_REMUX_PATH, SHUTDOWN_GRACE_SECONDS: '20' };
    const svc = await start(env);
    const { stageId, remux } = await broadcastThenRemux(svc);
    // systemd's KillMode=control-group: SIGTERM to the main process and to every other process of the service at once
    // (the remux FFmpeg in its own session included; Chromium is this test's, not the service's).
    const workers = descendants(svc.pid).filter((p) => p.comm.startsWith('mediasoup')).map((p) => p.pid);
    expect(workers, 'the service runs a media worker').to.have.length.at.least(1);
    const all = [svc.pid, ...descendants(svc.pid).map((p) => p.pid)];
    const signalledAt = performance.now();
    for (const pid of all) {
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        // gone
      }
    }
    const exit = await svc.exited;
    console.log(`      exit ${exit.code ?? exit.signal} ${Math.round(exit.at - signalledAt)} ms after the signal; the remux (pid ${remux.pid}) was interrupted`);
    expect(exit.code, 'a clean exit').to.equal(0);
    expect(svc.logged('archive finalization interrupted; it resumes at the next sweep or start'), 'interrupted, not failed').to.have.length.at.least(1);
    expect(svc.logged(/could not finalize the archive/), 'not counted as a failure').to.deep.equal([]);
    // Whether the pool heard the worker's death before the service closed it depends on which process the kernel ran
    // first (the service exited 103-319 ms after the signal in CI); either way the worker is gone and not replaced.
    const stillAlive = () =>
      workers.filter((pid) => {
        try {
          process.kill(pid, 0);
          return true;
        } catch {
          return false;
        }
      });
    const alive = await eventually(async () => stillAlive(), (a) => a.length === 0, 5000, 20);
    expect(alive, 'the media worker is gone with the service').to.deep.equal([]);
    expect(svc.logged('mediasoup worker started').length, 'no worker was started after the first').to.equal(1);
    expect(svc.logged('mediasoup worker died; replacing it'), 'no worker death treated as a crash').to.deep.equal([]);
    expect(svc.logged('stage rebuilt on a new worker'), 'no stage rebuilt').to.deep.equal([]);
    await expectArchivedAfterRestart(env, stageId);
  });

  it("Ctrl-C (SIGINT to the service's process group) mid-remux: the remux runs on in its own session and the archive is complete before the exit", async () => {
    const env = { ...deployment('ctrl-c'), PATH: SLOW_REMUX_PATH, SHUTDOWN_GRACE_SECONDS: '30' };
    const svc = await start(env);
    const { stageId, remux } = await broadcastThenRemux(svc);
    process.kill(-svc.pid, 'SIGINT');
    const exit = await svc.exited;
    expect(exit.code).to.equal(0);
    expect(svc.logged('archive finalization interrupted; it resumes at the next sweep or start'), 'the group signal did not reach the remux').to.deep.equal([]);
    expect(svc.logged('archive finalized; uploading').length, `finalized during the shutdown (remux pid ${remux.pid})`).to.equal(1);
    expect(svc.logged('shutdown: every upload of the ended broadcasts is done').length, 'and uploaded within the grace').to.equal(1);
    expect(svc.logged('mediasoup worker died; replacing it')).to.deep.equal([]);
    const again = await start(env);
    const { rec } = await waitArchived(again.url, stageId, 10_000);
    expect(rec.status).to.equal('archived');
    expect(again.logged('finalizing an archive that was waiting'), 'nothing was left to finish').to.deep.equal([]);
  });

  it('a hung remux (SIGSTOPped) holds the shutdown no longer than SHUTDOWN_GRACE_SECONDS; the next start finishes the archive', async () => {
    const graceSeconds = 3;
    const env = { ...deployment('hung'), PATH: SLOW_REMUX_PATH, SHUTDOWN_GRACE_SECONDS: String(graceSeconds) };
    const svc = await start(env);
    const { stageId, remux } = await broadcastThenRemux(svc);
    process.kill(remux.pid, 'SIGSTOP');
    const signalledAt = performance.now();
    process.kill(svc.pid, 'SIGTERM');
    const exit = await svc.exited;
    const tookMs = exit.at - signalledAt;
    console.log(`      exited ${Math.round(tookMs)} ms after SIGTERM with the remux stopped (grace ${graceSeconds} s)`);
    expect(exit.code).to.equal(0);
    expect(tookMs, 'the grace, plus closing').to.be.below(graceSeconds * 1000 + 3_000);
    expect(svc.logged('shutdown: archive finalization did not finish within the grace; it resumes at the next start')).to.have.length(1);
    await eventually(async () => descendants(svc.pid).length, (n) => n === 0, 5_000);
    let alive = true;
    try {
      process.kill(remux.pid, 0);
    } catch {
      alive = false;
    }
    expect(alive, 'the stopped remux was killed').to.equal(false);
    await expectArchivedAfterRestart(env, stageId);
  });
});
