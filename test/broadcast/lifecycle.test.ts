// The broadcast as one resource: whatever closes a stage closes its broadcast, and nothing of that broadcast is left
// running: no timer, socket, child process, pipe or file watcher, counted through the process's own resources
// (async_hooks, /proc), not through the objects' flags. Its archive is still finalized, and how it ended is recorded.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import type { App } from '../../services/app.ts';
import { BroadcastRepo } from '../../services/db/broadcasts.ts';
import type { Stage } from '../../services/sfu/stage.ts';
import { startTestApp } from '../support/app.ts';
import { eventually } from '../support/browser.ts';
import { childPids, ResourceTracker, type LiveResource } from '../support/handles.ts';
import { TempDir } from '../support/media.ts';
import { SyntheticPerformer } from '../support/synthetic.ts';

/**
 * Resources that are not the broadcast's: the app's periodic jobs (node-cron), the embedded database's own timer, a
 * media worker the pool respawned, and the test's own polling (mocha, eventually()).
 */
const appOwned = (r: LiveResource) => /node-cron|@electric-sql\/pglite|workerPool\.ts|mocha\/lib|test\/support\/browser\.ts/.test(r.stack);
const describeLeft = (rs: LiveResource[]) => rs.map((r) => `${r.type} created at\n${r.stack}`).join('\n---\n');

