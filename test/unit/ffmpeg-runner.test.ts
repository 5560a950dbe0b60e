// The runner every ffmpeg and ffprobe runs under, with the real programs: abort, timeout, errors, who ended a run,
// process groups, death with the parent, bounded restarts, and the probe and remux built on it.
import { expect } from 'chai';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Logger } from '../../services/logger.ts';
import { silentLog, type Log } from '../../pipelines/log.ts';
import { CHILD_WRAPPED, FfmpegRunError, SupervisedFfmpeg, probeDuration, runFfmpeg, runFfprobe, type FfmpegSpec } from '../../pipelines/ffmpeg/index.ts';
import { remuxToM4a, type RemuxRun } from '../../pipelines/archive/vod.ts';
import { BoxReader } from '../../pipelines/hls/mp4.ts';

// Compile-time: services hand their winston loggers to pipelines as a Log.
const winstonIsALog = (l: Logger): Log => l;
void winstonIsALog;

/** An FFmpeg that runs until stopped, at next to no cost: real-time silence into the null muxer. */
const ENDLESS = ['-v', 'error', '-nostdin', '-re', '-f', 'lavfi', '-i', 'anullsrc=r=8000:cl=mono', '-f', 'null', '-'];
const ENDLESS_SPEC: FfmpegSpec = { input: 'anullsrc=r=8000:cl=mono', inputOptions: ['-re', '-f', 'lavfi'], output: '/dev/null', outputOptions: () => ['-f', 'null'] };
/** An FFmpeg that fails at once. */
const MISSING_INPUT_SPEC: FfmpegSpec = { input: '/nonexistent/stage-radio-input.wav', inputOptions: [], output: '/dev/null', outputOptions: () => ['-f', 'null'] };

interface ProcStat {
  comm: string;
  state: string;
  ppid: number;
  pgrp: number;
  session: number;
}

function procStat(pid: number): ProcStat | null {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  const close = text.lastIndexOf(')');
  const [state, ppid, pgrp, session] = text.slice(close + 2).split(' ');
  return { comm: text.slice(text.indexOf('(') + 1, close), state: state!, ppid: Number(ppid), pgrp: Number(pgrp), session: Number(session) };
}

/** Whether the process has installed a handler for `signal` (bit signal-1 of SigCgt in /proc/<pid>/status). */
function catches(pid: number, signal: number): boolean {
  try {
    const mask = /^SigCgt:\s*([0-9a-f]+)$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return mask !== undefined && (BigInt(`0x${mask}`) & (1n << BigInt(signal - 1))) !== 0n;
  } catch {
    return false;
  }
}

/** Gone, or a zombie nobody has reaped yet (an orphan's reaper may be slow): either way it runs no more. */
const isGone = (pid: number) => {
  const s = procStat(pid);
  return s === null || s.state === 'Z';
};

async function waitFor(what: string, cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Resolves with the child's PID once the wrappers have exec'ed into the program itself. */
function spawned(program = 'ffmpeg'): { onSpawn: (pid: number) => void; pid: Promise<number> } {
  let onSpawn!: (pid: number) => void;
  const pid = new Promise<number>((resolve) => (onSpawn = resolve)).then(async (p) => {
    await waitFor(`${program} running as ${p}`, () => procStat(p)?.comm === program);
    return p;
  });
  return { onSpawn, pid };
}

async function rejection(p: Promise<unknown>): Promise<FfmpegRunError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err, 'the run failed').to.be.instanceOf(FfmpegRunError);
  return err as FfmpegRunError;
}

