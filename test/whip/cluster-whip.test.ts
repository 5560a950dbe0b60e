// Cluster mode (docs/cluster.md): a WHIP encoder pointed at a node that does not serve the stage. That node passes the
// POST on to the owner (the SDP answer names the owner's media address), and the DELETE too: the encoder never needs
// to know which node serves the stage. Two nodes in this process on Debian's redis-server and a real PostgreSQL.
import fs from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import type { App } from '../../services/app.ts';
import { parseMediaPlaylist } from '../../pipelines/hls/playlist.ts';
import { createStage, startTestApp, TEST_ADMIN_TOKEN } from '../support/app.ts';
import { decodeToPcm, toneDb } from '../support/audio.ts';
import { eventually } from '../support/browser.ts';
import { segmentsInput } from '../support/hls.ts';
import { TempDir } from '../support/media.ts';
import { startPostgres, type PostgresServer } from '../support/postgres.ts';
import { clusterNodeEnv } from '../support/cluster.ts';
import { startRedis, type RedisServer } from '../support/redis.ts';
import { WhipPublisher } from '../support/whip.ts';

const TONE_HZ = 740;

describe('WHIP in cluster mode: an encoder pointed at a node that does not serve the stage', function () {
  this.timeout(120_000);
  let tmp: TempDir;
  let redis: RedisServer;
  let pg: PostgresServer;
  const nodes: App[] = [];
  let encoder: WhipPublisher | null = null;

  before(async () => {
    tmp = new TempDir();
    redis = await startRedis();
    pg = await startPostgres();
    for (let i = 1; i <= 2; i++) {
      nodes.push(
        await startTestApp(clusterNodeEnv(i, { redisUrl: redis.url, databaseUrl: pg.url, tmp, rtcBase: 47000 })),
      );
    }
  });

  after(async () => {
    await encoder?.close();
    await Promise.all(nodes.map((n) => n.close()));
    await redis?.close();
    await pg?.stop();
    tmp?.remove();
  });

  it('publishes through the other node: the POST and the DELETE are passed on, the tone is in the mix on the owner', async () => {
    const [first, second] = nodes as [App, App];
    // Two stages started through node-1: the placement puts one on each node.
    const stages = [await createStage(first, 'Encoder 1'), await createStage(first, 'Encoder 2')];
    for (const s of stages) {
      const r = await fetch(`${first.url}/api/stages/${s.id}/start`, { method: 'POST', headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}`, 'content-type': 'application/json' }, body: '{}' });
      expect(r.status).to.equal(200);
    }
    const stage = stages.find((s) => second.registry.get(s.id)?.onAir)!;
    expect(stage, 'a stage served by node-2').to.not.equal(undefined);
    expect(first.registry.get(stage.id), 'not served by node-1').to.equal(undefined);

    encoder = new WhipPublisher();
    const res = await encoder.publish(`${first.url}/whip/${stage.id}?name=Remote%20OBS`, stage.performerKey);
    expect(res.status, `POST through node-1: ${res.answer.slice(0, 200)}`).to.equal(201);
    expect(new URL(res.location!, first.url).origin, 'the resource is reached through the node the encoder knows').to.equal(new URL(first.url).origin);
    expect(await encoder.opened(), 'ICE and DTLS with the owner').to.equal(true);
    await encoder.startAudio({ freq: TONE_HZ });
    const resource = await eventually(async () => second.whip.resources(stage.id)[0], (r) => r?.published === true, 15_000);
    expect(resource?.published, 'on the stage on node-2, publishing').to.equal(true);
    expect(first.whip.resources(stage.id), 'nothing on node-1').to.deep.equal([]);

    // The tone in the mix, heard through node-1.
    await new Promise((r) => setTimeout(r, 4000));
    const base = `${first.url}/live/${stage.id}/`;
    const pl = parseMediaPlaylist(await (await fetch(`${base}index.m3u8`)).text());
    const last = pl.segments.slice(-3);
    const dir = tmp.file('listen');
    fs.mkdirSync(dir, { recursive: true });
    for (const uri of new Set(last.flatMap((s) => [s.uri, ...(s.map ? [s.map] : [])]))) fs.writeFileSync(path.join(dir, uri), Buffer.from(await (await fetch(`${base}${uri}`)).arrayBuffer()));
    expect(toneDb(decodeToPcm(segmentsInput(dir, last)), TONE_HZ), `${TONE_HZ} Hz in the mix (dBFS)`).to.be.greaterThan(-30);

    // The DELETE goes to the Location (node-1), which passes it on.
    expect(await encoder.unpublish(stage.performerKey)).to.equal(200);
    const gone = await eventually(async () => second.whip.resources(stage.id).length, (n) => n === 0, 5_000);
    expect(gone, 'off the stage on node-2').to.equal(0);
  });
});
