// What a piece of code leaves running, counted through the process's own resources (async_hooks): every timer
// (unref'd ones too), socket, child process, pipe and file watcher created while the tracker is on, and whether it
// has been destroyed since. Not through the objects' flags: a timer nobody cleared is found even if every object says
// it is closed.
import { createHook, type AsyncHook } from 'node:async_hooks';
import fs from 'node:fs';

const TRACKED = new Set(['Timeout', 'UDPWRAP', 'TCPWRAP', 'TCPSERVERWRAP', 'PIPEWRAP', 'PROCESSWRAP', 'FSEVENTWRAP', 'STATWATCHER', 'SIGNALWRAP']);

export interface LiveResource {
  type: string;
  /** Where it was created (the first frames outside node internals). */
  stack: string;
}

export class ResourceTracker {
  readonly #alive = new Map<number, LiveResource>();
  readonly #hook: AsyncHook;

  constructor() {
    const alive = this.#alive;
    this.#hook = createHook({
      init(asyncId, type) {
        if (!TRACKED.has(type)) return;
        const stack = (new Error().stack ?? '')
          .split('\n')
          .slice(2)
          .filter((l) => !/node:internal|node:async_hooks|handles\.ts/.test(l))
          .slice(0, 8)
          .join('\n');
        alive.set(asyncId, { type, stack });
      },
      destroy(asyncId) {
        alive.delete(asyncId);
      },
    });
    this.#hook.enable();
  }

  /** Resources created since the tracker started and not destroyed, except those `ignore` says are someone else's. */
  alive(ignore: (r: LiveResource) => boolean = () => false): LiveResource[] {
    return [...this.#alive.values()].filter((r) => !ignore(r));
  }

  /** Counts by type (for a report). */
  static count(rs: readonly LiveResource[]): Record<string, number> {
    const out: Record<string, number> = {};
    for (const r of rs) out[r.type] = (out[r.type] ?? 0) + 1;
    return out;
  }

  stop(): void {
    this.#hook.disable();
  }
}

/** PIDs of this process's children running `comm` (e.g. ffmpeg), from /proc. */
export function childPids(comm: string): number[] {
  const out: number[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
      // pid (comm) state ppid ...: comm may hold spaces, so split after its closing parenthesis.
      const close = stat.lastIndexOf(')');
      const c = stat.slice(stat.indexOf('(') + 1, close);
      const ppid = Number(stat.slice(close + 2).split(' ')[1]);
      if (c === comm && ppid === process.pid) out.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return out.sort((a, b) => a - b);
}

/** Every process descending from `root` (children, their children...), with its command line, from /proc. */
export function descendants(root: number): { pid: number; comm: string; cmdline: string }[] {
  const procs: { pid: number; ppid: number; comm: string }[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
      const close = stat.lastIndexOf(')');
      procs.push({ pid: Number(name), comm: stat.slice(stat.indexOf('(') + 1, close), ppid: Number(stat.slice(close + 2).split(' ')[1]) });
    } catch {
      // gone meanwhile
    }
  }
  const out: { pid: number; comm: string; cmdline: string }[] = [];
  const walk = (pid: number) => {
    for (const p of procs.filter((x) => x.ppid === pid)) {
      let cmdline = '';
      try {
        cmdline = fs.readFileSync(`/proc/${p.pid}/cmdline`, 'utf8').split('\0').join(' ');
      } catch {
        // gone
      }
      out.push({ pid: p.pid, comm: p.comm, cmdline });
      walk(p.pid);
    }
  };
  walk(root);
  return out;
}
