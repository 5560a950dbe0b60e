// Debian's nginx running the project's own infra/nginx/nginx.conf, with the paths and ports of one test filled in:
// the CDN folder, the app's address, the certificate, and ports on 127.0.0.1 that the OS picked. Started and stopped
// by the test (by PID), its files in a temp folder removed on stop.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export const NGINX_BIN = '/usr/sbin/nginx';
export const NGINX_CONF = path.resolve(import.meta.dirname, '../../infra/nginx/nginx.conf');

/** A port the OS gives for 127.0.0.1, free when this returns. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

export interface Nginx {
  httpUrl: string;
  httpsUrl: string;
  /** The configuration as run. */
  conf: string;
  stop(): Promise<void>;
}

/**
 * Each replacement must match exactly once: a config that drifts from what this test fills in fails here, not later.
 */
export function fillConf(text: string, opts: { cdnDir: string; appPort: number; tlsDir: string; httpPort: number; httpsPort: number; dir: string }): string {
  const rules: [RegExp, string, number | 'some'][] = [
    [/^user nginx;$/m, os.userInfo().uid === 0 ? 'user root;' : '# user: the test\'s own', 1],
    [/^pid \/var\/run\/nginx\.pid;$/m, `pid ${opts.dir}/nginx.pid;`, 1],
    [/^error_log \/var\/log\/nginx\/error\.log warn;$/m, `error_log ${opts.dir}/error.log warn;`, 1],
    [/access_log \/var\/log\/nginx\/access\.log main;/, `access_log ${opts.dir}/access.log main;`, 1],
    // Docker's DNS: not here (the app is an address, not a name).
    [/resolver 127\.0\.0\.11 [^;]*;/, '# resolver: none needed', 1],
    [/http:\/\/app:8080/g, `http://127.0.0.1:${opts.appPort}`, 'some'],
    [/listen 80;/, `listen 127.0.0.1:${opts.httpPort};`, 1],
    [/listen 443 ssl;/, `listen 127.0.0.1:${opts.httpsPort} ssl;`, 1],
    [/root \/srv\/cdn;/, `root ${opts.cdnDir};`, 1],
    [/\/etc\/nginx\/tls\//g, `${opts.tlsDir}/`, 2],
  ];
  let out = text;
  for (const [re, replacement, times] of rules) {
    const n = [...out.matchAll(new RegExp(re.source, re.flags.includes('g') ? re.flags : `${re.flags}g`))].length;
    if (times === 'some' ? n === 0 : n !== times) throw new Error(`nginx.conf: expected ${times} of ${re} , found ${n}`);
    out = out.replace(re, replacement);
  }
  return out;
}

export const NGINX_CLUSTER_CONF = path.resolve(import.meta.dirname, '../../infra/nginx/cluster.conf');

/** infra/nginx/cluster.conf with this test's node addresses (in place of its two example nodes), ports and paths. */
export function fillClusterConf(text: string, opts: { nodePorts: number[]; tlsDir: string; httpPort: number; httpsPort: number; dir: string }): string {
  const servers = opts.nodePorts.map((p) => `        server 127.0.0.1:${p} max_fails=1 fail_timeout=10s;`).join('\n');
  const rules: [RegExp, string, number][] = [
    [/^user nginx;$/m, os.userInfo().uid === 0 ? 'user root;' : '# user: the test\'s own', 1],
    [/^pid \/var\/run\/nginx\.pid;$/m, `pid ${opts.dir}/nginx.pid;`, 1],
    [/^error_log \/var\/log\/nginx\/error\.log warn;$/m, `error_log ${opts.dir}/error.log warn;`, 1],
    [/access_log \/var\/log\/nginx\/access\.log main;/, `access_log ${opts.dir}/access.log main;`, 1],
    [/^ {8}server node-1:8080 [^\n]*\n {8}server node-2:8080 [^\n]*$/m, servers, 1],
    [/listen 80;/, `listen 127.0.0.1:${opts.httpPort};`, 1],
    [/listen 443 ssl;/, `listen 127.0.0.1:${opts.httpsPort} ssl;`, 1],
    [/\/etc\/nginx\/tls\//g, `${opts.tlsDir}/`, 2],
  ];
  let out = text;
  for (const [re, replacement, times] of rules) {
    const n = [...out.matchAll(new RegExp(re.source, re.flags.includes('g') ? re.flags : `${re.flags}g`))].length;
    if (n !== times) throw new Error(`cluster.conf: expected ${times} of ${re} , found ${n}`);
    out = out.replace(re, replacement);
  }
  return out;
}

export async function startNginx(opts: { cdnDir: string; appPort: number; tlsDir: string }): Promise<Nginx> {
  return runNginx((ports) => fillConf(fs.readFileSync(NGINX_CONF, 'utf8'), { ...opts, ...ports }));
}

/** Debian's nginx running infra/nginx/cluster.conf in front of these nodes. */
export async function startClusterNginx(opts: { nodePorts: number[]; tlsDir: string }): Promise<Nginx> {
  return runNginx((ports) => fillClusterConf(fs.readFileSync(NGINX_CLUSTER_CONF, 'utf8'), { ...opts, ...ports }));
}

async function runNginx(make: (ports: { httpPort: number; httpsPort: number; dir: string }) => string): Promise<Nginx> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stage-radio-nginx-'));
  const [httpPort, httpsPort] = [await freePort(), await freePort()];
  const conf = make({ httpPort, httpsPort, dir });
  const confFile = path.join(dir, 'nginx.conf');
  fs.writeFileSync(confFile, conf);
  const args = ['-p', `${dir}/`, '-c', confFile, '-e', path.join(dir, 'error.log')];
  const check = spawnSync(NGINX_BIN, [...args, '-t'], { encoding: 'utf8' });
  if (check.status !== 0) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw new Error(`nginx -t refused the config: ${check.stderr}`);
  }
  const child: ChildProcess = spawn(NGINX_BIN, [...args, '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  // Up when its port answers.
  const deadline = Date.now() + 10_000;
  for (;;) {
    const ok = await fetch(`http://127.0.0.1:${httpPort}/live/`).then(() => true, () => false);
    if (ok) break;
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      fs.rmSync(dir, { recursive: true, force: true });
      throw new Error(`nginx did not start: ${stderr} ${fs.existsSync(path.join(dir, 'error.log')) ? fs.readFileSync(path.join(dir, 'error.log'), 'utf8') : ''}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    httpUrl: `http://127.0.0.1:${httpPort}`,
    httpsUrl: `https://127.0.0.1:${httpsPort}`,
    conf,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        // SIGQUIT: graceful; its workers finish and exit with the master (the PID we started).
        child.kill('SIGQUIT');
        const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(t);
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
