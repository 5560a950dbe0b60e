// How the process ends on SIGTERM / SIGINT (docs/operations.md, "Shutdown"):
// 1st signal: graceful: the app drains, ends every broadcast, lets their uploads run for the grace, closes; exit 0.
// 2nd signal: the grace ends at once (uploads stay queued); closing goes on (FFmpeg, mediasoup, database) but must be
//             done within FORCED_EXIT_MS, or the process exits 1 anyway.
// 3rd signal: exit 1 at once. FFmpeg dies with its parent (PR_SET_PDEATHSIG), mediasoup workers with their channel.
import type { ShutdownOptions } from './app.ts';
import type { Logger } from './logger.ts';

const FORCED_EXIT_MS = 10_000;

export interface ShutdownTarget {
  close(opts?: ShutdownOptions): Promise<void>;
}

export function handleShutdownSignals(args: {
  app: ShutdownTarget;
  log: Logger;
  graceSeconds: number;
  exit?: (code: number) => void;
  signals?: readonly NodeJS.Signals[];
}): void {
  const exit = args.exit ?? ((code: number) => process.exit(code));
  const log = args.log.child({ component: 'lifecycle' });
  const cutGrace = new AbortController();
  let received = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    received++;
    if (received === 1) {
      const t0 = performance.now();
      log.info('shutting down', { signal, graceSeconds: args.graceSeconds });
      args.app.close({ graceMs: args.graceSeconds * 1000, signal: cutGrace.signal }).then(
        () => {
          log.info('stopped', { ms: Math.round(performance.now() - t0) });
          exit(0);
        },
        (err: unknown) => {
          log.error('shutdown failed', { error: String(err) });
          exit(1);
        },
      );
    } else if (received === 2) {
      log.warn('second signal: ending the upload grace now; what is left stays queued', { signal, forcedExitSeconds: FORCED_EXIT_MS / 1000 });
      cutGrace.abort();
      setTimeout(() => {
        log.error('shutdown did not finish in time; exiting');
        exit(1);
      }, FORCED_EXIT_MS).unref();
    } else {
      log.error('third signal: exiting now', { signal });
      exit(1);
    }
  };
  for (const signal of args.signals ?? (['SIGINT', 'SIGTERM'] as const)) process.on(signal, onSignal);
}