describe('broadcast lifecycle: every way a stage closes ends its broadcast and leaves nothing of it behind', function () {
  this.timeout(180_000);
  let tmp: TempDir;
  let app: App;
  const senders: SyntheticPerformer[] = [];

  before(async () => {
    tmp = new TempDir();
    app = await startTestApp({ MEDIASOUP_WORKERS: '2', REJOIN_WAIT_SECONDS: '2', CDN_DIR: tmp.file('cdn') });
  });
  after(async () => {
    await Promise.all(senders.map((s) => s.stop()));
    await app?.close();
    tmp?.remove();
  });

  /** A stage on air with one synthetic performer in its mix, a few segments in; the tracker started just before. */
  async function onAir(title: string): Promise<{ stage: Stage; broadcastId: string; tracker: ResourceTracker; ffmpegBefore: number[] }> {
    const created = await app.stages.create(title);
    const stage = await app.registry.open(created.id);
    const sender = await SyntheticPerformer.start(stage.router, 440);
    senders.push(sender);
    const ffmpegBefore = childPids('ffmpeg');
    const tracker = new ResourceTracker();
    await app.onAir.start(stage.id);
    const broadcast = stage.broadcast!;
    await broadcast.mixer.attach('sender', sender.producer, 'Sender');
    await eventually(async () => (await app.archiver.repo.objects(broadcast.id, 'segment')).length, (n) => n >= 3, 20_000);
    // The measure sees the broadcast: its relays' sockets, its FFmpeg and its pipes, its timers.
    const during = ResourceTracker.count(tracker.alive(appOwned));
    // One pipe (MIX_INPUT=ogg, the default): a receiving socket per slot, and FFmpeg's stdin; RTP inputs: two sockets.
    const pipe = app.config.hls.mixInput === 'ogg';
    expect(during['UDPWRAP'] ?? 0, `the mix's relay sockets are seen (${JSON.stringify(during)})`).to.be.at.least((pipe ? 1 : 2) * app.config.stage.maxPerformers);
    expect(during['PROCESSWRAP'] ?? 0, "the mix's FFmpeg is seen").to.be.at.least(1);
    expect(during['PIPEWRAP'] ?? 0, "the mix FFmpeg's pipes are seen (its slots on stdin, its fMP4 into the live writer, its stderr)").to.be.at.least(pipe ? 3 : 2);
    expect(during['Timeout'] ?? 0, "the broadcast's timers are seen").to.be.at.least(2);
    expect(childPids('ffmpeg').length, 'the mix FFmpeg runs').to.equal(ffmpegBefore.length + 1);
    return { stage, broadcastId: broadcast.id, tracker, ffmpegBefore };
  }

  /** Nothing the broadcast made is alive; its archive is archived; its end is recorded as expected. */
  async function expectGone(
    b: { stage: Stage; broadcastId: string; tracker: ResourceTracker; ffmpegBefore: number[] },
    end: { status: string; reason: RegExp },
  ): Promise<void> {
    try {
      await eventually(async () => b.stage.closed, (closed) => closed, 15_000);
      const rec = await eventually(() => app.archiver.repo.recording(b.broadcastId), (r) => r?.archiveStatus === 'archived' || r?.archiveStatus === 'failed', 30_000);
      expect(rec?.archiveStatus, `the archive is finalized and uploaded (${rec?.archiveError ?? ''})`).to.equal('archived');
      const ended = await new BroadcastRepo(app.db).get(b.broadcastId);
      expect(ended?.endStatus).to.equal(end.status);
      expect(ended?.endReason).to.match(end.reason);
      const left = await eventually(async () => b.tracker.alive(appOwned), (rs) => rs.length === 0, 10_000);
      expect(left, `resources of the broadcast still alive:\n${describeLeft(left)}`).to.deep.equal([]);
      expect(childPids('ffmpeg'), 'no FFmpeg of the broadcast is left').to.deep.equal(b.ffmpegBefore);
      expect(app.usage.registered, 'no usage ticks').to.equal(0);
    } finally {
      b.tracker.stop();
    }
  }

  it('a stop', async () => {
    const b = await onAir('Stopped');
    const { changed } = await app.onAir.stop(b.stage.id);
    expect(changed).to.equal(true);
    await expectGone(b, { status: 'complete', reason: /^stopped$/ });
  });

  it('a worker death nobody returns to: the stage waits REJOIN_WAIT_SECONDS, then closes', async () => {
    const b = await onAir('Abandoned');
    const pid = b.stage.worker.pid;
    process.kill(pid, 'SIGKILL');
    await eventually(async () => b.stage.worker.pid, (p) => p !== pid, 10_000);
    expect(b.stage.closed, 'still open while it waits for a performer').to.equal(false);
    await expectGone(b, { status: 'aborted', reason: /media server was lost and no performer came back/ });
  });

  it('the registry, after a failed rebuild', async () => {
    const b = await onAir('Unrebuildable');
    // The replacement worker is gone before the stage's router can be made on it: the rebuild fails.
    app.pool.once('workerReplaced', (_dead, replacement) => replacement.worker.close());
    process.kill(b.stage.worker.pid, 'SIGKILL');
    await expectGone(b, { status: 'aborted', reason: /could not be rebuilt/ });
  });

  it('app close: the broadcast ends, its archive is finalized within the grace, and the app leaves nothing running', async () => {
    // In a process of its own, so that everything it made is its app's: what is alive after close() is a leak.
    const dirs = { PGLITE_DIR: tmp.file('close/pglite'), ARCHIVE_DIR: tmp.file('close/archive'), ARCHIVE_SPOOL_DIR: tmp.file('close/spool'), JOURNAL_DIR: tmp.file('close/journal'), CDN_DIR: tmp.file('close/cdn'), MEDIASOUP_WORKERS: '1' };
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(import.meta.dirname, '../support/app-close-child.ts')], {
      env: { ...process.env, APP_ENV: JSON.stringify(dirs) },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    let printedAt = 0;
    child.stdout.on('data', () => (printedAt ||= Date.now()));
    const exit = await new Promise<number | string>((resolve) => {
      const t = setTimeout(() => {
        child.kill('SIGKILL');
        resolve('still running after 120 s');
      }, 120_000);
      child.once('exit', (code, sig) => {
        clearTimeout(t);
        resolve(code ?? String(sig));
      });
    });
    const exitedMs = Date.now() - printedAt;
    expect(exit, out).to.equal(0);
    const r = JSON.parse(out.trim().split('\n').at(-1)!) as { stageId: string; broadcastId: string; mixPid: number; stageClosed: boolean; left: LiveResource[] };
    expect(r.stageClosed, 'the stage closed with the app').to.equal(true);
    expect(r.left, `resources of the closed app still alive:\n${describeLeft(r.left)}`).to.deep.equal([]);
    expect(exitedMs, 'the process ended by itself once closed (nothing kept its event loop going)').to.be.below(5_000);
    expect(fs.existsSync(`/proc/${r.mixPid}`), 'the mix FFmpeg is gone').to.equal(false);
    // The archive was finalized and uploaded before the app closed: its manifest is in the store, and an app restarted
    // on the same database says archived.
    const manifest = path.join(dirs.ARCHIVE_DIR, 'stages', r.stageId, 'broadcasts', r.broadcastId, 'manifest.json');
    expect(fs.existsSync(manifest), 'the manifest is in the archive store').to.equal(true);
    const again = await startTestApp(dirs);
    try {
      expect((await again.archiver.repo.recording(r.broadcastId))?.archiveStatus).to.equal('archived');
      expect(await new BroadcastRepo(again.db).get(r.broadcastId)).to.deep.include({ endStatus: 'complete', endReason: 'server shutting down' });
    } finally {
      await again.close();
    }
  });
});
