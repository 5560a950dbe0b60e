// Provides the mediasoup-worker binary for the pinned mediasoup version.
// Order: MEDIASOUP_WORKER_BIN (user's own) → cache → mediasoup's prebuilt download → offline build against
// Debian's libraries (see docs/decisions.md, "mediasoup worker"). Node built-ins only: it runs before node_modules exists.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const log = (msg) => process.stderr.write(`[setup] ${msg}\n`);

export function cacheRoot() {
  const base = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return path.join(base, 'stage-radio');
}

export function cachedWorkerPath(version) {
  return path.join(cacheRoot(), 'mediasoup-worker', `${version}-${os.platform()}-${os.arch()}`, 'mediasoup-worker');
}

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { stdio: 'inherit', ...opts });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (exit ${r.status ?? r.signal})`);
}

function workerRuns(bin) {
  // The worker exits with a usage error when started without its channel fds; a missing library shows as a loader
  // error (exit 127) instead, which is what this guards against.
  if (!fs.existsSync(bin)) return false;
  const r = spawnSync(bin, ['--version'], { encoding: 'utf8', timeout: 5000 });
  return r.error === undefined && r.status !== 127 && !/error while loading shared libraries/.test(r.stderr ?? '');
}

async function tryPrebuilt(version, dest) {
  const tarName = `mediasoup-worker-${version}-${os.platform()}-${os.arch()}.tgz`;
  const base = process.env.MEDIASOUP_WORKER_PREBUILT_DOWNLOAD_BASE_URL || 'https://github.com/versatica/mediasoup/releases/download';
  const url = `${base}/${version}/${tarName}`;
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(20_000) });
    if (!res.ok) {
      log(`prebuilt worker not available (${res.status} ${url})`);
      return false;
    }
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ms-prebuilt-'));
    try {
      const tgz = path.join(tmp, tarName);
      fs.writeFileSync(tgz, Buffer.from(await res.arrayBuffer()));
      run('tar', ['-xzf', tgz, '-C', tmp]);
      const found = path.join(tmp, 'mediasoup-worker');
      if (!workerRuns(found)) {
        log('prebuilt worker does not run on this machine; building instead');
        return false;
      }
      installAtomically(found, dest);
      return true;
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  } catch (err) {
    log(`prebuilt worker download failed (${err.cause?.code ?? err.message}); building from source with Debian's libraries`);
    return false;
  }
}

function installAtomically(src, dest) {
  fs.mkdirSync(path.dirname(dest), { recursive: true });
  const tmp = `${dest}.tmp-${process.pid}`;
  fs.copyFileSync(src, tmp);
  fs.chmodSync(tmp, 0o755);
  fs.renameSync(tmp, dest);
}

// Local meson subprojects that hand mediasoup Debian's system libraries under the variable names its meson.build reads.
const STUB_C = 'int stage_radio_meson_stub(void) { return 0; }\n';
const SUBPROJECTS = {
  'openssl-3.0.8': {
    project: 'openssl',
    body: `openssl_dep = dependency('openssl', version: '>=3.0')
libcrypto_lib = static_library('crypto_stub', 'stub.c')
libssl_lib = static_library('ssl_stub', 'stub.c')`,
  },
  'nlohmann_json-3.10.5': {
    project: 'nlohmann_json',
    body: `nlohmann_json_dep = dependency('nlohmann_json')`,
  },
  'libuv-v1.44.2': {
    project: 'libuv',
    options: `option('build_tests', type: 'boolean', value: false)\noption('build_benchmarks', type: 'boolean', value: false)\n`,
    body: `libuv_dep = dependency('libuv')
libuv = static_library('uv_stub', 'stub.c')`,
  },
  'libsrtp-2.5.0': {
    project: 'libsrtp2',
    options: `option('crypto-library', type: 'string', value: 'openssl')\noption('crypto-library-kdf', type: 'feature', value: 'disabled')\noption('tests', type: 'feature', value: 'disabled')\n`,
    // Debian installs srtp.h under include/srtp2/; mediasoup includes <srtp.h>.
    body: `libsrtp2_dep = declare_dependency(dependencies: dependency('libsrtp2'), include_directories: include_directories('/usr/include/srtp2'))
libsrtp2 = static_library('srtp2_stub', 'stub.c')`,
  },
  'usrsctp-4e06feb01cadcd127d119486b98a4bd3d64aa1e7': {
    project: 'usrsctp',
    options: `option('sctp_build_programs', type: 'boolean', value: false)\n`,
    body: `usrsctp_dep = dependency('usrsctp')
usrsctp = static_library('usrsctp_stub', 'stub.c')`,
  },
  'abseil-cpp-20220623.0': {
    project: 'abseil-cpp',
    body: `absl_container_dep = dependency('absl_flat_hash_map', 'absl_flat_hash_set', 'absl_btree', 'absl_inlined_vector')
absl_strings_dep = dependency('absl_strings')
absl_types_dep = declare_dependency(dependencies: [dependency('absl_optional'), dependency('absl_variant')])
absl_container_lib = static_library('absl_container_stub', 'stub.c')`,
  },
  'Catch2-2.13.7': {
    project: 'catch2',
    body: `catch2_dep = declare_dependency()`,
  },
};

