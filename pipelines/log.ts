// The logger pipelines take: the part of winston's Logger they use, so pipelines never import services. A winston
// Logger (services/logger.ts) is assignable to it; test/unit/ffmpeg-runner.test.ts checks that at compile time.

export type LogMeta = Record<string, unknown>;

export interface Log {
  error(message: string, meta?: LogMeta): unknown;
  warn(message: string, meta?: LogMeta): unknown;
  info(message: string, meta?: LogMeta): unknown;
  debug(message: string, meta?: LogMeta): unknown;
  /** A logger whose every line also carries `meta` (the context chain: stage, component, pid). */
  child(meta: LogMeta): Log;
}

/** Drops everything: for callers that pass no logger. */
export const silentLog: Log = {
  error: () => undefined,
  warn: () => undefined,
  info: () => undefined,
  debug: () => undefined,
  child: () => silentLog,
};
