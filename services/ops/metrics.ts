// Prometheus metrics (GET /metrics): one prom-client Registry per app (several apps share a test process), filled at
// scrape time by collect() callbacks that read live state, plus a few event-fed series (segment latency, FFmpeg
// restarts). docs/operations.md lists every metric and defines each figure.
import { createRequire } from 'node:module';
import type { IntervalHistogram, PerformanceObserver as PerfObserver } from 'node:perf_hooks';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Server } from 'socket.io';
import type { Mixer } from '../../pipelines/mixer/mixer.ts';
import type { Archiver } from '../archive/archiver.ts';
import type { CallDesk } from '../calls/desk.ts';
import type { QueueStats } from '../db/archive.ts';
import type { Logger } from '../logger.ts';
import type { StageRegistry } from '../sfu/registry.ts';
import type { Stage } from '../sfu/stage.ts';
import type { WorkerPool } from '../sfu/workerPool.ts';
import { ADMIN_NAMESPACE } from '../shared/admin.ts';
import { STAGE_NAMESPACE } from '../shared/stage.ts';
import { LISTEN_NAMESPACE } from '../shared/listen.ts';
import type { OnAir } from '../broadcast/onAir.ts';

export const METRIC_PREFIX = 'stage_radio_';

/** Socket.IO namespaces whose connections are counted. */
export const COUNTED_NAMESPACES = [STAGE_NAMESPACE, LISTEN_NAMESPACE, ADMIN_NAMESPACE] as const;

// ---------------------------------------------------------------------------------------------------------------
// Listeners, estimated from playlist requests

/**
 * Listeners per stage, estimated the way AzuraCast does for HLS: the distinct clients (IP address + User-Agent) that
 * fetched the stage's playlist within the last `windowSeconds`. A player refetches a live playlist every target
 * duration or so, so each listening player is counted once; players behind one NAT with the same browser count once.
 * No timers: expired clients are dropped as requests arrive and when counts are read. Memory is bounded.
 */
export class ListenerEstimator {
  readonly windowMs: number;
  readonly #maxClientsPerStage: number;
  readonly #maxStages: number;
  /** Per stage: client key → last fetch (ms). Insertion order is fetch order (re-inserted on every fetch). */
  readonly #stages = new Map<string, Map<string, number>>();

  constructor(opts: { windowSeconds?: number; maxClientsPerStage?: number; maxStages?: number } = {}) {
    const windowSeconds = opts.windowSeconds ?? 30;
    if (!(windowSeconds > 0)) throw new TypeError('windowSeconds must be > 0');
    this.windowMs = windowSeconds * 1000;
    this.#maxClientsPerStage = opts.maxClientsPerStage ?? 200_000;
    this.#maxStages = opts.maxStages ?? 10_000;
  }

