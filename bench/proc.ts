// What the benchmark reads from Linux's /proc: CPU time and resident memory per process, and a process's descendants.
// A process that has exited reads as null; the callers count only what they could read.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import v8 from 'node:v8';
import vm from 'node:vm';

/** Clock ticks per second of /proc/<pid>/stat's utime and stime. */
export const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

export interface ProcStat {
  pid: number;
  ppid: number;
  /** The executable's name as the kernel keeps it (at most 15 characters). */
  comm: string;
  /** User + system CPU seconds of this process (all its threads, not its children). */
  cpuSeconds: number;
  /** User + system CPU seconds of its children that have exited (and been waited for), with their own such children. */
  exitedChildrenCpuSeconds: number;
}

/** /proc/<pid>/stat: "pid (comm) state ppid … utime stime …" (comm may hold spaces and parentheses). */
export function readStat(pid: number): ProcStat | null {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  if (open < 0 || close < open) return null;
  const rest = text.slice(close + 2).split(' ');
  // rest[0] is field 3 (state): ppid is field 4, utime 14, stime 15, cutime 16, cstime 17.
  const ppid = Number(rest[1]);
  const [utime, stime, cutime, cstime] = [11, 12, 13, 14].map((i) => Number(rest[i]));
  if (![utime, stime, cutime, cstime].every(Number.isFinite)) return null;
  return { pid, ppid, comm: text.slice(open + 1, close), cpuSeconds: (utime! + stime!) / CLK_TCK, exitedChildrenCpuSeconds: (cutime! + cstime!) / CLK_TCK };
}

