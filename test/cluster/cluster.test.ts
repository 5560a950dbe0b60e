// Cluster mode (docs/cluster.md) on one machine: three nodes (each its own port, RTC port range, CDN folder, spool and
// journal) sharing a real redis-server, a real PostgreSQL and one archive folder. The nodes run in this process (each
// a whole app with its own media workers); what a node's death does needs processes and is tested apart.
import fs from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import type { Browser } from 'playwright-core';
import type { App } from '../../services/app.ts';
import { FENCE_MS, LEASE_MS, LEASE_RENEW_MS } from '../../services/cluster/cluster.ts';
import type { NodeList } from '../../services/shared/rest.ts';
import { parseMediaPlaylist } from '../../pipelines/hls/playlist.ts';
import { createStage, startTestApp, TEST_ADMIN_TOKEN } from '../support/app.ts';
import { recordings, waitArchived } from '../support/archive.ts';
import { decodeToPcm, toneDb } from '../support/audio.ts';
import { eventually, launchPerformerBrowser } from '../support/browser.ts';
import { segmentsInput } from '../support/hls.ts';
import { TempDir, toneWav } from '../support/media.ts';
import { startPostgres, type PostgresServer } from '../support/postgres.ts';
import { clusterNodeEnv } from '../support/cluster.ts';
import { startClusterNginx, type Nginx } from '../support/nginx.ts';
import { LeaseRepo } from '../../services/db/leases.ts';
import { PartitionableLink } from '../support/partition.ts';
import { startRedis, type RedisServer } from '../support/redis.ts';
import { SyntheticPerformer } from '../support/synthetic.ts';
import { connectClient, type TestClient } from '../support/client.ts';
import { io as ioClient } from 'socket.io-client';
import type { ListenContract } from '../../services/shared/listen.ts';
import type { TimelineEvent } from '../../services/shared/timeline.ts';
import type { AdminSnapshot } from '../../services/shared/admin.ts';

const admin = { authorization: `Bearer ${TEST_ADMIN_TOKEN}`, 'content-type': 'application/json' };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function post(url: string, body: unknown = {}): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(url, { method: 'POST', headers: admin, body: JSON.stringify(body) });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function nodesOf(app: App): Promise<NodeList> {
  const res = await fetch(`${app.url}/api/nodes`, { headers: admin });
  expect(res.status, 'GET /api/nodes').to.equal(200);
  return (await res.json()) as NodeList;
}

/** What a listener of `entry` hears of the stage: the live playlist and its last `count` segments, fetched through `entry`. */
async function listenThrough(entry: App | string, stageId: string, dir: TempDir, count = 3): Promise<Float32Array> {
  const entryUrl = typeof entry === 'string' ? entry : entry.url;
  const base = `${entryUrl}/live/${stageId}/`;
  const res = await fetch(`${base}index.m3u8`);
  expect(res.status, `playlist of ${stageId} through ${entryUrl}`).to.equal(200);
  const playlist = parseMediaPlaylist(await res.text());
  const segments = playlist.segments.slice(-count);
  expect(segments.length, 'segments listed').to.equal(count);
  const local = dir.file(`listen-${stageId}-${Date.now()}`);
  fs.mkdirSync(local, { recursive: true });
  for (const uri of new Set(segments.flatMap((s) => [s.uri, ...(s.map ? [s.map] : [])]))) {
    const r = await fetch(`${base}${uri}`);
    expect(r.status, `${uri} through ${entryUrl}`).to.equal(200);
    fs.writeFileSync(path.join(local, uri), Buffer.from(await r.arrayBuffer()));
  }
  return decodeToPcm(segmentsInput(local, segments));
}

