// Going on and off air through the REST API and signaling, with real FFmpeg writing HLS into the CDN folder.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import fs from 'node:fs';
import { expect } from 'chai';
import type { App } from '../../services/app.ts';
import { BroadcastRepo, UsageRepo } from '../../services/db/broadcasts.ts';
import { TEST_ADMIN_TOKEN, createStage, startTestApp } from '../support/app.ts';
import { connectClient } from '../support/client.ts';
import { TempDir } from '../support/media.ts';

describe('on air: start and stop', function () {
  this.timeout(60_000);
  let app: App;
  let tmp: TempDir;

  before(async () => {
    tmp = new TempDir();
    app = await startTestApp({ CDN_DIR: tmp.path });
  });
  after(async () => {
    await app?.close();
    tmp?.remove();
  });

  const call = (id: string, action: 'start' | 'stop', token?: string, body?: string) =>
    fetch(`${app.url}/api/stages/${id}/${action}`, {
      method: 'POST',
      headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), 'content-type': 'application/json' },
      ...(body !== undefined ? { body } : {}),
    });

  it('goes on air with nobody on stage, serves AAC HLS, and goes off air with ENDLIST, releasing FFmpeg', async () => {
    const stage = await createStage(app, 'Empty room');
    const res = await call(stage.id, 'start', stage.performerKey);
    expect(res.status).to.equal(200);
    const started = (await res.json()) as { status: string; changed: boolean; startedAt: string | null; hlsUrl: string };
    expect(started).to.include({ status: 'live', changed: true });
    expect(started.startedAt).to.be.a('string');

    const again = (await (await call(stage.id, 'start', TEST_ADMIN_TOKEN)).json()) as { status: string; changed: boolean };
    expect(again, 'a second start is a no-op').to.include({ status: 'live', changed: false });

    let playlist = '';
    for (let i = 0; i < 60 && !/seg_\d+\.m4s/.test(playlist); i++) {
      await new Promise((r) => setTimeout(r, 100));
      const r = await fetch(started.hlsUrl);
      if (r.ok) playlist = await r.text();
    }
    expect(playlist).to.match(/#EXT-X-PROGRAM-DATE-TIME:/);
    // Asynchronously: the app serving the playlist runs in this process.
    const probe = await promisify(execFile)('ffprobe', ['-v', 'error', '-show_entries', 'stream=codec_name,sample_rate,channels', '-of', 'json', started.hlsUrl], { timeout: 20_000 });
    const streams = (JSON.parse(probe.stdout) as { streams: { codec_name: string; sample_rate: string; channels: number }[] }).streams;
    expect(streams[0]).to.deep.include({ codec_name: 'aac', sample_rate: '48000', channels: 2 });

    const ffmpegPid = app.registry.get(stage.id)!.broadcast!.mixer.ffmpeg.pid!;
    const tick = app.usage.tick();
    expect(tick.queued, 'a usage tick for the live stage').to.be.at.least(1);
    expect(await tick.written, 'written').to.equal(true);

    const stopped = await call(stage.id, 'stop', TEST_ADMIN_TOKEN);
    expect(stopped.status).to.equal(200);
    expect(await stopped.json()).to.include({ status: 'ended', changed: true });
    const text = fs.readFileSync(`${tmp.path}/live/${stage.id}/index.m3u8`, 'utf8');
    expect(text.trim().endsWith('#EXT-X-ENDLIST')).to.equal(true);
    let alive = true;
    try {
      process.kill(ffmpegPid, 0);
    } catch {
      alive = false;
    }
    expect(alive, 'FFmpeg exited').to.equal(false);
    expect(app.registry.get(stage.id), 'stage media released').to.equal(undefined);

    const broadcasts = await new BroadcastRepo(app.db).listForStage(stage.id);
    expect(broadcasts).to.have.length(1);
    expect(broadcasts[0]!.endedAt).to.be.instanceOf(Date);
    expect(broadcasts[0]!.endReason).to.equal('stopped');
    const ticks = await new UsageRepo(app.db).list(broadcasts[0]!.id);
    expect(ticks.map((t) => t.performerId)).to.deep.equal([null]);
  });

  it('answers bad transitions with a clear 4xx or an idempotent result', async () => {
    const stage = await createStage(app);
    const other = await createStage(app);
    const expectError = async (res: Promise<Response>, status: number, code: string) => {
      const r = await res;
      expect(r.status).to.equal(status);
      expect(((await r.json()) as { error: { code: string } }).error.code).to.equal(code);
    };
    await expectError(call(stage.id, 'start'), 401, 'UNAUTHORIZED');
    await expectError(call(stage.id, 'start', other.performerKey), 401, 'UNAUTHORIZED');
    await expectError(call('nosuchstage', 'start', TEST_ADMIN_TOKEN), 404, 'NOT_FOUND');
    await expectError(call('bad id!', 'start', TEST_ADMIN_TOKEN), 400, 'BAD_REQUEST');
    await expectError(call(stage.id, 'start', TEST_ADMIN_TOKEN, '{"now":true}'), 400, 'BAD_REQUEST');
    await expectError(call(stage.id, 'stop', TEST_ADMIN_TOKEN), 409, 'INVALID_STATE');
    expect((await call(stage.id, 'start', TEST_ADMIN_TOKEN)).status).to.equal(200);
    expect((await call(stage.id, 'stop', stage.performerKey)).status).to.equal(200);
    const twice = await call(stage.id, 'stop', TEST_ADMIN_TOKEN);
    expect(twice.status).to.equal(200);
    expect(await twice.json()).to.include({ status: 'ended', changed: false });
    await expectError(call(stage.id, 'start', TEST_ADMIN_TOKEN), 409, 'INVALID_STATE');
    expect((await fetch(`${app.url}/healthz`)).status).to.equal(200);
  });

  it('performers start and stop the broadcast over signaling; everyone on stage is told', async () => {
    const stage = await createStage(app);
    const a = await connectClient(app.url);
    const b = await connectClient(app.url);
    try {
      for (const [c, n] of [[a, 'A'], [b, 'B']] as const) {
        expect((await c.request('join', { stageId: stage.id, key: stage.performerKey, displayName: n })).ok).to.equal(true);
      }
      const toldLive = new Promise<{ status: string }>((r) => b.socket.once('stageStatus', r));
      expect(await a.request('startBroadcast', {})).to.deep.equal({ ok: true, data: { status: 'live' } });
      expect(await toldLive).to.deep.equal({ status: 'live' });
      const toldEnded = new Promise<{ status: string }>((r) => b.socket.once('stageStatus', r));
      expect(await b.request('stopBroadcast', {})).to.deep.equal({ ok: true, data: { status: 'ended' } });
      expect(await toldEnded).to.deep.equal({ status: 'ended' });
      const late = await connectClient(app.url);
      const refused = await late.request('join', { stageId: stage.id, key: stage.performerKey, displayName: 'Late' });
      late.close();
      expect(refused.ok === false && refused.error.code).to.equal('INVALID_STATE');
    } finally {
      a.close();
      b.close();
    }
  });
});