/** A "<field>: <n> kB" line of a /proc file, in bytes; null when the process is gone. */
function procKb(file: string, field: string): number | null {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+)\\s+kB`, 'm').exec(fs.readFileSync(file, 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/** Resident memory (VmRSS) in bytes, or null when the process is gone. */
export function rssBytes(pid: number): number | null {
  return procKb(`/proc/${pid}/status`, 'VmRSS');
}

/**
 * Proportional set size in bytes (its own pages, plus its share of pages shared with other processes: FFmpeg's
 * libraries are counted once across all FFmpeg processes, not once each as in RSS), or null when the process is gone.
 */
export function pssBytes(pid: number): number | null {
  return procKb(`/proc/${pid}/smaps_rollup`, 'Pss');
}

/** The whole machine's CPU time so far (all processes, ours or not), in clock ticks: total and idle (with iowait). */
export function machineTicks(): { total: number; idle: number } {
  try {
    const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1, 9).map(Number);
    return { total: f.reduce((a, b) => a + b, 0), idle: f[3]! + f[4]! };
  } catch {
    return { total: 0, idle: 0 };
  }
}

/** Every live process, by pid. */
function allStats(): ProcStat[] {
  const out: ProcStat[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const s = readStat(Number(name));
    if (s) out.push(s);
  }
  return out;
}

/** The descendants of a process (children, their children, …), minus the subtrees rooted at `exclude`. */
export function descendants(root: number, exclude: Iterable<number> = []): ProcStat[] {
  const all = allStats();
  const byParent = new Map<number, ProcStat[]>();
  for (const s of all) byParent.set(s.ppid, [...(byParent.get(s.ppid) ?? []), s]);
  const skip = new Set(exclude);
  const out: ProcStat[] = [];
  const walk = (pid: number) => {
    for (const c of byParent.get(pid) ?? []) {
      if (skip.has(c.pid)) continue;
      out.push(c);
      walk(c.pid);
    }
  };
  walk(root);
  return out;
}

/**
 * `exited`: children that ended during a window (short-lived ones such as the archive's ffprobe per segment), counted
 * from this process's cutime/cstime; the others are read per live process.
 */
export type ProcKind = 'node' | 'mediasoup' | 'ffmpeg' | 'other' | 'exited';

export function kindOf(comm: string): ProcKind {
  if (comm.startsWith('mediasoup-work')) return 'mediasoup';
  if (comm === 'ffmpeg') return 'ffmpeg';
  return 'other';
}

/** A full garbage collection of this process's heap (so that heap and memory figures are not whatever GC left). */
export const collectGarbage: () => void = (() => {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as (() => void) | undefined;
  return () => gc?.();
})();

/**
 * CPU seconds of this process and of every descendant at one instant, with their memory. With `gc`, memory is read
 * after a full collection (the CPU times are read first, so the collection is not counted in a window ending here).
 */
export interface Snapshot {
  atMs: number;
  nodeCpuSeconds: number;
  nodeRss: number;
  nodePss: number;
  nodeHeapUsed: number;
  /** Memory of Buffers and other objects outside V8's heap (includes arrayBuffers). */
  nodeExternal: number;
  /** CPU of this process's children that have exited so far (cutime + cstime). */
  exitedChildrenCpuSeconds: number;
  machine: { total: number; idle: number };
  procs: Map<number, { kind: ProcKind; comm: string; cpuSeconds: number; rss: number; pss: number }>;
}

export function snapshot(exclude: Iterable<number> = [], opts: { gc?: boolean } = {}): Snapshot {
  const u = process.cpuUsage();
  const self = readStat(process.pid);
  const machine = machineTicks();
  const atMs = performance.now();
  const children = descendants(process.pid, exclude);
  if (opts.gc) collectGarbage();
  const mem = process.memoryUsage();
  const procs: Snapshot['procs'] = new Map();
  for (const d of children) {
    procs.set(d.pid, { kind: kindOf(d.comm), comm: d.comm, cpuSeconds: d.cpuSeconds, rss: rssBytes(d.pid) ?? 0, pss: pssBytes(d.pid) ?? 0 });
  }
  return {
    atMs,
    nodeCpuSeconds: (u.user + u.system) / 1e6,
    nodeRss: mem.rss,
    nodePss: pssBytes(process.pid) ?? mem.rss,
    nodeHeapUsed: mem.heapUsed,
    nodeExternal: mem.external,
    exitedChildrenCpuSeconds: self?.exitedChildrenCpuSeconds ?? 0,
    machine,
    procs,
  };
}

/** CPU cores used over a window, per kind of process, and resident memory at its end. */
export interface Usage {
  seconds: number;
  cores: Record<ProcKind, number>;
  rss: Record<ProcKind, number>;
  pss: Record<ProcKind, number>;
  /** Processes by kind at the end of the window. */
  count: Record<ProcKind, number>;
  nodeHeapUsed: number;
  nodeExternal: number;
  /** How busy the whole machine was (all its cores, every process, ours or not), 0-1. */
  machineBusy: number;
}

/**
 * Usage between two snapshots. A process that started during the window counts all its CPU time; one that ended
 * during it counts, whole, under `exited` (the kernel adds it to its parent's cutime/cstime once it is waited for).
 */
export function usageBetween(a: Snapshot, b: Snapshot): Usage {
  const seconds = (b.atMs - a.atMs) / 1000;
  const zero = (): Record<ProcKind, number> => ({ node: 0, mediasoup: 0, ffmpeg: 0, other: 0, exited: 0 });
  const cpu = zero();
  const rss = zero();
  const pss = zero();
  const count = zero();
  cpu.node = b.nodeCpuSeconds - a.nodeCpuSeconds;
  cpu.exited = b.exitedChildrenCpuSeconds - a.exitedChildrenCpuSeconds;
  rss.node = b.nodeRss;
  pss.node = b.nodePss;
  count.node = 1;
  for (const [pid, p] of b.procs) {
    cpu[p.kind] += p.cpuSeconds - (a.procs.get(pid)?.cpuSeconds ?? 0);
    rss[p.kind] += p.rss;
    pss[p.kind] += p.pss;
    count[p.kind]++;
  }
  const cores = zero();
  for (const k of Object.keys(cpu) as ProcKind[]) cores[k] = cpu[k] / seconds;
  const ticks = b.machine.total - a.machine.total;
  const machineBusy = ticks > 0 ? 1 - (b.machine.idle - a.machine.idle) / ticks : NaN;
  return { seconds, cores, rss, pss, count, nodeHeapUsed: b.nodeHeapUsed, nodeExternal: b.nodeExternal, machineBusy };
}

export const totalOf = (r: Record<ProcKind, number>) => r.node + r.mediasoup + r.ffmpeg + r.other + r.exited;