describe('cluster: three nodes through Redis (in one process)', function () {
  this.timeout(180_000);
  let tmp: TempDir;
  let redis: RedisServer;
  let pg: PostgresServer;
  let spy: Redis;
  const nodes: App[] = [];
  const senders: SyntheticPerformer[] = [];
  let browser: Browser | null = null;
  /** Stages on air in this file, with the node that serves each. */
  const onAir = new Map<string, App>();
  /** The tone each spread stage carries. */
  const tones = new Map<string, number>();
  let nginx: Nginx | null = null;
  /** node-3 reaches Redis through this link, which the partition test cuts. */
  let link: PartitionableLink;
  /** Stages recorded by more than one node (taken over), with the nodes in order. */
  const recordedBy = new Map<string, string[]>();

  const ownerOf = (stageId: string): App[] => nodes.filter((n) => n.registry.get(stageId)?.onAir);

  before(async () => {
    tmp = new TempDir();
    redis = await startRedis();
    pg = await startPostgres();
    spy = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
    spy.on('error', () => undefined);
    await spy.connect();
    link = await PartitionableLink.open({ host: '127.0.0.1', port: redis.port });
    for (let i = 1; i <= 3; i++) {
      const redisUrl = i === 3 ? `redis://127.0.0.1:${link.port}` : redis.url;
      nodes.push(await startTestApp({ ...clusterNodeEnv(i, { redisUrl, databaseUrl: pg.url, tmp, rtcBase: 41000 }), HLS_SEGMENT_SECONDS: '1' }));
    }
  });

  after(async () => {
    await nginx?.stop();
    await browser?.close();
    await Promise.all(senders.map((s) => s.stop()));
    link?.heal(); // node-3 leaves the cluster cleanly only if it reaches Redis
    await Promise.all(nodes.map((n) => n.close()));
    spy?.disconnect();
    await link?.close();
    await redis?.close();
    await pg?.stop();
    tmp?.remove();
  });

  it('every node lists the three live nodes, each once, with its own address', async () => {
    for (const app of nodes) {
      const list = await nodesOf(app);
      expect(list.cluster).to.equal(true);
      expect(list.nodes.map((n) => n.id).sort()).to.deep.equal(['node-1', 'node-2', 'node-3']);
      const self = list.nodes.filter((n) => n.self);
      expect(self.map((n) => n.id), 'the answering node marks itself').to.deep.equal([app.cluster!.nodeId]);
      expect(self[0]!.url).to.equal(app.url);
      expect(list.nodes.every((n) => n.workers === 1 && !n.draining)).to.equal(true);
    }
  });

  it("resume tokens are the cluster's: issued on one node, redeemed once on another, only for their stage; a new one retires the old", async () => {
    const [a, b] = [nodes[0]!.cluster!.resumeTokens, nodes[1]!.cluster!.resumeTokens];
    const first = await a.issue('stage-r', 'performer-r');
    expect(await b.redeem('stage-other', first), "another stage's").to.equal(null);
    expect(await b.redeem('stage-r', first), 'redeemed on another node').to.equal('performer-r');
    expect(await nodes[2]!.cluster!.resumeTokens.redeem('stage-r', first), 'single use').to.equal(null);
    const older = await a.issue('stage-r', 'performer-r');
    const newer = await b.issue('stage-r', 'performer-r');
    expect(await a.redeem('stage-r', older), 'retired by the newer one').to.equal(null);
    expect(await a.redeem('stage-r', newer)).to.equal('performer-r');
  });

  it('twelve stages created and started through one node are placed four per node; each plays through that node with its own tone', async () => {
    const entry = nodes[0]!;
    const freqs = Array.from({ length: 12 }, (_, i) => 330 + 110 * i);
    const ids: string[] = [];
    for (const f of freqs) ids.push((await createStage(entry, `Spread ${f}`)).id);
    for (const id of ids) {
      const r = await post(`${entry.url}/api/stages/${id}/start`);
      expect(r.status, `start ${id} through node-1: ${JSON.stringify(r.body)}`).to.equal(200);
      expect(r.body['status']).to.equal('live');
      // Links in the answer point where the client is, whichever node served the stage.
      expect(String(r.body['hlsUrl'])).to.equal(`${entry.url}/live/${id}/index.m3u8`);
    }
    const perNode = nodes.map((n) => ids.filter((id) => n.registry.get(id)?.onAir).length);
    expect(perNode, 'stages on air per node').to.deep.equal([4, 4, 4]);
    for (const id of ids) {
      const owners = ownerOf(id);
      expect(owners.length, `${id} on air on exactly one node`).to.equal(1);
      onAir.set(id, owners[0]!);
      expect(await spy.get(`sr:stage:${id}:owner`), 'its lease').to.equal(owners[0]!.cluster!.nodeId);
    }
    // A tone into each stage's router, on its owner.
    for (const [i, id] of ids.entries()) {
      const stage = onAir.get(id)!.registry.get(id)!;
      const sender = await SyntheticPerformer.start(stage.router, freqs[i]!);
      senders.push(sender);
      await stage.broadcast!.mixer.attach(`tone-${freqs[i]}`, sender.producer, `Tone ${freqs[i]}`);
      tones.set(id, freqs[i]!);
    }
    await sleep(5000);
    for (const [i, id] of ids.entries()) {
      const pcm = await listenThrough(entry, id, tmp);
      const own = toneDb(pcm, freqs[i]!);
      expect(own, `${freqs[i]} Hz heard on ${id} through node-1 (served by ${onAir.get(id)!.cluster!.nodeId})`).to.be.greaterThan(-30);
      for (const other of freqs.filter((f) => f !== freqs[i])) expect(toneDb(pcm, other), `no ${other} Hz on ${id}`).to.be.lessThan(own - 30);
    }
    const list = await nodesOf(entry);
    expect(list.nodes.map((n) => n.onAir), 'each node reports its four stages on air').to.deep.equal([4, 4, 4]);
  });

  it("one public address through Debian's nginx (infra/nginx/cluster.conf, requests spread over the nodes): each stage plays there with its own tone, whichever node serves it, and its links point there", async () => {
    const tls = nodes[0]!.config.tls;
    if (tls.mode !== 'self-signed') throw new Error('the test nodes make their certificate');
    nginx = await startClusterNginx({ nodePorts: nodes.map((n) => n.port), tlsDir: tls.dir });
    for (const [id, freq] of tones) {
      const pcm = await listenThrough(nginx.httpUrl, id, tmp);
      const own = toneDb(pcm, freq);
      expect(own, `${freq} Hz on ${id} through nginx`).to.be.greaterThan(-30);
      for (const other of [...tones.values()].filter((f) => f !== freq)) expect(toneDb(pcm, other), `no ${other} Hz on ${id}`).to.be.lessThan(own - 30);
      const view = await fetch(`${nginx.httpUrl}/api/stages/${id}`);
      expect(view.status).to.equal(200);
      const body = (await view.json()) as { hlsUrl: string; listenUrl: string; status: string };
      expect(body.status).to.equal('live');
      expect(body.hlsUrl, 'the HLS URL is the public one').to.equal(`${nginx.httpUrl}/live/${id}/index.m3u8`);
    }
    // The requests were spread: every node answered some of them (its access log names the upstream).
    const log = fs.readFileSync(path.join(path.dirname(nginx.conf.match(/access_log (\S+) main;/)![1]!), 'access.log'), 'utf8');
    for (const n of nodes) expect(log, `requests sent to node on port ${n.port}`).to.include(`up=127.0.0.1:${n.port}`);
  });

  it("rate limits are the cluster's: writes spread over the three nodes are limited at one node's budget, each counted against the client's address, also when passed on to the stage's owner", async () => {
    const budget = nodes[0]!.config.rateLimits.writePerMinute;
    const client = '203.0.113.77';
    const headers = { authorization: 'Bearer not-the-token', 'content-type': 'application/json', 'x-forwarded-for': client };
    const attempts = budget * 3 / 2;
    const t0 = performance.now();
    const statuses: number[] = [];
    let lastRefusedSent = 0; // when the last refused write was sent: the bucket held under one token after that
    for (let i = 0; i < attempts; i++) {
      const sent = performance.now();
      const res = await fetch(`${nodes[i % 3]!.url}/api/stages`, { method: 'POST', headers, body: '{"title":"x"}' });
      statuses.push(res.status);
      if (res.status === 429) lastRefusedSent = sent;
      await res.body?.cancel();
    }
    const elapsedS = (performance.now() - t0) / 1000;
    const allowed = statuses.filter((x) => x !== 429).length;
    // Each node alone would let all of them through (half its budget each); the bucket refills at budget/60 per second.
    const refill = Math.ceil((elapsedS * budget) / 60);
    console.log(`      ${attempts} writes over 3 nodes in ${elapsedS.toFixed(1)} s: ${allowed} let through (budget ${budget}, refill in that time ≤ ${refill}), ${statuses.length - allowed} refused with 429`);
    expect(allowed, 'let through').to.be.at.least(budget);
    expect(allowed, 'let through').to.be.at.most(budget + refill);
    expect(statuses.filter((x) => x !== 429 && x !== 401), 'every write let through reached the route (wrong token)').to.deep.equal([]);
    // A write to a stage another node serves is passed on and counted against its own client, not the passing node.
    const [stageId, owner] = [...onAir][0]!;
    const entry = nodes.find((n) => n !== owner)!;
    const other = await fetch(`${entry.url}/api/stages/${stageId}/events`, {
      method: 'POST',
      headers: { ...admin, 'x-forwarded-for': '203.0.113.78' },
      body: JSON.stringify({ type: 'marker', label: 'passed on' }),
    });
    expect(other.status, 'another client, passed on to the owner').to.equal(201);
    // The client is over its budget: a burst of its writes passed on to the owner is limited too. The bucket refills
    // while the test runs (budget/60 a second), so the bound counts what can have come back since the last refusal;
    // counted against the passing node instead, every write of the burst would be let through.
    expect(lastRefusedSent, 'the spread writes ran into the limit').to.be.greaterThan(0);
    const burst = 20;
    const burstStatuses: number[] = [];
    for (let i = 0; i < burst; i++) {
      const res = await fetch(`${entry.url}/api/stages/${stageId}/events`, {
        method: 'POST',
        headers: { ...admin, 'x-forwarded-for': client },
        body: JSON.stringify({ type: 'marker', label: `over budget ${i}` }),
      });
      burstStatuses.push(res.status);
      await res.body?.cancel();
    }
    const sinceRefusalS = (performance.now() - lastRefusedSent) / 1000;
    const mayRefill = Math.ceil((sinceRefusalS * budget) / 60);
    const burstAllowed = burstStatuses.filter((x) => x !== 429).length;
    console.log(`      ${burst} writes of the same client passed on to the owner: ${burstAllowed} let through (refill since its last refusal ≤ ${mayRefill})`);
    expect(mayRefill, 'the burst was quick enough for the limit to show').to.be.lessThan(burst / 2);
    expect(burstAllowed, 'the client over its budget, passed on to the owner: let through').to.be.at.most(mayRefill);
    expect(burstStatuses.filter((x) => x !== 429 && x !== 201), 'passed-on writes are let through (201) or refused (429)').to.deep.equal([]);
  });

  it('a browser performer opening a stage on a node that does not serve it is moved to the owner by the page and heard in the mix', async () => {
    const stage = await createStage(nodes[0]!, 'Wrong node');
    const r = await post(`${nodes[0]!.url}/api/stages/${stage.id}/start`);
    expect(r.status).to.equal(200);
    const served = ownerOf(stage.id)[0]!;
    const entry = nodes.find((n) => n !== served)!;
    browser = await launchPerformerBrowser(toneWav(tmp, 990));
    const page = await browser.newPage();
    page.on('pageerror', (err) => process.stderr.write(`[page Mover] ${err.message}\n`));
    await page.goto(`${entry.url}/stage/${stage.id}?key=${encodeURIComponent(stage.performerKey)}&name=Mover&raw=1`);
    await page.getByRole('button', { name: 'Join stage' }).click();
    // The page follows the server's WRONG_NODE by itself, to the same page on the owner, and joins there.
    await page.waitForURL((u) => u.origin === new URL(served.url).origin, { timeout: 15_000 });
    await page.waitForFunction(() => document.body.dataset['state'] === 'publishing', null, { timeout: 15_000 });
    expect(new URL(page.url()).searchParams.get('join'), 'the one-shot join flag is gone from the address').to.equal(null);
    expect(served.registry.get(stage.id)!.size, 'one performer on the owner').to.equal(1);
    expect(entry.registry.get(stage.id), 'no copy of the stage on the node first reached').to.equal(undefined);
    await sleep(4000);
    const pcm = await listenThrough(entry, stage.id, tmp);
    expect(toneDb(pcm, 990), '990 Hz of the browser in the mix, heard through the first node').to.be.greaterThan(-30);
    onAir.set(stage.id, served);
  });

  it("a listener page asking to speak on a node that does not serve the stage is moved to the owner by the page with its name and topic; pressed again there, its call waits in the owner's queue", async () => {
    const [id, owner] = [...onAir].find(([, n]) => n === nodes[0])!;
    const entry = nodes[1]!;
    const page = await browser!.newPage();
    page.on('pageerror', (err) => process.stderr.write(`[page Caller] ${err.message}\n`));
    try {
      await page.goto(`${entry.url}/listen/${id}`);
      await page.getByLabel('Name on air').fill('Cleo');
      await page.getByLabel('Topic (optional)').fill('From another node');
      await page.getByRole('button', { name: 'Request to speak' }).click();
      await page.waitForURL((u) => u.origin === new URL(owner.url).origin, { timeout: 15_000 });
      // There, the form is filled in again and nothing is asked until the caller presses the button once more.
      await page.waitForFunction(() => document.getElementById('call-error')?.textContent !== '', null, { timeout: 15_000 });
      expect(await page.getByLabel('Name on air').inputValue(), 'the name came along').to.equal('Cleo');
      expect(await page.getByLabel('Topic (optional)').inputValue(), 'the topic came along').to.equal('From another node');
      expect(owner.calls.queue(id), 'nothing asked by the address alone').to.deep.equal([]);
      await page.getByRole('button', { name: 'Request to speak' }).click();
      await page.waitForFunction(() => document.body.dataset['call'] === 'waiting', null, { timeout: 15_000 });
      const params = new URL(page.url()).searchParams;
      expect(['call', 'name', 'topic'].map((k) => params.get(k)), 'the one-shot request is gone from the address').to.deep.equal([null, null, null]);
      const queue = owner.calls.queue(id);
      expect(queue.map((c) => [c.name, c.topic, c.status]), "the owner's call queue").to.deep.equal([['Cleo', 'From another node', 'waiting']]);
      expect(entry.calls.queue(id), 'nothing queued on the node first reached').to.deep.equal([]);
    } finally {
      await page.close();
    }
    // The page closed: the call is cancelled (the caller left).
    const left = await eventually(async () => owner.calls.queue(id).filter((c) => c.status === 'waiting').length, (n) => n === 0, 10_000);
    expect(left, 'the call ends with its page').to.equal(0);
  });

  /** Listeners of `stageId`, one on each node, subscribed; each collects the timeline events it is sent. */
  async function listenersOn(stageId: string): Promise<{ clients: TestClient<ListenContract>[]; got: TimelineEvent[][]; close: () => void }> {
    const clients = await Promise.all(nodes.map((n) => connectClient<ListenContract>(n.url, '/listen')));
    const got = clients.map(() => [] as TimelineEvent[]);
    clients.forEach((c, i) => c.socket.on('timelineEvent', ({ event }: { event: TimelineEvent }) => got[i]!.push(event)));
    for (const c of clients) expect((await c.request('subscribe', { stageId })).ok, 'subscribed').to.equal(true);
    return { clients, got, close: () => clients.forEach((c) => c.close()) };
  }

  /** A comment posted through node `via` on `stageId`: its event reaches the listeners of every node, and is stored once. */
  async function commentReachesEveryNode(stageId: string, via: App, text: string): Promise<void> {
    const l = await listenersOn(stageId);
    try {
      const poster = l.clients[nodes.indexOf(via)]!;
      const res = await poster.request('comment', { text, name: 'Ann' });
      if (!res.ok) throw new Error(`comment through ${via.cluster!.nodeId}: ${res.error.code} ${res.error.message}`);
      const id = res.data.event.id;
      const seen = await eventually(async () => l.got.map((g) => g.filter((e) => e.id === id).length), (v) => v.every((n) => n >= 1), 5000, 100);
      expect(seen, `the comment's event, as received by the listener on node-1, node-2, node-3`).to.deep.equal([1, 1, 1]);
      const stored = await eventually(
        async () => (await nodes[0]!.db.query<{ n: number }>('select count(*)::int as n from timeline_events where id = $1', [id])).rows[0]!.n,
        (n) => n === 1,
        5000,
      );
      expect(stored, 'stored once').to.equal(1);
    } finally {
      l.close();
    }
  }

  it("cross-node events: a listener's comment posted on a node that does not serve the stage reaches the stage's listeners on every node and is stored once; a caller there is sent to the owner", async () => {
    const [id, owner] = [...onAir].find(([, n]) => n === nodes[0])!;
    const elsewhere = nodes[1]!;
    await commentReachesEveryNode(id, elsewhere, 'hello from another node');
    // A marker posted on the owner (REST) reaches the listeners of the other nodes too.
    const l = await listenersOn(id);
    try {
      const res = await fetch(`${owner.url}/api/stages/${id}/events`, { method: 'POST', headers: admin, body: JSON.stringify({ type: 'marker', label: 'Cross-node' }) });
      expect(res.status, 'marker posted').to.equal(201);
      const markerId = ((await res.json()) as { event: TimelineEvent }).event.id;
      const seen = await eventually(async () => l.got.map((g) => g.filter((e) => e.id === markerId).length), (v) => v.every((n) => n >= 1), 5000, 100);
      expect(seen, 'the marker, as received on node-1, node-2, node-3').to.deep.equal([1, 1, 1]);
      // Call-in needs the stage's media: a listener asking on another node is told where (WRONG_NODE, the owner's URL).
      const call = await l.clients[1]!.request('requestCall', { name: 'Caller' });
      expect(call.ok, 'a call asked on a node that does not serve the stage').to.equal(false);
      if (!call.ok) {
        expect(call.error.code).to.equal('WRONG_NODE');
        expect((call.error as { ownerUrl?: string }).ownerUrl, 'the owner').to.equal(owner.cluster!.publicUrl);
      }
      // A stage on air nowhere: the comment is refused as on one node.
      const idle = await createStage(nodes[0]!, 'Never on air');
      const c = await l.clients[2]!.request('subscribe', { stageId: idle.id });
      expect(c.ok).to.equal(true);
      const refused = await l.clients[2]!.request('comment', { text: 'anyone?', name: 'Ann' });
      expect(refused.ok ? 'ok' : refused.error.code, 'a comment on a stage on air nowhere').to.equal('INVALID_STATE');
    } finally {
      l.close();
    }
  });

  it("the admin view on any node covers every node: each node's workers, and every stage on air marked with the node that serves it", async () => {
    const socket = ioClient(`${nodes[1]!.url}/admin`, { transports: ['websocket'], reconnection: false, forceNew: true, auth: { token: TEST_ADMIN_TOKEN } });
    try {
      const snap = await new Promise<AdminSnapshot>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('no complete snapshot in 10 s')), 10_000);
        socket.on('snapshot', (s: AdminSnapshot) => {
          if (new Set(s.workers.map((w) => w.node)).size < 3) return;
          clearTimeout(t);
          resolve(s);
        });
      });
      expect(snap.node, 'sent by node-2').to.equal('node-2');
      expect([...new Set(snap.workers.map((w) => w.node))].sort(), "workers' nodes").to.deep.equal(['node-1', 'node-2', 'node-3']);
      for (const [id, n] of onAir) {
        const rows = snap.stages.filter((s) => s.id === id);
        expect(rows.map((r) => [r.node, r.status]), `${id} in the admin view`).to.deep.equal([[n.cluster!.nodeId, 'live']]);
      }
      expect(snap.totals.stagesLive, 'stages on air, all nodes').to.equal(onAir.size);
      expect(snap.problems.filter((p) => /did not answer/.test(p)), 'every node answered').to.deep.equal([]);
    } finally {
      socket.close();
    }
  });

  it('Redis restarted mid-show (empty): no broadcast stops, every stage keeps its one owner, whose lease is written again, and cross-node events resume', async () => {
    const before = [...onAir].map(([id, n]) => [id, n.registry.get(id)!.broadcast!.id, n.cluster!.nodeId] as const);
    await redis.stop();
    await sleep(1500);
    await redis.start();
    // Each owner writes its leases again at its next renewal (and at once on reconnecting); nobody else has them.
    const leases = await eventually(
      async () => Promise.all(before.map(([id]) => spy.get(`sr:stage:${id}:owner`).catch(() => null))),
      (v) => v.every((x, i) => x === before[i]![2]),
      LEASE_RENEW_MS * 3,
    );
    expect(leases, 'leases after the restart').to.deep.equal(before.map((b) => b[2]));
    for (const [id, broadcastId, nodeId] of before) {
      const owners = ownerOf(id);
      expect(owners.map((n) => n.cluster!.nodeId), `${id} on air on one node`).to.deep.equal([nodeId]);
      expect(owners[0]!.registry.get(id)!.broadcast!.id, 'the same broadcast').to.equal(broadcastId);
    }
    const list = await eventually(() => nodesOf(nodes[1]!), (l) => l.nodes.length === 3, 5000);
    expect(list.nodes.length, 'all three nodes beat again').to.equal(3);
    // Cross-node events resume: a comment through another node reaches every node's listeners again.
    const [id] = [...onAir].find(([, n]) => n === nodes[0])!;
    await commentReachesEveryNode(id, nodes[2]!, 'hello after the restart');
  });

  it('a node whose lease another node holds lets its copy go at once (a stage is never mixed twice); once that lease is gone, a node continues the stage', async () => {
    const [id, owner] = [...onAir].find(([, n]) => n !== nodes[2])!;
    await spy.set(`sr:stage:${id}:owner`, 'node-9', 'PX', 60_000);
    const gone = await eventually(async () => owner.registry.get(id), (s) => s === undefined, LEASE_RENEW_MS * 2 + 1000);
    expect(gone, 'the stage closed on its old owner').to.equal(undefined);
    await sleep(2000);
    expect(ownerOf(id), 'nobody serves it while node-9 holds its lease').to.deep.equal([]);
    await spy.del(`sr:stage:${id}:owner`);
    // Handed over (its broadcast ended, the stage still live): the orphan sweep places it and that node continues it.
    const on = await eventually(async () => ownerOf(id), (o) => o.length > 0, 10_000);
    expect(on.length, 'on air again on one node').to.equal(1);
    expect(await spy.get(`sr:stage:${id}:owner`), 'its lease').to.equal(on[0]!.cluster!.nodeId);
    onAir.set(id, on[0]!);
    recordedBy.set(id, [owner.cluster!.nodeId, on[0]!.cluster!.nodeId]);
    const history = await eventually(
      async () => (await new LeaseRepo(owner.db).ofStage(id)).map((l) => [l.nodeId, l.endReason]),
      (h) => h.length === 2,
      5000,
    );
    expect(history, 'the holdings of its lease').to.deep.equal([
      [owner.cluster!.nodeId, 'lost'],
      [on[0]!.cluster!.nodeId, null],
    ]);
  });

  it("a node cut off from Redis (its connection black-holed) gives its stages up before their leases can expire; other nodes continue them at the same address, never two at once; healed, it takes none back", async () => {
    const cutNode = nodes[2]!;
    const mine = [...onAir].filter(([, n]) => n === cutNode).map(([id]) => id);
    expect(mine.length, 'stages on air on node-3').to.be.greaterThan(0);
    const lastMsn = new Map<string, number>();
    for (const id of mine) lastMsn.set(id, parseMediaPlaylist(await (await fetch(`${nodes[0]!.url}/live/${id}/index.m3u8`)).text()).mediaSequence);
    // Every 50 ms: on which nodes each stage is on air (a stage is on air from its broadcast's start until its stage
    // has closed, FFmpeg and all).
    const twice: string[] = [];
    const stoppedAt = new Map<string, number>();
    const resumed = new Map<string, { at: number; node: App }>();
    const t0 = performance.now();
    const watch = setInterval(() => {
      const now = performance.now() - t0;
      for (const id of mine) {
        const on = nodes.filter((n) => n.registry.get(id)?.onAir);
        if (on.length > 1) twice.push(`${id} at ${Math.round(now)} ms on ${on.map((n) => n.cluster!.nodeId).join(' and ')}`);
        if (!cutNode.registry.get(id) && !stoppedAt.has(id)) stoppedAt.set(id, now);
        const other = on.find((n) => n !== cutNode);
        if (other && !resumed.has(id)) resumed.set(id, { at: now, node: other });
      }
    }, 50);
    link.cut();
    try {
      await eventually(async () => mine.every((id) => resumed.has(id)), (v) => v, 20_000, 100);
    } finally {
      clearInterval(watch);
      if (!mine.every((id) => resumed.has(id))) link.heal(); // failing: the rest of the file needs node-3 back
    }
    expect(twice, 'a stage on air on two nodes at once').to.deep.equal([]);
    for (const id of mine) {
      const stopped = stoppedAt.get(id);
      const back = resumed.get(id);
      expect(stopped, `${id} closed on node-3`).to.be.a('number');
      // Its last confirmed renewal was at most LEASE_RENEW_MS before the cut: its lease cannot expire sooner than this.
      expect(stopped!, `${id} closed on node-3 (ms after the cut) before its lease could expire`).to.be.lessThan(LEASE_MS - LEASE_RENEW_MS);
      expect(stopped!, `${id} kept on node-3 until its fence`).to.be.greaterThan(FENCE_MS - LEASE_RENEW_MS - 500);
      expect(back, `${id} on air on another node`).to.not.equal(undefined);
      expect(back!.at, `${id} on air elsewhere (ms after the cut) within 15 s`).to.be.lessThan(15_000);
      expect(await spy.get(`sr:stage:${id}:owner`), 'its lease').to.equal(back!.node.cluster!.nodeId);
      console.log(`      partition: ${id} off node-3 at ${(stopped! / 1000).toFixed(1)} s, on ${back!.node.cluster!.nodeId} at ${(back!.at / 1000).toFixed(1)} s`);
    }
    // The same address goes on through any node: numbers continuing after a DISCONTINUITY.
    for (const id of mine) {
      const pl = await eventually(
        async () => parseMediaPlaylist(await (await fetch(`${nodes[0]!.url}/live/${id}/index.m3u8`)).text()),
        (p) => p.segments.some((s) => s.discontinuity),
        10_000,
      );
      expect(pl.segments.some((s) => s.discontinuity), `${id}: a DISCONTINUITY where the new node starts`).to.equal(true);
      expect(pl.mediaSequence, `${id}: segment numbers continue`).to.be.greaterThan(lastMsn.get(id)!);
    }
    link.heal();
    const list = await eventually(() => nodesOf(nodes[0]!), (l) => l.nodes.some((n) => n.id === 'node-3'), 10_000);
    expect(list.nodes.map((n) => n.id).sort(), 'node-3 beats again').to.deep.equal(['node-1', 'node-2', 'node-3']);
    await sleep(3 * LEASE_RENEW_MS);
    for (const id of mine) {
      expect(ownerOf(id).map((n) => n.cluster!.nodeId), `${id} on air on its new node only`).to.deep.equal([resumed.get(id)!.node.cluster!.nodeId]);
      expect(await spy.get(`sr:stage:${id}:owner`), `${id}: its lease stays with the new node`).to.equal(resumed.get(id)!.node.cluster!.nodeId);
      onAir.set(id, resumed.get(id)!.node);
      recordedBy.set(id, [...(recordedBy.get(id) ?? ['node-3']), resumed.get(id)!.node.cluster!.nodeId]);
      // The history of ownership in PostgreSQL: node-3's holding ended as fenced, the new one open.
      const history = await eventually(
        async () => (await new LeaseRepo(nodes[0]!.db).ofStage(id)).map((l) => [l.nodeId, l.endReason]),
        (h) => h.length >= 2 && h.at(-2)![1] === 'fenced',
        5000,
      );
      expect(history.slice(-2), `${id}: the last two holdings of its lease`).to.deep.equal([
        ['node-3', 'fenced'],
        [resumed.get(id)!.node.cluster!.nodeId, null],
      ]);
    }
  });

  it('stops sent to any node end each broadcast on its owner, and each is archived by the node that recorded it', async () => {
    const entry = nodes[2]!;
    for (const [id] of onAir) {
      const r = await post(`${entry.url}/api/stages/${id}/stop`);
      expect(r.status, `stop ${id} through node-3: ${JSON.stringify(r.body)}`).to.equal(200);
    }
    for (const [id, owner] of onAir) {
      const { rec } = await waitArchived(entry.url, id, 30_000);
      expect(rec.status, `${id} archived`).to.equal('archived');
      const all = await eventually(() => recordings(entry.url, id), (r) => r.every((x) => x.status === 'archived'), 30_000);
      expect(all.map((r) => r.status), `${id}: every broadcast of it archived`).to.deep.equal(all.map(() => 'archived'));
      const { rows } = await owner.db.query<{ node_id: string }>('select node_id from broadcasts where stage_id = $1 order by started_at', [id]);
      expect(rows.map((r) => r.node_id), `${id}: the nodes that recorded it`).to.deep.equal(recordedBy.get(id) ?? [owner.cluster!.nodeId]);
      // The history of ownership: every holding but the owner's last one has ended (the owner holds the lease while
      // the stage's router is open, its synthetic senders on it).
      const history = await new LeaseRepo(owner.db).ofStage(id);
      expect(history.at(-1)!.nodeId, `${id}: the last holding of its lease`).to.equal(owner.cluster!.nodeId);
      expect(history.slice(0, -1).filter((l) => l.endedAt === null), `${id}: earlier holdings left open`).to.deep.equal([]);
    }
  });
});
