// GET /metrics against a real app: the admin token is required, every metric is exposed in valid text format, and
// the values follow what happens: performers joining, a stage going on air with synthetic Opus senders in its mix,
// distinct listeners fetching the playlist, segments being listed, FFmpeg killed and restarted, sockets connecting.
import { expect } from 'chai';
import { Registry } from 'prom-client';
import type { App } from '../../services/app.ts';
import { collectReleasableDefaultMetrics, ListenerEstimator } from '../../services/ops/metrics.ts';
import { createStage, startTestApp, TEST_ADMIN_TOKEN, transition } from '../support/app.ts';
import { eventually } from '../support/browser.ts';
import { connectClient, type TestClient } from '../support/client.ts';
import { TempDir } from '../support/media.ts';
import { encodeTone, PacketPerformer } from '../support/packets.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Every metric the service defines (docs/operations.md lists the same). */
const SERVICE_METRICS = [
  'stage_radio_stages_live',
  'stage_radio_stages_open',
  'stage_radio_performers',
  'stage_radio_stage_performers',
  'stage_radio_mix_inputs',
  'stage_radio_stage_mix_inputs',
  'stage_radio_consumers',
  'stage_radio_stage_consumers',
  'stage_radio_listeners',
  'stage_radio_stage_listeners',
  'stage_radio_mixer_lag_seconds',
  'stage_radio_segment_latency_seconds',
  'stage_radio_ffmpeg_restarts_total',
  'stage_radio_upload_queue_depth',
  'stage_radio_upload_queue_objects',
  'stage_radio_uploads_total',
  'stage_radio_upload_retries_total',
  'stage_radio_upload_failures_total',
  'stage_radio_socketio_connections',
  'stage_radio_workers',
  'stage_radio_worker_routers',
  'stage_radio_worker_cpu_percent',
  'stage_radio_worker_cpu_seconds_total',
];

/** A scrape: sample values by `name{labels}` exactly as printed (labels in prom-client's order). */
class Scrape {
  readonly samples = new Map<string, number>();
  constructor(readonly text: string) {
    for (const line of text.split('\n')) {
      if (line === '' || line.startsWith('#')) continue;
      const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$/.exec(line);
      if (!m) throw new Error(`not a valid sample line: ${JSON.stringify(line)}`);
      this.samples.set(`${m[1]}${m[2] ?? ''}`, Number(m[3]));
    }
  }

  /** The sample's value; undefined when it is absent. */
  get(name: string, labels: Record<string, string> = {}): number | undefined {
    const l = Object.entries(labels).map(([k, v]) => `${k}="${v}"`).join(',');
    return this.samples.get(l ? `${name}{${l}}` : name);
  }

  has(metric: string): boolean {
    return this.text.includes(`\n# TYPE ${metric} `);
  }
}

