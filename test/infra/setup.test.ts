// The set-up that both README commands run: idempotent, and able to build the mediasoup worker from nothing offline.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import { TempDir } from '../support/media.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');

describe('infra/setup.mjs', function () {
  it('has nothing to do when everything is in place', function () {
    this.timeout(60_000);
    const r = spawnSync('node', ['infra/setup.mjs', '--for-tests'], { cwd: ROOT, encoding: 'utf8' });
    expect(r.status, r.stderr).to.equal(0);
    expect(r.stderr).to.not.match(/installing|building/);
    const link = path.join(ROOT, 'node_modules/mediasoup/worker/out/Release/mediasoup-worker');
    expect(fs.existsSync(link), 'mediasoup finds its worker at its default path').to.equal(true);
  });

  it('in a fresh clone with an empty worker cache, builds the worker offline against Debian libraries, and it runs', function () {
    if (process.env['SKIP_WORKER_BUILD_TEST'] === '1') this.skip();
    this.timeout(20 * 60_000);
    const tmp = new TempDir();
    try {
      const clone = tmp.file('clone');
      const cache = tmp.file('cache');
      let r = spawnSync('git', ['clone', '--quiet', '--depth', '1', `file://${ROOT}`, clone], { encoding: 'utf8' });
      expect(r.status, r.stderr).to.equal(0);
      const env: NodeJS.ProcessEnv = { ...process.env, XDG_CACHE_HOME: cache, MEDIASOUP_SKIP_WORKER_PREBUILT_DOWNLOAD: '1' };
      delete env['MEDIASOUP_WORKER_BIN'];
      r = spawnSync('node', ['infra/setup.mjs'], { cwd: clone, env, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
      expect(r.status, r.stderr.slice(-4000)).to.equal(0);
      expect(r.stderr).to.include('building mediasoup-worker');
      const version = JSON.parse(fs.readFileSync(path.join(clone, 'node_modules/mediasoup/package.json'), 'utf8')).version;
      const bin = path.join(cache, 'stage-radio', 'mediasoup-worker', `${version}-${process.platform}-${process.arch}`, 'mediasoup-worker');
      expect(fs.existsSync(bin), 'worker cached by version outside the clone').to.equal(true);
      expect(fs.readdirSync(path.join(cache, 'stage-radio')).filter((f) => f.startsWith('build-')), 'build dir removed').to.deep.equal([]);

      // The clone's mediasoup starts the new worker: a router takes Opus.
      const probe = `import * as ms from 'mediasoup';
        const w = await ms.createWorker({ logLevel: 'error' });
        const r = await w.createRouter({ mediaCodecs: [{ kind: 'audio', mimeType: 'audio/opus', clockRate: 48000, channels: 2 }] });
        const t = await r.createPlainTransport({ listenIp: '127.0.0.1', comedia: true, rtcpMux: true });
        console.log(JSON.stringify({ pid: w.pid, codecs: r.rtpCapabilities.codecs.length, port: t.tuple.localPort }));
        w.close();`;
      r = spawnSync('node', ['--input-type=module', '-e', probe], { cwd: clone, env, encoding: 'utf8' });
      expect(r.status, r.stderr).to.equal(0);
      const out = JSON.parse(r.stdout.trim()) as { pid: number; codecs: number; port: number };
      expect(out.codecs).to.be.greaterThan(0);
      expect(out.port).to.be.greaterThan(0);

      // Run again: nothing left to build.
      r = spawnSync('node', ['infra/setup.mjs'], { cwd: clone, env, encoding: 'utf8' });
      expect(r.status, r.stderr).to.equal(0);
      expect(r.stderr).to.not.match(/installing|building/);
    } finally {
      tmp.remove();
    }
  });
});