function writeSubprojects(workerDir) {
  for (const [dir, sp] of Object.entries(SUBPROJECTS)) {
    const d = path.join(workerDir, 'subprojects', dir);
    fs.mkdirSync(d, { recursive: true });
    fs.writeFileSync(path.join(d, 'meson.build'), `project('${sp.project}', 'c')\n${sp.body}\n`);
    fs.writeFileSync(path.join(d, 'stub.c'), STUB_C);
    if (sp.options) fs.writeFileSync(path.join(d, 'meson_options.txt'), sp.options);
  }
}

function buildOffline(msPkgDir, version, dest) {
  const srcWorker = path.join(msPkgDir, 'worker');
  if (!fs.existsSync(path.join(srcWorker, 'meson.build'))) throw new Error(`mediasoup worker sources not found in ${srcWorker}`);
  const buildRoot = fs.mkdtempSync(path.join(cacheRoot(), `build-${version}-`));
  try {
    const workerDir = path.join(buildRoot, 'worker');
    fs.cpSync(srcWorker, workerDir, { recursive: true });
    // mediasoup asks for meson >= 1.1.0 only as a floor; Debian bookworm ships 1.0.1, which builds it fine.
    const mesonBuild = path.join(workerDir, 'meson.build');
    fs.writeFileSync(mesonBuild, fs.readFileSync(mesonBuild, 'utf8').replace(/meson_version:\s*'>= 1\.1\.0'/, "meson_version: '>= 1.0.0'"));
    writeSubprojects(workerDir);
    const out = path.join(buildRoot, 'out');
    log(`building mediasoup-worker ${version} offline (about 7 min on 2 cores); log below`);
    run('meson', ['setup', '--wrap-mode=nodownload', '--buildtype=release', '-Db_ndebug=true', out, workerDir]);
    run('ninja', ['-C', out, '-j', String(Math.max(1, os.availableParallelism())), 'mediasoup-worker']);
    const bin = path.join(out, 'mediasoup-worker');
    if (!workerRuns(bin)) throw new Error('the built mediasoup-worker does not start');
    installAtomically(bin, dest);
  } finally {
    fs.rmSync(buildRoot, { recursive: true, force: true });
  }
}

/**
 * Ensures node_modules/mediasoup finds a working worker at its default path
 * (worker/out/Release/mediasoup-worker), so no env var is needed at run time.
 */
export async function ensureMediasoupWorker(projectDir, { beforeBuild = () => {} } = {}) {
  const msPkgDir = path.join(projectDir, 'node_modules', 'mediasoup');
  const version = JSON.parse(fs.readFileSync(path.join(msPkgDir, 'package.json'), 'utf8')).version;
  const link = path.join(msPkgDir, 'worker', 'out', 'Release', 'mediasoup-worker');

  let bin = process.env.MEDIASOUP_WORKER_BIN;
  if (bin) {
    if (!workerRuns(bin)) throw new Error(`MEDIASOUP_WORKER_BIN=${bin} is not a runnable mediasoup-worker`);
  } else {
    bin = cachedWorkerPath(version);
    if (!workerRuns(bin)) {
      fs.mkdirSync(cacheRoot(), { recursive: true });
      const ok = process.env.MEDIASOUP_SKIP_WORKER_PREBUILT_DOWNLOAD ? false : await tryPrebuilt(version, bin);
      if (!ok) {
        beforeBuild();
        buildOffline(msPkgDir, version, bin);
      }
      log(`mediasoup-worker ${version} cached at ${bin}`);
    }
  }
  fs.mkdirSync(path.dirname(link), { recursive: true });
  let current = null;
  try { current = fs.readlinkSync(link); } catch { /* absent or a regular file */ }
  if (current !== bin) {
    fs.rmSync(link, { force: true });
    fs.symlinkSync(bin, link);
  }
  return bin;
}

export function fileDigest(files) {
  const h = createHash('sha256');
  for (const f of files) h.update(fs.existsSync(f) ? fs.readFileSync(f) : Buffer.from('absent'));
  return h.digest('hex');
}
