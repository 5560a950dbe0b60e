// Profiles the app with K stages of 4 performers on air: Node's main thread with the inspector's CPU profiler over a
// window (written as a .cpuprofile), and each process's CPU over the same window. Usage:
//   node --import tsx bench/profile.mts [stages=10] [seconds=20] [out=/tmp/stage-radio-profile]
import fs from 'node:fs';
import inspector from 'node:inspector/promises';
import os from 'node:os';
import path from 'node:path';
import { startTestApp } from '../test/support/app.ts';
import { onAirStage, PERFORMER_TONES } from './cost.ts';
import { descendants, readStat } from './proc.ts';
import { RtpSender } from './sender.ts';

const stages = Number(process.argv[2] ?? 10);
const seconds = Number(process.argv[3] ?? 20);
const out = process.argv[4] ?? path.join(os.tmpdir(), 'stage-radio-profile');
fs.mkdirSync(out, { recursive: true });
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'stage-radio-bench-profile-'));
const sender = await RtpSender.start();
const app = await startTestApp({ CDN_DIR: tmp, RATE_LIMIT_WRITE_PER_MINUTE: '100000', MIX_INPUT: process.env['MIX_INPUT'] ?? 'ogg' });
try {
  await sender.prepare(PERFORMER_TONES);
  for (let i = 0; i < stages; i++) await onAirStage(app, sender, `Profile ${i + 1}`);
  await new Promise((r) => setTimeout(r, 5000));
  const hz = 100;
  const threads = () => {
    const m = new Map<string, number>();
    for (const t of fs.readdirSync(`/proc/${process.pid}/task`)) {
      try {
        const st = fs.readFileSync(`/proc/${process.pid}/task/${t}/stat`, 'utf8');
        const comm = st.slice(st.indexOf('(') + 1, st.lastIndexOf(')'));
        const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
        m.set(`${comm}/${t === String(process.pid) ? 'main' : t}`, (Number(f[11]) + Number(f[12])) / hz);
      } catch {
        // gone
      }
    }
    return m;
  };
  const cpu = () => {
    const m = new Map<string, number>();
    m.set('node', readStat(process.pid)!.cpuSeconds);
    for (const d of descendants(process.pid, [sender.pid])) m.set(d.comm, (m.get(d.comm) ?? 0) + d.cpuSeconds);
    return m;
  };
  const session = new inspector.Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 200 });
  const a = cpu();
  const ta = threads();
  const t0 = performance.now();
  await session.post('Profiler.start');
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const { profile } = await session.post('Profiler.stop');
  const b = cpu();
  const tb = threads();
  const dt = (performance.now() - t0) / 1000;
  console.log(`node threads, cores per stage: ${[...tb].map(([k, v]) => [k, (v - (ta.get(k) ?? 0)) / dt / stages] as const).filter(([, v]) => v > 0.0005).sort((x, y) => y[1] - x[1]).map(([k, v]) => `${k} ${v.toFixed(4)}`).join(', ')}`);
  const file = path.join(out, `stages-${stages}.cpuprofile`);
  fs.writeFileSync(file, JSON.stringify(profile));
  const row = [...b].map(([k, v]) => `${k} ${((v - (a.get(k) ?? 0)) / dt / stages).toFixed(4)}`).join(', ');
  console.log(`${stages} stages, ${dt.toFixed(1)} s: cores per stage: ${row}; profile ${file}`);
  // Self time per function, top 25.
  const self = new Map<string, number>();
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const counts = new Map<number, number>();
  for (const s of profile.samples ?? []) counts.set(s, (counts.get(s) ?? 0) + 1);
  const total = profile.samples?.length ?? 1;
  for (const [id, c] of counts) {
    const n = byId.get(id)!;
    const key = `${n.callFrame.functionName || '(anon)'} ${n.callFrame.url.split('/').slice(-2).join('/')}:${n.callFrame.lineNumber + 1}`;
    self.set(key, (self.get(key) ?? 0) + c);
  }
  for (const [k, c] of [...self].sort((x, y) => y[1] - x[1]).slice(0, 25)) console.log(`${((100 * c) / total).toFixed(1).padStart(5)} %  ${k}`);
  session.disconnect();
} finally {
  await app.close();
  await sender.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
}
