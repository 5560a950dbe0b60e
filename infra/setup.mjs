#!/usr/bin/env node
// Idempotent set-up, run by `npm start` and `npm test` before anything else: system packages (apt), npm packages,
// and the mediasoup worker. Node built-ins only, so it runs before node_modules exists. Quick when all is in place.
//   node infra/setup.mjs              what `npm start` needs
//   node infra/setup.mjs --for-tests  plus Chromium and the PostgreSQL server for the test suite
//   node infra/setup.mjs --no-apt     skip system packages (images that install them themselves)
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureMediasoupWorker, fileDigest } from './mediasoup-worker.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = new Set(process.argv.slice(2));
const forTests = args.has('--for-tests');
const log = (msg) => process.stderr.write(`[setup] ${msg}\n`);

// Runtime: ffmpeg for the mixer. Worker build: compiler and the C++ libraries mediasoup's worker links against
// (they also provide its shared libraries at run time). Tests: Chromium for browser flows, a PostgreSQL server,
// espeak-ng for the speech that performers speak (test/timeline/speech.test.ts, the sound tests), sox for the music-like
// material of the sound corpus (test/support/corpus.ts).
const APT_RUNTIME = ['ffmpeg', 'ca-certificates', 'openssl'];
const APT_WORKER = ['meson', 'ninja-build', 'pkg-config', 'g++', 'python3', 'libuv1-dev', 'libssl-dev', 'libsrtp2-dev', 'libusrsctp-dev', 'libabsl-dev', 'nlohmann-json3-dev'];
const APT_TESTS = ['chromium', 'postgresql-15', 'fonts-liberation', 'gstreamer1.0-tools', 'gstreamer1.0-plugins-base', 'gstreamer1.0-plugins-good', 'gstreamer1.0-plugins-bad', 'gstreamer1.0-libav', 'espeak-ng', 'sox', 'nginx-light', 'fonts-ipafont-gothic', 'redis-server'];

function dpkgInstalled(pkg) {
  const r = spawnSync('dpkg-query', ['-W', '-f=${Status}', pkg], { encoding: 'utf8' });
  return r.status === 0 && r.stdout.includes('install ok installed');
}

function ensureApt(pkgs) {
  if (!fs.existsSync('/usr/bin/dpkg-query')) {
    log(`not a Debian/Ubuntu system: make sure these are installed: ${pkgs.join(' ')}`);
    return;
  }
  const missing = pkgs.filter((p) => !dpkgInstalled(p));
  if (missing.length === 0) return;
  const asRoot = process.getuid?.() === 0;
  const prefix = asRoot ? [] : ['sudo', '-n'];
  log(`installing system packages: ${missing.join(' ')}`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const run = (argv) => spawnSync(prefix.length ? prefix[0] : argv[0], prefix.length ? [...prefix.slice(1), ...argv] : argv.slice(1), { stdio: 'inherit', env });
  let r = run(['apt-get', 'update', '-qq']);
  if (r.status === 0) r = run(['apt-get', 'install', '-y', '-qq', '--no-install-recommends', ...missing]);
  if (r.status !== 0) {
    throw new Error(`could not install system packages. Run as root: apt-get update && apt-get install -y ${missing.join(' ')}`);
  }
}

function ensureNpm() {
  const stamp = path.join(ROOT, 'node_modules', '.stage-radio-setup');
  const digest = fileDigest([path.join(ROOT, 'package.json'), path.join(ROOT, 'package-lock.json')]);
  if (fs.existsSync(stamp) && fs.readFileSync(stamp, 'utf8') === digest) return;
  log('installing npm packages');
  // mediasoup's own postinstall would try to download or build its worker; the worker step below does that instead.
  const cmd = fs.existsSync(path.join(ROOT, 'package-lock.json')) ? 'ci' : 'install';
  const r = spawnSync('npm', [cmd, '--ignore-scripts', '--no-audit', '--no-fund'], { cwd: ROOT, stdio: 'inherit' });
  if (r.status !== 0) throw new Error(`npm ${cmd} failed`);
  fs.writeFileSync(stamp, digest);
}

try {
  const t0 = Date.now();
  if (!args.has('--no-apt')) {
    ensureApt([...APT_RUNTIME, ...(forTests ? APT_TESTS : [])]);
  }
  ensureNpm();
  const needsBuildDeps = !args.has('--no-apt');
  await ensureMediasoupWorker(ROOT, { beforeBuild: needsBuildDeps ? () => ensureApt(APT_WORKER) : () => {} });
  const ms = Date.now() - t0;
  if (ms > 2000) log(`done in ${(ms / 1000).toFixed(1)} s`);
} catch (err) {
  log(`FAILED: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
}
