// `npm start` with no configuration at all: it serves the performer page and prints the admin token and URLs.
import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { expect } from 'chai';
import { TempDir } from './support/media.ts';

const ROOT = path.resolve(import.meta.dirname, '..');

describe('npm start (embedded defaults)', function () {
  this.timeout(120_000);
  let child: ChildProcess | null = null;
  let tmp: TempDir;

  before(() => {
    tmp = new TempDir();
  });
  after(async () => {
    if (child?.pid && child.exitCode === null && child.signalCode === null) {
      // npm runs the service in its own process group (detached below): stop that group, which we started.
      const exited = new Promise((r) => child!.once('exit', r));
      process.kill(-child.pid, 'SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
      if (child.exitCode === null && child.signalCode === null) process.kill(-child.pid, 'SIGKILL');
    }
    tmp?.remove();
  });

  it('starts with no env vars, prints the admin token and URLs, serves the performer page, and stops cleanly on SIGTERM', async () => {
    // Only what any shell has; none of the service's variables.
    const env: NodeJS.ProcessEnv = {
      PATH: process.env['PATH'],
      HOME: process.env['HOME'],
      XDG_CACHE_HOME: process.env['XDG_CACHE_HOME'],
    };
    const dataDir = path.join(ROOT, 'data');
    const hadData = fs.existsSync(dataDir);
    child = spawn('npm', ['start', '--silent'], { cwd: ROOT, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    const deadline = Date.now() + 90_000;
    while (!/admin token: \S+/.test(out) && Date.now() < deadline && child.exitCode === null) await new Promise((r) => setTimeout(r, 200));
    expect(out, out).to.match(/stage-radio is running at http:\/\/localhost:8080/);
    const token = /admin token: (\S+)/.exec(out)![1]!;
    expect(token.length).to.be.at.least(24);
    expect(out).to.include('generated for this run');
    expect(out).to.include('/api/stages');
    expect(out).to.include(`/admin#token=${token}`);
    // HTTPS on the same port, with the self-signed certificate made at this first start, whose fingerprint it prints.
    expect(out).to.match(/HTTPS on the same port .*: https:\/\/localhost:8080/);
    const certPem = fs.readFileSync(path.join(dataDir, 'tls', 'cert.pem'));
    expect(out).to.include(new crypto.X509Certificate(certPem).fingerprint256);
    const secure = await new Promise<number>((resolve, reject) =>
      https.get('https://localhost:8080/healthz', { ca: certPem }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      }).on('error', reject),
    );
    expect(secure, 'GET https://localhost:8080/healthz, verified against the printed certificate').to.equal(200);

    const created = await fetch('http://localhost:8080/api/stages', {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ title: 'Smoke' }),
    });
    expect(created.status).to.equal(201);
    const { performerUrl } = (await created.json()) as { performerUrl: string };
    expect(performerUrl).to.match(/^http:\/\/localhost:8080\/stage\/[A-Za-z0-9_-]+\?key=/);
    const page = await fetch(performerUrl);
    expect(page.status).to.equal(200);
    expect(await page.text()).to.include('Join stage');

    const exited = new Promise<void>((r) => child!.once('exit', () => r()));
    process.kill(-child.pid!, 'SIGTERM');
    await exited;
    // The service released its port (and so its workers and database) on SIGTERM.
    let refused = false;
    for (let i = 0; i < 50 && !refused; i++) {
      refused = await fetch('http://localhost:8080/healthz').then(() => false, () => true);
      if (!refused) await new Promise((r) => setTimeout(r, 100));
    }
    expect(refused, 'port 8080 closed after SIGTERM').to.equal(true);
    // npm may exit before the service it ran has finished closing (the embedded database writes its last files after
    // the port is closed): the whole process group we started must be gone, and only then is its data removed.
    const groupAlive = () => {
      try {
        process.kill(-child!.pid!, 0);
        return true;
      } catch {
        return false;
      }
    };
    for (let i = 0; i < 100 && groupAlive(); i++) await new Promise((r) => setTimeout(r, 100));
    expect(groupAlive(), 'every process of the service gone within 10 s of SIGTERM').to.equal(false);
    if (!hadData) fs.rmSync(dataDir, { recursive: true, force: true });
  });
});
