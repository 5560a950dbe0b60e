import winston from 'winston';

export type Logger = winston.Logger;

/** Root JSON logger. Components take child loggers carrying their context (stageId, performerId, pid). */
export function createLogger(level: string, opts: { silent?: boolean } = {}): Logger {
  return winston.createLogger({
    level,
    silent: opts.silent ?? false,
    format: winston.format.combine(winston.format.timestamp(), winston.format.errors({ stack: true }), winston.format.json()),
    transports: [new winston.transports.Console()],
  });
}