describe('ffmpeg runner', function () {
  this.timeout(15_000);
  const pids: number[] = [];
  const procs: ChildProcess[] = [];
  const supervised: SupervisedFfmpeg[] = [];
  let tmp: string;

  before(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ffmpeg-runner-'));
  });

  after(async () => {
    await Promise.all(supervised.map((s) => s.stop()));
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    for (const pid of pids) if (!isGone(pid)) process.kill(pid, 'SIGKILL');
    await waitFor('every child gone', () => pids.every(isGone));
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  /** An endless FFmpeg started by the one-shot runner, with its PID once it is FFmpeg. */
  async function endless(opts: { signal?: AbortSignal; timeoutMs?: number } = {}): Promise<{ run: Promise<string>; pid: number }> {
    const s = spawned();
    const run = runFfmpeg({ args: ENDLESS, ...opts, onSpawn: s.onSpawn });
    run.catch(() => undefined);
    const pid = await s.pid;
    pids.push(pid);
    return { run, pid };
  }

  describe('one-shot runs', () => {
    for (const stopped of [false, true]) {
      it(`an abort SIGKILLs the child at once${stopped ? ', a SIGSTOPped one too' : ''}`, async () => {
        const ac = new AbortController();
        const { run, pid } = await endless({ signal: ac.signal });
        if (stopped) {
          process.kill(pid, 'SIGSTOP');
          await waitFor('stopped', () => procStat(pid)?.state === 'T');
        }
        const t0 = Date.now();
        ac.abort();
        const err = await rejection(run);
        expect(Date.now() - t0, 'ms from the abort to the rejection').to.be.below(1000);
        expect(err).to.include({ aborted: true, timedOut: false, killedExternally: false, signal: 'SIGKILL', code: null });
        expect(isGone(pid), 'the child is gone').to.equal(true);
      });
    }

    it('an abort before the start starts nothing', async () => {
      const ac = new AbortController();
      ac.abort();
      let started = false;
      const err = await rejection(runFfmpeg({ args: ENDLESS, signal: ac.signal, onSpawn: () => (started = true) }));
      expect(err.aborted).to.equal(true);
      expect(started, 'spawned').to.equal(false);
    });

    it('a timeout SIGKILLs the child', async () => {
      const t0 = Date.now();
      const { run, pid } = await endless({ timeoutMs: 300 });
      const err = await rejection(run);
      expect(Date.now() - t0, 'ms to the rejection').to.be.within(290, 2000);
      expect(err).to.include({ timedOut: true, aborted: false, killedExternally: false, signal: 'SIGKILL' });
      expect(isGone(pid)).to.equal(true);
    });

    it('a failure carries the exit code and the stderr tail', async () => {
      const err = await rejection(runFfmpeg({ args: ['-v', 'error', '-nostdin', '-i', path.join(tmp, 'missing.wav'), '-f', 'null', '-'] }));
      expect(err).to.include({ code: 1, signal: null, aborted: false, timedOut: false, killedExternally: false });
      expect(err.stderrTail.join('\n')).to.match(/missing\.wav: No such file or directory/);
      expect(err.message).to.match(/^ffmpeg exited with code 1: .*missing\.wav: No such file or directory/s);
    });

    it('a SIGTERM from someone else is killedExternally, for ffmpeg (which traps it) and ffprobe (which does not)', async () => {
      const { run, pid } = await endless();
      await waitFor('ffmpeg traps SIGTERM', () => catches(pid, 15));
      process.kill(pid, 'SIGTERM');
      const err = await rejection(run);
      expect(err).to.include({ code: 255, killedExternally: true, aborted: false, timedOut: false });

      // ffprobe blocks opening a FIFO nobody writes to.
      const fifo = path.join(tmp, 'never.fifo');
      execFileSync('mkfifo', [fifo]);
      const s = spawned('ffprobe');
      const probe = runFfprobe({ args: ['-v', 'error', fifo], onSpawn: s.onSpawn });
      const probePid = await s.pid;
      pids.push(probePid);
      process.kill(probePid, 'SIGTERM');
      const probeErr = await rejection(probe);
      expect(probeErr).to.include({ signal: 'SIGTERM', code: null, killedExternally: true, aborted: false });
    });

    it('the child runs in a session and process group of its own, as our direct child', async () => {
      const ac = new AbortController();
      const { run, pid } = await endless({ signal: ac.signal });
      const child = procStat(pid)!;
      const self = procStat(process.pid)!;
      expect(child.ppid, 'parent: no fork in between').to.equal(process.pid);
      expect(child.pgrp, 'process group').to.equal(pid);
      expect(child.session, 'session').to.equal(pid);
      expect(child.pgrp).to.not.equal(self.pgrp);
      ac.abort();
      await rejection(run);
    });

    it('the child dies with its parent, even when the parent is SIGKILLed', async function () {
      if (!CHILD_WRAPPED) this.skip();
      const runner = pathToFileURL(path.resolve(import.meta.dirname, '../../pipelines/ffmpeg/run.ts')).href;
      const script = [
        `import { runFfmpeg } from ${JSON.stringify(runner)};`,
        `runFfmpeg({ args: ${JSON.stringify(ENDLESS)}, onSpawn: (pid) => console.log(pid) }).catch(() => undefined);`,
        'setInterval(() => undefined, 1000);',
      ].join('\n');
      const parent = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: process.cwd(), stdio: ['ignore', 'pipe', 'inherit'] });
      procs.push(parent);
      const [line] = (await once(parent.stdout!.setEncoding('utf8'), 'data')) as [string];
      const pid = Number(line.trim());
      pids.push(pid);
      await waitFor('ffmpeg running under the parent', () => procStat(pid)?.comm === 'ffmpeg' && procStat(pid)?.ppid === parent.pid);
      parent.kill('SIGKILL');
      await once(parent, 'exit');
      const t0 = Date.now();
      await waitFor('ffmpeg gone after its parent', () => isGone(pid), 3000);
      process.stdout.write(`      gone ${Date.now() - t0} ms after its parent\n`);
    });
  });

  describe('probeDuration', () => {
    it('reads a generated file’s duration; null for no file; an abort throws', async () => {
      const file = path.join(tmp, 'tone.m4a');
      await runFfmpeg({ args: ['-v', 'error', '-nostdin', '-y', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000:duration=1.5', '-c:a', 'aac', '-f', 'mp4', file] });
      const d = await probeDuration(file);
      expect(d).to.be.a('number');
      expect(d!).to.be.closeTo(1.5, 0.05);
      expect(await probeDuration(path.join(tmp, 'missing.m4a'))).to.equal(null);
      const ac = new AbortController();
      ac.abort();
      const err = await rejection(probeDuration(file, { signal: ac.signal }));
      expect(err.aborted).to.equal(true);
    });
  });

  describe('remuxToM4a on the runner', () => {
    /** Two FFmpeg runs of 1 s each, as the live writer leaves them: an init section, then fMP4 segments. */
    const runs: { init: string; segments: string[] }[] = [];

    before(async () => {
      for (const [i, freq] of [440, 660].entries()) {
        const mp4 = path.join(tmp, `run_${i}.mp4`);
        await runFfmpeg({ args: ['-v', 'error', '-nostdin', '-y', '-f', 'lavfi', '-i', `sine=frequency=${freq}:sample_rate=48000:duration=1`, '-c:a', 'aac', '-b:a', '128k',
          '-f', 'mp4', '-movflags', 'cmaf+empty_moov+default_base_moof', '-frag_duration', '250000', mp4] });
        const boxes = new BoxReader().push(fs.readFileSync(mp4));
        const init = path.join(tmp, `init_${i}.mp4`);
        fs.writeFileSync(init, Buffer.concat(boxes.filter((b) => b.type === 'ftyp' || b.type === 'moov').map((b) => b.bytes)));
        const fragments = boxes.filter((b) => b.type === 'moof' || b.type === 'mdat');
        const segments: string[] = [];
        for (let f = 0; f < fragments.length; f += 4) {
          const seg = path.join(tmp, `seg_${i}_${f / 4}.m4s`);
          fs.writeFileSync(seg, Buffer.concat(fragments.slice(f, f + 4).map((b) => b.bytes)));
          segments.push(seg);
        }
        runs.push({ init, segments });
      }
    });

    const leftovers = (out: string) => fs.readdirSync(path.dirname(out)).filter((f) => f.startsWith(`${path.basename(out)}.`));

    it('feeds a run through stdin (its init section, then its fMP4 segments), and a gap as silence', async () => {
      const out = path.join(tmp, 'joined.m4a');
      await remuxToM4a([{ ...runs[0]!, startSeconds: 0 }], out, { bitrateKbps: 128 });
      expect(await probeDuration(out)).to.be.closeTo(1, 0.1);
      const gapped = path.join(tmp, 'gapped.m4a');
      await remuxToM4a([{ ...runs[0]!, startSeconds: 0 }, { ...runs[1]!, startSeconds: 2.5 }], gapped, { bitrateKbps: 128 });
      expect(await probeDuration(gapped)).to.be.closeTo(3.5, 0.15);
      expect(leftovers(gapped), 'temp files').to.deep.equal([]);
    });

    it('aborted or timed out, it leaves no temp file nor parts folder', async () => {
      const twoRuns: RemuxRun[] = [{ ...runs[0]!, startSeconds: 0 }, { ...runs[1]!, startSeconds: 2 }];
      // Abort as the last step (the concat into the temp file) starts; the temp file is there beforehand, as a run
      // killed half-way would leave it.
      const out = path.join(tmp, 'aborted.m4a');
      const ac = new AbortController();
      const log: Log = { ...silentLog, debug: (message, meta) => void (message === 'started' && (meta?.args as string[]).includes('concat') && ac.abort()), child: () => log };
      fs.writeFileSync(`${out}.tmp.m4a`, 'partial');
      const err = await rejection(remuxToM4a(twoRuns, out, { bitrateKbps: 128, signal: ac.signal, log }));
      expect(err.aborted, err.message).to.equal(true);
      expect(leftovers(out), 'temp files after an abort').to.deep.equal([]);
      expect(fs.existsSync(out)).to.equal(false);

      const late = path.join(tmp, 'late.m4a');
      fs.writeFileSync(`${late}.tmp.m4a`, 'partial');
      const timedOut = await rejection(remuxToM4a(twoRuns, late, { bitrateKbps: 128, timeoutMs: 1 }));
      expect(timedOut.timedOut, timedOut.message).to.equal(true);
      expect(leftovers(late), 'temp files after a timeout').to.deep.equal([]);
    });
  });

  describe('SupervisedFfmpeg', () => {
    function supervise(spec: FfmpegSpec, opts: ConstructorParameters<typeof SupervisedFfmpeg>[2] = {}) {
      const ff = new SupervisedFfmpeg(spec, silentLog, opts);
      supervised.push(ff);
      const seen = { started: [] as { pid: number; restart: boolean }[], died: [] as string[], failed: [] as string[] };
      ff.on('started', (pid, restart) => {
        if (pid > 0) pids.push(pid);
        seen.started.push({ pid, restart });
      });
      ff.on('died', (e) => seen.died.push(e));
      ff.on('failed', (e) => seen.failed.push(e));
      return { ff, seen };
    }

    it('restarts a crashing FFmpeg at most maxRestarts times (5 by default), then fails with the stderr tail', async () => {
      const { ff, seen } = supervise(MISSING_INPUT_SPEC, { restartDelaysMs: [10] });
      const failed = once(ff, 'failed') as Promise<[string]>;
      ff.start();
      const [error] = await failed;
      expect(seen.started.map((s) => s.restart), 'runs').to.deep.equal([false, true, true, true, true, true]);
      expect(seen.died).to.have.length(6);
      expect(ff.restarts).to.equal(5);
      expect(error).to.match(/stage-radio-input\.wav: No such file or directory/);
      expect(ff.failure).to.equal(error);
      await new Promise((r) => setTimeout(r, 300));
      expect(seen.started, 'no run after it failed').to.have.length(6);
      expect(seen.failed).to.have.length(1);
      expect(ff.pid).to.equal(null);
      await ff.stop();
    });

    it('maxRestarts is an option: 1 restart, then failed', async () => {
      const { ff, seen } = supervise(MISSING_INPUT_SPEC, { maxRestarts: 1, restartDelaysMs: [10] });
      const failed = once(ff, 'failed');
      ff.start();
      await failed;
      expect(seen.started).to.have.length(2);
      expect(ff.restarts).to.equal(1);
    });

    it('a SIGKILLed FFmpeg is restarted; stop() ends it with SIGINT and resolves when it is gone', async () => {
      const { ff, seen } = supervise(ENDLESS_SPEC, { restartDelaysMs: [10] });
      ff.start();
      await waitFor('started', () => seen.started.length === 1);
      const first = seen.started[0]!.pid;
      await waitFor('ffmpeg running', () => procStat(first)?.comm === 'ffmpeg');
      expect(procStat(first)!.pgrp, 'own process group').to.equal(first);
      process.kill(first, 'SIGKILL');
      await waitFor('restarted', () => seen.started.length === 2);
      expect(seen.died).to.deep.equal(['killed by SIGKILL (not sent by us)']);
      expect(seen.started[1]).to.deep.include({ restart: true });
      const second = ff.pid!;
      expect(second).to.not.equal(first);
      await waitFor('ffmpeg running', () => procStat(second)?.comm === 'ffmpeg');
      const t0 = Date.now();
      await Promise.all([ff.stop(), ff.stop()]);
      expect(Date.now() - t0, 'ms to stop (SIGINT, not the SIGKILL after 5 s)').to.be.below(2000);
      expect(isGone(second), 'gone once stop() resolves').to.equal(true);
      expect(ff.pid).to.equal(null);
      expect(seen.died, 'a stop is no death').to.have.length(1);
      expect(ff.failure).to.equal(null);
    });

    it('a stop while it is being spawned ends it as soon as it exists', async () => {
      const { ff, seen } = supervise(ENDLESS_SPEC);
      ff.start();
      await ff.stop();
      for (const { pid } of seen.started) expect(isGone(pid), `pid ${pid} gone`).to.equal(true);
      expect(seen.died).to.deep.equal([]);
      await new Promise((r) => setTimeout(r, 300));
      expect(seen.started.length, 'not restarted').to.be.at.most(1);
      expect(ff.pid).to.equal(null);
    });
  });
});