describe('metrics: GET /metrics', function () {
  this.timeout(120_000);
  let tmp: TempDir;
  let app: App;
  const clients: TestClient[] = [];
  const senders: PacketPerformer[] = [];

  const scrape = async (): Promise<Scrape> => {
    const res = await fetch(`${app.url}/metrics`, { headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}` } });
    expect(res.status).to.equal(200);
    return new Scrape(await res.text());
  };

  before(async () => {
    tmp = new TempDir();
    app = await startTestApp({ CDN_DIR: tmp.file('cdn') });
  });
  after(async () => {
    for (const s of senders) s.stop();
    for (const c of clients) c.close();
    await app?.close();
    tmp?.remove();
  });

  it('needs the admin token (401 without or with a wrong one), is never cached, and is valid text exposition', async () => {
    const attempts: Record<string, string>[] = [{}, { authorization: 'Bearer wrong-token-wrong-token' }, { authorization: TEST_ADMIN_TOKEN }];
    for (const headers of attempts) {
      const res = await fetch(`${app.url}/metrics`, { headers });
      expect(res.status).to.equal(401);
      expect(res.headers.get('www-authenticate')).to.equal('Bearer');
      expect(res.headers.get('cache-control')).to.equal('no-store');
      const body = (await res.json()) as { ok: boolean; error: { code: string } };
      expect(body.error.code).to.equal('UNAUTHORIZED');
      expect(JSON.stringify(body)).to.not.include('stage_radio');
    }
    const res = await fetch(`${app.url}/metrics`, { headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}` } });
    expect(res.status).to.equal(200);
    expect(res.headers.get('cache-control')).to.equal('no-store');
    expect(res.headers.get('content-type')).to.match(/^text\/plain; version=0\.0\.4; charset=utf-8$/);
    const s = new Scrape(await res.text());
    const missing = SERVICE_METRICS.filter((m) => !s.has(m));
    expect(missing, 'metrics missing from the exposition').to.deep.equal([]);
    // prom-client's default (process) metrics, on the app's own registry.
    for (const m of ['process_cpu_user_seconds_total', 'process_resident_memory_bytes', 'nodejs_eventloop_lag_seconds', 'nodejs_heap_size_used_bytes']) {
      expect(s.has(m), m).to.equal(true);
    }
    expect(s.get('stage_radio_workers')).to.equal(app.pool.workers.length);
    for (const w of app.pool.workers) {
      expect(s.get('stage_radio_worker_routers', { worker: String(w.index) })).to.equal(0);
      expect(s.get('stage_radio_worker_cpu_seconds_total', { worker: String(w.index) })).to.be.a('number').and.at.least(0);
    }
  });

  it('follows the service: performers, mix inputs, consumers, on air, listeners, segment latency, lag, uploads, sockets, FFmpeg restarts', async () => {
    const s0 = await scrape();
    expect(s0.get('stage_radio_stages_live')).to.equal(0);
    expect(s0.get('stage_radio_performers')).to.equal(0);
    expect(s0.get('stage_radio_consumers')).to.equal(0);
    const stageSockets0 = s0.get('stage_radio_socketio_connections', { namespace: '/stage' })!;
    const listenSockets0 = s0.get('stage_radio_socketio_connections', { namespace: '/listen' })!;
    const restarts0 = s0.get('stage_radio_ffmpeg_restarts_total')!;
    const latencyCount0 = s0.get('stage_radio_segment_latency_seconds_count')!;

    // Two performers join over signaling (a seat each, no media).
    const stage = await createStage(app, 'Metrics');
    for (const name of ['Ann', 'Bob']) {
      const c = await connectClient(app.url);
      clients.push(c);
      expect((await c.request('join', { stageId: stage.id, key: stage.performerKey, displayName: name })).ok).to.equal(true);
    }
    clients.push(await connectClient(app.url, '/listen'));
    const s1 = await scrape();
    expect(s1.get('stage_radio_performers')).to.equal(2);
    expect(s1.get('stage_radio_stage_performers', { stage: stage.id })).to.equal(2);
    expect(s1.get('stage_radio_stages_open')).to.equal(1);
    expect(s1.get('stage_radio_stages_live')).to.equal(0);
    expect(s1.get('stage_radio_socketio_connections', { namespace: '/stage' })).to.equal(stageSockets0 + 2);
    expect(s1.get('stage_radio_socketio_connections', { namespace: '/listen' })).to.equal(listenSockets0 + 1);
    const routers = app.pool.workers.reduce((n, w) => n + (s1.get('stage_radio_worker_routers', { worker: String(w.index) }) ?? 0), 0);
    expect(routers, 'one router for the open stage').to.equal(1);

    // On air, with two synthetic Opus senders fed into the mix (a mixer consumer each).
    await transition(app, stage.id, 'start');
    const mixer = app.registry.get(stage.id)!.broadcast!.mixer;
    const tone = await encodeTone(440, 2);
    for (const id of ['synth-a', 'synth-b']) {
      const p = await PacketPerformer.start(app.registry.get(stage.id)!.router, tone);
      senders.push(p);
      await mixer.attach(id, p.producer, id);
    }
    const s2 = await scrape();
    expect(s2.get('stage_radio_stages_live')).to.equal(1);
    expect(s2.get('stage_radio_mix_inputs')).to.equal(2);
    expect(s2.get('stage_radio_stage_mix_inputs', { stage: stage.id })).to.equal(2);
    expect(s2.get('stage_radio_consumers')).to.equal(2);
    expect(s2.get('stage_radio_stage_consumers', { stage: stage.id })).to.equal(2);

    // Segments get listed: the latency histogram counts them, and the live edge is close behind the wall clock.
    const s3 = await eventually(scrape, (s) => (s.get('stage_radio_segment_latency_seconds_count') ?? 0) >= latencyCount0 + 4, 20_000, 500);
    const count = s3.get('stage_radio_segment_latency_seconds_count')! - latencyCount0;
    const meanLatency = (s3.get('stage_radio_segment_latency_seconds_sum')! - s0.get('stage_radio_segment_latency_seconds_sum')!) / count;
    expect(count).to.be.at.least(4);
    const lags: number[] = [];
    for (let i = 0; i < 5; i++) {
      lags.push((await scrape()).get('stage_radio_mixer_lag_seconds', { stage: stage.id })!);
      await sleep(300);
    }
    console.log(`      ${count} segments listed, mean write latency ${(meanLatency * 1000).toFixed(0)} ms; mixer lag samples ${lags.map((l) => l.toFixed(2)).join(', ')} s`);
    expect(meanLatency, 'mean segment write latency (s)').to.be.within(0, 2);
    for (const lag of lags) expect(lag, 'mixer lag (s)').to.be.within(0, 3);

    // Listeners: distinct User-Agents, and distinct addresses through a loopback proxy (X-Forwarded-For).
    const playlist = `${app.url}/live/${stage.id}/index.m3u8`;
    const fetchAs = async (headers: Record<string, string>) => {
      const r = await fetch(playlist, { headers });
      expect(r.status).to.equal(200);
      await r.arrayBuffer();
    };
    for (let i = 0; i < 5; i++) {
      await fetchAs({ 'user-agent': `player-${i}` });
      await fetchAs({ 'user-agent': `player-${i}` }); // a refetch by the same player counts once
    }
    for (const ip of ['203.0.113.7', '203.0.113.8', '198.51.100.1']) await fetchAs({ 'user-agent': 'player-0', 'x-forwarded-for': ip });
    // Not a listener: HEAD, an unknown stage, another file.
    await fetch(playlist, { method: 'HEAD', headers: { 'user-agent': 'prober' } });
    await fetch(`${app.url}/live/nosuchstage/index.m3u8`, { headers: { 'user-agent': 'ghost' } });
    const s4 = await scrape();
    expect(s4.get('stage_radio_stage_listeners', { stage: stage.id }), 'distinct IP + User-Agent').to.equal(8);
    expect(s4.get('stage_radio_listeners')).to.equal(8);
    expect(s4.get('stage_radio_stage_listeners', { stage: 'nosuchstage' })).to.equal(undefined);

    // Uploads: the local archive store takes the segments as they are finished.
    const s5 = await eventually(scrape, (s) => (s.get('stage_radio_uploads_total') ?? 0) >= 2, 15_000, 500);
    expect(s5.get('stage_radio_uploads_total')).to.be.at.least(2);
    expect(s5.get('stage_radio_upload_queue_depth')).to.be.a('number').and.at.least(0);
    expect(s5.get('stage_radio_upload_queue_objects', { state: 'failed' })).to.equal(0);
    expect(s5.get('stage_radio_upload_failures_total')).to.equal(0);

    // The workers' CPU: a percentage once two samples exist, and the cumulative seconds grow.
    const w = app.registry.get(stage.id)!.worker;
    const slot = String(app.pool.workers.find((p) => p.worker === w)!.index);
    const cpu0 = s5.get('stage_radio_worker_cpu_seconds_total', { worker: slot })!;
    await sleep(1200);
    const s6 = await scrape();
    expect(s6.get('stage_radio_worker_cpu_percent', { worker: slot })).to.be.a('number').and.within(0, 200);
    expect(s6.get('stage_radio_worker_cpu_seconds_total', { worker: slot })).to.be.above(cpu0);

    // FFmpeg killed: the supervisor restarts it and the counter says so.
    const oldPid = mixer.ffmpeg.pid!;
    process.kill(oldPid, 'SIGKILL');
    const s7 = await eventually(scrape, (s) => s.get('stage_radio_ffmpeg_restarts_total') === restarts0 + 1, 10_000, 250);
    expect(s7.get('stage_radio_ffmpeg_restarts_total')).to.equal(restarts0 + 1);
    expect(mixer.ffmpeg.pid).to.not.equal(oldPid);
    const s8 = await eventually(scrape, (s) => (s.get('stage_radio_mixer_lag_seconds', { stage: stage.id }) ?? 99) < 3, 10_000, 300);
    console.log(`      after the FFmpeg restart: mixer lag ${s8.get('stage_radio_mixer_lag_seconds', { stage: stage.id })?.toFixed(2)} s`);

    // Off air and everyone gone: back to zero, and the per-stage series are dropped.
    for (const p of senders.splice(0)) p.stop();
    await transition(app, stage.id, 'stop');
    for (const c of clients.splice(0)) c.close();
    const s9 = await eventually(scrape, (s) => s.get('stage_radio_performers') === 0 && s.get('stage_radio_stages_open') === 0, 10_000, 250);
    expect(s9.get('stage_radio_stages_live')).to.equal(0);
    expect(s9.get('stage_radio_consumers')).to.equal(0);
    expect(s9.get('stage_radio_stage_performers', { stage: stage.id })).to.equal(undefined);
    expect(s9.get('stage_radio_mixer_lag_seconds', { stage: stage.id })).to.equal(undefined);
    expect(s9.get('stage_radio_socketio_connections', { namespace: '/stage' })).to.equal(stageSockets0);
  });

  it('estimates listeners over a sliding window, with bounded memory', () => {
    const est = new ListenerEstimator({ windowSeconds: 30, maxClientsPerStage: 3 });
    const t = 1_000_000;
    est.seen('stage1', '10.0.0.1', 'A', t);
    est.seen('stage1', '10.0.0.1', 'B', t + 1000);
    est.seen('stage1', '10.0.0.2', 'A', t + 2000);
    est.seen('stage2', '10.0.0.1', 'A', t + 2000);
    expect(est.count('stage1', t + 2000)).to.equal(3);
    expect(est.count('stage2', t + 2000)).to.equal(1);
    // The first client refetches: it stays; the others expire 30 s after their last fetch.
    est.seen('stage1', '10.0.0.1', 'A', t + 25_000);
    expect(est.count('stage1', t + 32_500)).to.equal(1);
    expect(est.count('stage1', t + 55_001)).to.equal(0);
    expect([...est.counts(t + 55_001).keys()]).to.deep.equal([]);
    // At most maxClientsPerStage per stage: the least recently seen is dropped.
    for (let i = 0; i < 10; i++) est.seen('stage3', `10.0.1.${i}`, 'A', t + i);
    expect(est.count('stage3', t + 10)).to.equal(3);
    // A long User-Agent is cut: two that differ only past 256 characters are one client.
    est.seen('stage4', '10.0.0.1', `${'x'.repeat(256)}1`, t);
    est.seen('stage4', '10.0.0.1', `${'x'.repeat(256)}2`, t);
    expect(est.count('stage4', t)).to.equal(1);
  });

  it('default metrics go on per-app registries, and what they start is released', async () => {
    const a = new Registry();
    const b = new Registry();
    const ra = collectReleasableDefaultMetrics(a);
    const rb = collectReleasableDefaultMetrics(b);
    try {
      // The event-loop-delay monitor and the GC observer: both captured, or a prom-client upgrade changed them.
      expect(ra.handles).to.equal(2);
      expect(rb.handles).to.equal(2);
      expect(await a.metrics()).to.include('nodejs_eventloop_lag_p99_seconds');
      expect(await b.metrics()).to.include('process_cpu_user_seconds_total');
    } finally {
      ra.release();
      ra.release();
      rb.release();
    }
  });
});