  /** A client fetched the stage's playlist. */
  seen(stageId: string, ip: string, userAgent: string, now = Date.now()): void {
    let clients = this.#stages.get(stageId);
    if (!clients) {
      if (this.#stages.size >= this.#maxStages) this.#pruneAll(now);
      if (this.#stages.size >= this.#maxStages) return;
      clients = new Map();
      this.#stages.set(stageId, clients);
    }
    // User-Agents are client-chosen: only a bounded prefix is kept.
    const key = `${ip}\u0000${userAgent.slice(0, 256)}`;
    clients.delete(key);
    clients.set(key, now);
    this.#prune(clients, now);
    if (clients.size > this.#maxClientsPerStage) clients.delete(clients.keys().next().value!);
  }

  /** Estimated listeners of one stage now. */
  count(stageId: string, now = Date.now()): number {
    const clients = this.#stages.get(stageId);
    if (!clients) return 0;
    this.#prune(clients, now);
    if (clients.size === 0) this.#stages.delete(stageId);
    return clients.size;
  }

  /** Estimated listeners of every stage with any. */
  counts(now = Date.now()): Map<string, number> {
    this.#pruneAll(now);
    return new Map([...this.#stages].map(([id, clients]) => [id, clients.size]));
  }

  #prune(clients: Map<string, number>, now: number): void {
    for (const [key, at] of clients) {
      if (now - at < this.windowMs) break;
      clients.delete(key);
    }
  }

  #pruneAll(now: number): void {
    for (const [id, clients] of this.#stages) {
      this.#prune(clients, now);
      if (clients.size === 0) this.#stages.delete(id);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// mediasoup workers' CPU

export interface WorkerSample {
  index: number;
  pid: number;
  alive: boolean;
  routers: number;
  /** Total user + system CPU time of the worker process (getResourceUsage), seconds; null when it cannot be read. */
  cpuSeconds: number | null;
  /** CPU over the interval since the previous sample, % of one core; null without a previous sample of this pid. */
  cpuPercent: number | null;
}

/**
 * Samples the pool's workers' CPU (worker.getResourceUsage()) and derives CPU % from the delta between two samples.
 * Samples are shared: callers within `minIntervalMs` of the last sample (a scrape and the admin snapshot) get it again,
 * so the percentage is always over at least that long.
 */
export class WorkerCpuSampler {
  readonly #pool: WorkerPool;
  readonly #minIntervalMs: number;
  readonly #previous = new Map<number, { cpuMs: number; atMs: number }>();
  #last: { atMs: number; samples: WorkerSample[] } | null = null;
  #inFlight: Promise<WorkerSample[]> | null = null;

  constructor(pool: WorkerPool, opts: { minIntervalMs?: number } = {}) {
    this.#pool = pool;
    this.#minIntervalMs = opts.minIntervalMs ?? 500;
  }

  sample(): Promise<WorkerSample[]> {
    if (this.#last && performance.now() - this.#last.atMs < this.#minIntervalMs) return Promise.resolve(this.#last.samples);
    this.#inFlight ??= this.#sample().finally(() => (this.#inFlight = null));
    return this.#inFlight;
  }

  async #sample(): Promise<WorkerSample[]> {
    const samples = await Promise.all(
      this.#pool.workers.map(async (w): Promise<WorkerSample> => {
        const pid = w.worker.pid;
        const base = { index: w.index, pid, alive: !w.worker.closed, routers: w.routers };
        if (w.worker.closed) return { ...base, cpuSeconds: null, cpuPercent: null };
        try {
          const ru = await w.worker.getResourceUsage();
          const atMs = performance.now();
          const cpuMs = ru.ru_utime + ru.ru_stime;
          const prev = this.#previous.get(pid);
          this.#previous.set(pid, { cpuMs, atMs });
          const cpuPercent = prev && atMs > prev.atMs ? Math.max(0, (100 * (cpuMs - prev.cpuMs)) / (atMs - prev.atMs)) : null;
          return { ...base, cpuSeconds: cpuMs / 1000, cpuPercent };
        } catch {
          return { ...base, cpuSeconds: null, cpuPercent: null };
        }
      }),
    );
    // Forget processes that are gone (a respawned worker has a new pid).
    const live = new Set(samples.map((s) => s.pid));
    for (const pid of this.#previous.keys()) if (!live.has(pid)) this.#previous.delete(pid);
    this.#last = { atMs: performance.now(), samples };
    return samples;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Per-stage figures (shared with the admin snapshot)

export interface StageFigures {
  id: string;
  /** Performers joined on the stage (signaling). */
  performers: number;
  /** Inputs fed into the stage's mix (performers on air, and any other sender attached to the mixer). */
  mixInputs: number;
  /** mediasoup consumers in use: the performers' SFU consumers plus the mixer's PlainTransport consumers. */
  consumers: number;
  onAir: boolean;
  /**
   * How far the live edge is behind the programme clock: wall clock now minus the instant the programme clock reached
   * the end of the newest listed segment (programmeWallMs). Null until a segment is listed.
   */
  mixerLagSeconds: number | null;
}

/**
 * The wall-clock instant (ms) at which the mix's programme clock reached a PROGRAM-DATE-TIME of its playlist. Media
 * time is the PROGRAM-DATE-TIME minus the first segment's (as the timeline and the archive count it), and the programme
 * clock started at mixer.originWallMs, when the slots began feeding FFmpeg. FFmpeg stamps its first segment when its
 * output starts, a little after that: this takes the difference out, so latencies count from when the audio entered the
 * mix. Before the first segment is seen the PROGRAM-DATE-TIME is taken as it is.
 */
export function programmeWallMs(mixer: Mixer, programDateTimeMs: number): number {
  const origin = mixer.publisher.originDate;
  return origin === null ? programDateTimeMs : mixer.originWallMs + (programDateTimeMs - Date.parse(origin));
}

export function stageFigures(stage: Stage, nowMs = Date.now()): StageFigures {
  const mixer = stage.broadcast?.mixer ?? null;
  let consumers = mixer ? mixer.attached.size : 0;
  for (const p of stage.performers) consumers += p.consumerCount;
  const newestPdtEnd = mixer?.publisher.newestSegmentEndMs ?? null;
  const newestEnd = mixer && newestPdtEnd !== null ? programmeWallMs(mixer, newestPdtEnd) : null;
  return {
    id: stage.id,
    performers: stage.size,
    mixInputs: mixer ? mixer.attached.size : 0,
    consumers,
    onAir: mixer !== null,
    mixerLagSeconds: newestEnd === null ? null : (nowMs - newestEnd) / 1000,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Default (process) metrics, releasable

const nodeRequire = createRequire(import.meta.url);

/**
 * prom-client's collectDefaultMetrics, on the given registry, with the resources it starts captured so they can be
 * released: an event-loop-delay monitor (a libuv timer) and a GC PerformanceObserver. prom-client offers no way to
 * stop them, so the two perf_hooks factories it calls are wrapped for the duration of the (synchronous) call.
 */
export function collectReleasableDefaultMetrics(registry: Registry): { handles: number; release: () => void } {
  // The CommonJS exports object of perf_hooks, the very object prom-client calls through.
  const perfHooks = nodeRequire('node:perf_hooks') as typeof import('node:perf_hooks');
  const histograms: IntervalHistogram[] = [];
  const observers: PerfObserver[] = [];
  const monitor = perfHooks.monitorEventLoopDelay;
  const Observer = perfHooks.PerformanceObserver;
  perfHooks.monitorEventLoopDelay = (options) => {
    const h = monitor(options);
    histograms.push(h);
    return h;
  };
  perfHooks.PerformanceObserver = class extends Observer {
    constructor(callback: ConstructorParameters<typeof Observer>[0]) {
      super(callback);
      observers.push(this);
    }
  };
  try {
    collectDefaultMetrics({ register: registry });
  } finally {
    perfHooks.monitorEventLoopDelay = monitor;
    perfHooks.PerformanceObserver = Observer;
  }
  let released = false;
  return {
    handles: histograms.length + observers.length,
    release: () => {
      if (released) return;
      released = true;
      for (const h of histograms) h.disable();
      for (const o of observers) o.disconnect();
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// The app's metrics

export interface AppMetricsDeps {
  pool: WorkerPool;
  registry: StageRegistry;
  onAir: OnAir;
  archiver: Archiver | null;
  /** Call-in: calls waiting and on air. */
  calls?: Pick<CallDesk, 'counts'>;
  /** The Socket.IO server, once it exists (it is created after the HTTP app). */
  io: () => Server | null;
  log: Logger;
  listeners?: ListenerEstimator;
  cpu?: WorkerCpuSampler;
}

/** Seconds: a segment normally appears within a fraction of a second of its end. */
const SEGMENT_LATENCY_BUCKETS = [0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10];

type UploadCounter = 'uploaded' | 'retries' | 'failed';

/** How long a scrape or a snapshot waits for the database before going on without its figures. */
export const DB_READ_TIMEOUT_MS = 1000;

/** The promise's value, or a rejection once `ms` have passed without one. */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not answer within ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/** Reads that cost I/O (the queue's counts in the database, the workers' CPU) are shared by one scrape's collects. */
const SHARED_READ_MS = 250;

export class AppMetrics {
  readonly registry = new Registry();
  readonly listeners: ListenerEstimator;
  readonly cpu: WorkerCpuSampler;
  readonly #deps: AppMetricsDeps;
  readonly #log: Logger;
  readonly #releaseDefaults: () => void;
  readonly #stageListeners = new Map<Stage, () => void>();
  readonly #watchedMixers = new WeakSet<Mixer>();
  readonly #segmentLatency: Histogram;
  readonly #ffmpegRestarts: Counter;
  #queueRead: { atMs: number; value: Promise<QueueStats | null> } | null = null;
  readonly #uploadCounted: Record<UploadCounter, number> = { uploaded: 0, retries: 0, failed: 0 };
  readonly #cpuCounted = new Map<number, { pid: number; seconds: number }>();
  #closed = false;

  constructor(deps: AppMetricsDeps) {
    this.#deps = deps;
    this.#log = deps.log.child({ component: 'metrics' });
    this.listeners = deps.listeners ?? new ListenerEstimator();
    this.cpu = deps.cpu ?? new WorkerCpuSampler(deps.pool);
    this.#releaseDefaults = collectReleasableDefaultMetrics(this.registry).release;
    const registers = [this.registry];
    const name = (n: string) => `${METRIC_PREFIX}${n}`;
    const self = this;

    // Stages
    new Gauge({
      name: name('stages_live'),
      help: 'Stages on air (mixing and publishing HLS).',
      registers,
      collect() {
        this.set(deps.onAir.live().length);
      },
    });
    new Gauge({
      name: name('stages_open'),
      help: 'Stages with media open (a mediasoup router): performers on stage or on air.',
      registers,
      collect() {
        this.set(deps.registry.stages.length);
      },
    });
    const perStage = (metric: string, help: string, pick: (f: StageFigures) => number | null) => {
      new Gauge({
        name: name(metric),
        help: `${help} Total over all stages.`,
        registers,
        collect() {
          this.set(self.#figures().reduce((sum, f) => sum + (pick(f) ?? 0), 0));
        },
      });
      new Gauge({
        name: name(`stage_${metric}`),
        help: `${help} Per stage.`,
        labelNames: ['stage'],
        registers,
        collect() {
          this.reset();
          for (const f of self.#figures()) {
            const v = pick(f);
            if (v !== null) this.set({ stage: f.id }, v);
          }
        },
      });
    };
    perStage('performers', 'Performers joined on stage (signaling connections with a seat).', (f) => f.performers);
    perStage('mix_inputs', "Inputs fed into the stages' mixes (performers on air and any other attached sender).", (f) => f.mixInputs);
    perStage('consumers', 'mediasoup consumers in use: SFU consumers of performers plus the mixers\' PlainTransport consumers.', (f) => f.consumers);

    // Call-in
    new Gauge({
      name: name('calls'),
      help: 'Calls by state, all stages: waiting (in a queue) and on_air (accepted or connected).',
      labelNames: ['state'],
      registers,
      collect() {
        const c = deps.calls?.counts();
        this.set({ state: 'waiting' }, c?.waiting ?? 0);
        this.set({ state: 'on_air' }, c?.onAir ?? 0);
      },
    });
    new Gauge({
      name: name('stage_calls'),
      help: 'Calls by state per stage: waiting and on_air.',
      labelNames: ['stage', 'state'],
      registers,
      collect() {
        this.reset();
        for (const [stage, n] of deps.calls?.counts().byStage ?? []) {
          this.set({ stage, state: 'waiting' }, n.waiting);
          this.set({ stage, state: 'on_air' }, n.onAir);
        }
      },
    });

    // Listeners
    new Gauge({
      name: name('listeners'),
      help: `Estimated listeners, all stages: distinct IP + User-Agent that fetched a stage's index.m3u8 in the last ${this.listeners.windowMs / 1000} s.`,
      registers,
      collect() {
        let total = 0;
        for (const n of self.listeners.counts().values()) total += n;
        this.set(total);
      },
    });
    new Gauge({
      name: name('stage_listeners'),
      help: `Estimated listeners per stage: distinct IP + User-Agent that fetched its index.m3u8 in the last ${this.listeners.windowMs / 1000} s.`,
      labelNames: ['stage'],
      registers,
      collect() {
        this.reset();
        for (const [stage, n] of self.listeners.counts()) this.set({ stage }, n);
      },
    });

    // The mix
    new Gauge({
      name: name('mixer_lag_seconds'),
      help: 'Per stage on air: how far the live edge is behind the programme clock (wall clock now minus when the programme clock reached the end of the newest published segment).',
      labelNames: ['stage'],
      registers,
      collect() {
        this.reset();
        for (const f of self.#figures()) if (f.onAir && f.mixerLagSeconds !== null) this.set({ stage: f.id }, f.mixerLagSeconds);
      },
    });
    this.#segmentLatency = new Histogram({
      name: name('segment_latency_seconds'),
      help: 'From when the programme clock reached a segment\'s end to when the published playlist listed it.',
      buckets: SEGMENT_LATENCY_BUCKETS,
      registers,
    });
    this.#ffmpegRestarts = new Counter({
      name: name('ffmpeg_restarts_total'),
      help: 'Mixer FFmpeg processes restarted after they died.',
      registers,
    });

    // The upload queue
    new Gauge({
      name: name('upload_queue_depth'),
      help: 'Archive objects waiting for upload or uploading (pending + uploading).',
      registers,
      async collect() {
        const s = await self.queueStats();
        if (s) this.set(s.pending + s.uploading);
      },
    });
    new Gauge({
      name: name('upload_queue_objects'),
      help: 'Archive objects by state: pending, uploading, backing_off (pending, waiting out a retry delay), failed.',
      labelNames: ['state'],
      registers,
      async collect() {
        const s = await self.queueStats();
        if (!s) return;
        this.set({ state: 'pending' }, s.pending);
        this.set({ state: 'uploading' }, s.uploading);
        this.set({ state: 'backing_off' }, s.backingOff);
        this.set({ state: 'failed' }, s.failed);
      },
    });
    const queueCounter = (metric: string, help: string, key: UploadCounter) =>
      new Counter({
        name: name(metric),
        help,
        registers,
        collect() {
          const now = deps.archiver?.queue.counters[key] ?? 0;
          const delta = now - self.#uploadCounted[key];
          if (delta > 0) this.inc(delta);
          self.#uploadCounted[key] = now;
        },
      });
    queueCounter('uploads_total', 'Archive objects uploaded by this process.', 'uploaded');
    queueCounter('upload_retries_total', 'Failed upload attempts that will be retried.', 'retries');
    queueCounter('upload_failures_total', 'Archive objects that failed for good (attempts exhausted, or the local file gone or changed).', 'failed');

    // Socket.IO
    new Gauge({
      name: name('socketio_connections'),
      help: 'Connected Socket.IO clients per namespace.',
      labelNames: ['namespace'],
      registers,
      collect() {
        const io = deps.io();
        for (const ns of COUNTED_NAMESPACES) this.set({ namespace: ns }, io ? io.of(ns).sockets.size : 0);
      },
    });

    // mediasoup workers
    new Gauge({
      name: name('workers'),
      help: 'mediasoup worker processes alive.',
      registers,
      collect() {
        this.set(deps.pool.workers.filter((w) => !w.worker.closed).length);
      },
    });
    new Gauge({
      name: name('worker_routers'),
      help: 'mediasoup routers (one per open stage) per worker slot.',
      labelNames: ['worker'],
      registers,
      collect() {
        this.reset();
        for (const w of deps.pool.workers) this.set({ worker: String(w.index) }, w.routers);
      },
    });
    new Gauge({
      name: name('worker_cpu_percent'),
      help: 'CPU per worker slot, % of one core, over the interval between the last two samples (at least 0.5 s).',
      labelNames: ['worker'],
      registers,
      async collect() {
        this.reset();
        for (const s of await self.cpu.sample()) if (s.cpuPercent !== null) this.set({ worker: String(s.index) }, s.cpuPercent);
      },
    });
    new Counter({
      name: name('worker_cpu_seconds_total'),
      help: 'User + system CPU time per worker slot (getResourceUsage); restarts from 0 when a worker is respawned.',
      labelNames: ['worker'],
      registers,
      async collect() {
        for (const s of await self.cpu.sample()) {
          if (s.cpuSeconds === null) continue;
          const labels = { worker: String(s.index) };
          const seen = self.#cpuCounted.get(s.index);
          if (!seen || seen.pid !== s.pid) {
            // A new process in this slot: its own count, from zero (Prometheus sees a counter reset).
            this.remove(labels);
            this.inc(labels, s.cpuSeconds);
            self.#cpuCounted.set(s.index, { pid: s.pid, seconds: s.cpuSeconds });
          } else if (s.cpuSeconds > seen.seconds) {
            this.inc(labels, s.cpuSeconds - seen.seconds);
            seen.seconds = s.cpuSeconds;
          }
        }
      },
    });

    deps.registry.on('stageOpened', this.#watchStage);
    for (const stage of deps.registry.stages) this.#watchStage(stage);
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The text exposition of every metric. */
  render(): Promise<string> {
    return this.registry.metrics();
  }

  #figures(): StageFigures[] {
    const now = Date.now();
    return this.#deps.registry.stages.map((s) => stageFigures(s, now));
  }

  /** The upload queue's counts (shared by the reads of one scrape or snapshot); null when the database did not answer. */
  queueStats(): Promise<QueueStats | null> {
    const archiver = this.#deps.archiver;
    if (!archiver) return Promise.resolve(null);
    const now = performance.now();
    if (!this.#queueRead || now - this.#queueRead.atMs >= SHARED_READ_MS) {
      const value = withTimeout(archiver.queue.stats(), DB_READ_TIMEOUT_MS, 'the upload queue').catch((err: unknown) => {
        this.#log.warn('could not read the upload queue for metrics', { error: String(err) });
        return null;
      });
      this.#queueRead = { atMs: now, value };
    }
    return this.#queueRead.value;
  }

  readonly #watchStage = (stage: Stage): void => {
    if (this.#closed || this.#stageListeners.has(stage)) return;
    const onAirChanged = (onAir: boolean) => {
      if (onAir && stage.broadcast) this.#watchMixer(stage.broadcast.mixer);
    };
    const onClose = () => this.#stageListeners.delete(stage);
    stage.on('onAirChanged', onAirChanged);
    stage.once('@close', onClose);
    this.#stageListeners.set(stage, () => {
      stage.off('onAirChanged', onAirChanged);
      stage.off('@close', onClose);
    });
    if (stage.broadcast) this.#watchMixer(stage.broadcast.mixer);
  };

  #watchMixer(mixer: Mixer): void {
    if (this.#watchedMixers.has(mixer)) return;
    this.#watchedMixers.add(mixer);
    mixer.publisher.observer.on('segmentListed', (seg) => {
      if (!this.#closed) this.#segmentLatency.observe((seg.listedAtMs - programmeWallMs(mixer, seg.endMs)) / 1000);
    });
    mixer.ffmpeg.on('started', (_pid, restart) => {
      if (restart && !this.#closed) this.#ffmpegRestarts.inc();
    });
  }

  /** Idempotent: stops watching stages and releases the default metrics' monitors. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#deps.registry.off('stageOpened', this.#watchStage);
    for (const off of this.#stageListeners.values()) off();
    this.#stageListeners.clear();
    this.#releaseDefaults();
    this.registry.clear();
  }
}
