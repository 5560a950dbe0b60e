// The one place that reads the environment. Every setting, its default and its check live here;
// README.md's "Configuration" table lists the same names (a test keeps them in step).
import crypto from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { machineNames, type TlsConfig } from './http/tls.ts';

const PROJECT_ROOT = path.resolve(import.meta.dirname, '..');

const port = z.coerce.number({ error: 'must be a port number (0-65535)' }).int('must be a port number (0-65535)').min(0).max(65535);
const ipv4 = z.string().regex(/^(\d{1,3})(\.\d{1,3}){3}$/, 'must be an IPv4 address');
const httpUrl = z.string().url().refine((u) => /^https?:\/\//.test(u), 'must be an http(s) URL');

/** Environment variables, with their defaults. Names are the public interface: keep README.md in step. */
export const ENV_SCHEMA = z
  .object({
    PORT: port.default(8080),
    HOST: z.string().min(1).default('0.0.0.0'),
    PUBLIC_URL: httpUrl.optional(),
    TLS: z.enum(['auto', 'off']).default('auto'),
    TLS_CERT_FILE: z.string().min(1).optional(),
    TLS_KEY_FILE: z.string().min(1).optional(),
    TLS_DIR: z.string().min(1).optional(),
    TLS_HOSTNAMES: z
      .string()
      .regex(/^[A-Za-z0-9.:-]+(,[A-Za-z0-9.:-]+)*$/, 'must be comma-separated host names or IP addresses')
      .optional(),
    ADMIN_TOKEN: z.string().min(16, 'must be at least 16 characters').optional(),
    LOG_LEVEL: z.enum(['error', 'warn', 'info', 'http', 'verbose', 'debug', 'silly']).default('info'),
    RTC_LISTEN_IP: ipv4.default('0.0.0.0'),
    RTC_ANNOUNCED_IP: z.string().min(1).optional(),
    RTC_MIN_PORT: port.default(40000),
    RTC_MAX_PORT: port.default(49999),
    MEDIASOUP_WORKERS: z.coerce.number({ error: 'must be a whole number 1-64' }).int().min(1).max(64).optional(),
    MEDIASOUP_LOG_LEVEL: z.enum(['debug', 'warn', 'error', 'none']).default('warn'),
    DATABASE_URL: z
      .string()
      .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// URL')
      .optional(),
    PGLITE_DIR: z.string().min(1).optional(),
    MAX_PERFORMERS_PER_STAGE: z.coerce.number({ error: 'must be a whole number 1-64' }).int().min(1).max(64).default(8),
    REJOIN_WAIT_SECONDS: z.coerce.number({ error: 'must be a number of seconds 1-3600' }).min(1).max(3600).default(30),
    CDN_DIR: z.string().min(1).optional(),
    PUBLIC_HLS_BASE_URL: httpUrl.optional(),
    HLS_SEGMENT_SECONDS: z.coerce.number({ error: 'must be a number of seconds' }).min(0.5).max(10).default(1),
    HLS_PART_SECONDS: z.coerce.number({ error: 'must be a number of seconds' }).min(0.1).max(2).default(0.2),
    LL_HLS: z.enum(['on', 'off']).default('on'),
    HLS_LIST_SIZE: z.coerce.number({ error: 'must be a whole number 3-100' }).int().min(3).max(100).default(10),
    AAC_BITRATE_KBPS: z.coerce.number({ error: 'must be a whole number 32-320' }).int().min(32).max(320).default(128),
    MIX_INPUT: z.enum(['ogg', 'rtp']).default('ogg'),
    ARCHIVE_DIR: z.string().min(1).optional(),
    S3_ENDPOINT: httpUrl.optional(),
    S3_REGION: z.string().min(1).default('us-east-1'),
    S3_BUCKET: z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'must be a valid bucket name').optional(),
    S3_ACCESS_KEY_ID: z.string().min(1).optional(),
    S3_SECRET_ACCESS_KEY: z.string().min(1).optional(),
    S3_FORCE_PATH_STYLE: z.enum(['true', 'false']).default('false'),
    S3_CHECKSUMS: z.enum(['when_required', 'when_supported']).default('when_required'),
    ARCHIVE_SPOOL_DIR: z.string().min(1).optional(),
    ARCHIVE_UPLOAD_CONCURRENCY: z.coerce.number({ error: 'must be a whole number 1-64' }).int().min(1).max(64).default(4),
    ARCHIVE_RETRY_BASE_SECONDS: z.coerce.number({ error: 'must be a number of seconds' }).min(0.05).max(3600).default(1),
    ARCHIVE_RETRY_MAX_SECONDS: z.coerce.number({ error: 'must be a number of seconds' }).min(0.1).max(86400).default(30),
    ARCHIVE_MAX_ATTEMPTS: z.coerce.number({ error: 'must be a whole number 1-1000000' }).int().min(1).max(1_000_000).default(1000),
    ARCHIVE_SWEEP_SECONDS: z.coerce.number({ error: 'must be a whole number 1-59' }).int().min(1).max(59).default(5),
    ARCHIVE_RETENTION_SECONDS: z.coerce.number({ error: 'must be a whole number of seconds' }).int().min(0).default(86400),
    ARCHIVE_DOWNLOAD_TTL_SECONDS: z.coerce.number({ error: 'must be a whole number 10-604800' }).int().min(10).max(604800).default(300),
    JOURNAL_DIR: z.string().min(1).optional(),
    SHUTDOWN_GRACE_SECONDS: z.coerce.number({ error: 'must be a whole number 0-3600' }).int().min(0).max(3600).default(20),
    CALL_QUEUE_MAX: z.coerce.number({ error: 'must be a whole number 1-1000' }).int().min(1).max(1000).default(20),
    CALL_REQUEST_TTL_SECONDS: z.coerce.number({ error: 'must be a number of seconds 5-3600' }).min(5).max(3600).default(120),
    CALL_RTP_TIMEOUT_SECONDS: z.coerce.number({ error: 'must be a number of seconds 2-120' }).min(2).max(120).default(10),
    CALL_REQUESTS_PER_MINUTE: z.coerce.number({ error: 'must be a whole number 1-1000' }).int().min(1).max(1000).default(5),
    WHIP_RTP_TIMEOUT_SECONDS: z.coerce.number({ error: 'must be a number of seconds 2-120' }).min(2).max(120).default(10),
    WHIP_ICE_SERVERS: z
      .string()
      .regex(/^(stuns?|turns?):[^\s,<>"]+(,(stuns?|turns?):[^\s,<>"]+)*$/, 'must be comma-separated stun:/turn: URLs')
      .optional(),
    RATE_LIMIT_JOIN_PER_MINUTE: z.coerce.number({ error: 'must be a whole number 1-100000' }).int().min(1).max(100_000).default(30),
    RATE_LIMIT_WRITE_PER_MINUTE: z.coerce.number({ error: 'must be a whole number 1-100000' }).int().min(1).max(100_000).default(120),
    REDIS_URL: z
      .string()
      .regex(/^rediss?:\/\//, 'must be a redis:// or rediss:// URL')
      .optional(),
    NODE_ID: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/, 'must be 1-63 letters, digits, dots, dashes or underscores')
      .optional(),
    NODE_PUBLIC_URL: httpUrl.optional(),
  })
  .superRefine((env, ctx) => {
    if (env.HLS_PART_SECONDS > env.HLS_SEGMENT_SECONDS / 2) {
      ctx.addIssue({ code: 'custom', path: ['HLS_PART_SECONDS'], message: 'must be at most half of HLS_SEGMENT_SECONDS' });
    }
    if (env.RTC_MIN_PORT > env.RTC_MAX_PORT) {
      ctx.addIssue({ code: 'custom', path: ['RTC_MIN_PORT'], message: 'must not be greater than RTC_MAX_PORT' });
    }
    if ((env.TLS_CERT_FILE === undefined) !== (env.TLS_KEY_FILE === undefined)) {
      ctx.addIssue({ code: 'custom', path: [env.TLS_CERT_FILE === undefined ? 'TLS_CERT_FILE' : 'TLS_KEY_FILE'], message: 'is required when the other TLS_*_FILE is set' });
    }
    const s3Set = [env.S3_ENDPOINT, env.S3_ACCESS_KEY_ID, env.S3_SECRET_ACCESS_KEY].some((v) => v !== undefined);
    if (env.REDIS_URL !== undefined && env.ADMIN_TOKEN === undefined) {
      ctx.addIssue({ code: 'custom', path: ['ADMIN_TOKEN'], message: 'is required with REDIS_URL: the nodes of a cluster share it (it also signs the requests they pass on to each other)' });
    }
    if (env.REDIS_URL !== undefined && env.DATABASE_URL === undefined) {
      ctx.addIssue({ code: 'custom', path: ['DATABASE_URL'], message: 'is required with REDIS_URL: the nodes of a cluster share one PostgreSQL (the embedded PGlite is one process\'s own)' });
    }
    if (s3Set && env.S3_BUCKET === undefined) {
      ctx.addIssue({ code: 'custom', path: ['S3_BUCKET'], message: 'is required when any other S3_* variable is set' });
    }
  });

export type Env = z.input<typeof ENV_SCHEMA>;

export interface Config {
  http: { port: number; host: string; publicUrl: string | null };
  /** HTTPS on the same port as HTTP (docs/https.md): off, given files, or a self-signed certificate kept in a folder. */
  tls: TlsConfig;
  adminToken: string;
  /** True when ADMIN_TOKEN was not set and a random one was generated for this run. */
  adminTokenGenerated: boolean;
  logLevel: string;
  mediasoup: {
    numWorkers: number;
    logLevel: 'debug' | 'warn' | 'error' | 'none';
    listenIp: string;
    announcedIp: string | undefined;
    rtcMinPort: number;
    rtcMaxPort: number;
  };
  db: { kind: 'pglite'; dataDir: string | null } | { kind: 'postgres'; url: string };
  /** rejoinWaitSeconds: after its media server died, how long a stage waits for a performer to come back. */
  stage: { maxPerformers: number; rejoinWaitSeconds: number };
  /** Call-in (docs/calls.md): the queue per stage, how long a request waits, when a silent caller is lost, requests per address. */
  calls: { queueMax: number; requestTtlMs: number; rtpTimeoutMs: number; requestsPerMinute: number };
  /** WHIP ingest (docs/whip.md): when a silent publisher is removed, and ICE servers to offer in Link headers. */
  whip: { rtpTimeoutMs: number; iceServers: string[] };
  /** Where database writes held through an outage are journaled (replayed at the next start). */
  journalDir: string;
  cdn: { dir: string; publicHlsBaseUrl: string | null };
  /** partSeconds: LL-HLS parts (and FFmpeg's fragments); lowLatency: list the parts (LL-HLS) or whole segments only. */
  /** mixInput: how the slots reach the mixer's FFmpeg (one Ogg pipe, or an RTP socket each). */
  hls: { segmentSeconds: number; partSeconds: number; lowLatency: boolean; listSize: number; aacBitrateKbps: number; mixInput: 'ogg' | 'rtp' };
  /** Where broadcasts are archived: a local folder (embedded default) or an S3-protocol bucket. */
  archive:
    | { kind: 'local'; dir: string }
    | {
        kind: 's3';
        endpoint: string | null;
        region: string;
        bucket: string;
        accessKeyId: string | null;
        secretAccessKey: string | null;
        forcePathStyle: boolean;
        /** The SDK's requestChecksumCalculation / responseChecksumValidation. */
        checksums?: 'WHEN_REQUIRED' | 'WHEN_SUPPORTED';
      };
  /** The upload queue and the local spool of files waiting for upload. */
  archiveQueue: {
    spoolDir: string;
    concurrency: number;
    retryBaseSeconds: number;
    retryMaxSeconds: number;
    maxAttempts: number;
    sweepSeconds: number;
    retentionSeconds: number;
    downloadTtlSeconds: number;
  };
  paths: { projectRoot: string; sqlDir: string; pagesDir: string };
  /** On SIGTERM/SIGINT, after every broadcast has ended: how long pending uploads may still run before the exit. */
  shutdown: { graceSeconds: number };
  /** Per client address; a stage allows twice as many (docs/operations.md, "Limits"). */
  rateLimits: { joinPerMinute: number; writePerMinute: number };
  /**
   * Cluster mode (docs/cluster.md), on when REDIS_URL is set: this node's id (NODE_ID, else generated per start) and
   * the address other nodes and clients reach it at (NODE_PUBLIC_URL, else PUBLIC_URL, else http://<host>:<port>).
   */
  cluster: { redisUrl: string; nodeId: string; publicUrl: string | null } | null;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
  }
}

/** Parses the given environment (process.env by default). Throws ConfigError listing every bad variable. */
export function loadConfig(source: Record<string, string | undefined> = process.env): Config {
  const relevant: Record<string, string> = {};
  for (const key of Object.keys(ENV_SCHEMA.shape)) {
    const v = source[key];
    if (v !== undefined && v !== '') relevant[key] = v;
  }
  const parsed = ENV_SCHEMA.safeParse(relevant);
  if (!parsed.success) {
    throw new ConfigError(parsed.error.issues.map((i) => `${i.path.join('.') || '(env)'}: ${i.message}`));
  }
  const env = parsed.data;
  const listenIp = env.RTC_LISTEN_IP;
  const announcedIp = env.RTC_ANNOUNCED_IP ?? (listenIp === '0.0.0.0' ? '127.0.0.1' : undefined);
  return {
    http: { port: env.PORT, host: env.HOST, publicUrl: env.PUBLIC_URL?.replace(/\/+$/, '') ?? null },
    tls:
      env.TLS === 'off'
        ? { mode: 'off' }
        : env.TLS_CERT_FILE !== undefined && env.TLS_KEY_FILE !== undefined
          ? { mode: 'files', certFile: path.resolve(env.TLS_CERT_FILE), keyFile: path.resolve(env.TLS_KEY_FILE) }
          : {
              mode: 'self-signed',
              dir: path.resolve(env.TLS_DIR ?? path.join(PROJECT_ROOT, 'data', 'tls')),
              names: machineNames([
                ...(env.TLS_HOSTNAMES?.split(',') ?? []),
                ...(env.PUBLIC_URL ? [new URL(env.PUBLIC_URL).hostname.replace(/^\[|\]$/g, '')] : []),
                ...(env.RTC_ANNOUNCED_IP ? [env.RTC_ANNOUNCED_IP] : []),
              ]),
            },
    adminToken: env.ADMIN_TOKEN ?? crypto.randomBytes(24).toString('base64url'),
    adminTokenGenerated: env.ADMIN_TOKEN === undefined,
    logLevel: env.LOG_LEVEL,
    mediasoup: {
      numWorkers: env.MEDIASOUP_WORKERS ?? os.availableParallelism(),
      logLevel: env.MEDIASOUP_LOG_LEVEL,
      listenIp,
      announcedIp,
      rtcMinPort: env.RTC_MIN_PORT,
      rtcMaxPort: env.RTC_MAX_PORT,
    },
    db: env.DATABASE_URL
      ? { kind: 'postgres', url: env.DATABASE_URL }
      : { kind: 'pglite', dataDir: env.PGLITE_DIR === 'memory' ? null : path.resolve(env.PGLITE_DIR ?? path.join(PROJECT_ROOT, 'data', 'pglite')) },
    stage: { maxPerformers: env.MAX_PERFORMERS_PER_STAGE, rejoinWaitSeconds: env.REJOIN_WAIT_SECONDS },
    calls: {
      queueMax: env.CALL_QUEUE_MAX,
      requestTtlMs: env.CALL_REQUEST_TTL_SECONDS * 1000,
      rtpTimeoutMs: env.CALL_RTP_TIMEOUT_SECONDS * 1000,
      requestsPerMinute: env.CALL_REQUESTS_PER_MINUTE,
    },
    whip: { rtpTimeoutMs: env.WHIP_RTP_TIMEOUT_SECONDS * 1000, iceServers: env.WHIP_ICE_SERVERS?.split(',') ?? [] },
    journalDir: path.resolve(env.JOURNAL_DIR ?? path.join(PROJECT_ROOT, 'data', 'journal')),
    cdn: {
      dir: path.resolve(env.CDN_DIR ?? path.join(PROJECT_ROOT, 'cdn')),
      publicHlsBaseUrl: env.PUBLIC_HLS_BASE_URL?.replace(/\/+$/, '') ?? null,
    },
    hls: {
      segmentSeconds: env.HLS_SEGMENT_SECONDS,
      partSeconds: env.HLS_PART_SECONDS,
      lowLatency: env.LL_HLS === 'on',
      listSize: env.HLS_LIST_SIZE,
      aacBitrateKbps: env.AAC_BITRATE_KBPS,
      mixInput: env.MIX_INPUT,
    },
    archive:
      env.S3_BUCKET !== undefined
        ? {
            kind: 's3',
            endpoint: env.S3_ENDPOINT ?? null,
            region: env.S3_REGION,
            bucket: env.S3_BUCKET,
            accessKeyId: env.S3_ACCESS_KEY_ID ?? null,
            secretAccessKey: env.S3_SECRET_ACCESS_KEY ?? null,
            forcePathStyle: env.S3_FORCE_PATH_STYLE === 'true',
            checksums: env.S3_CHECKSUMS === 'when_supported' ? 'WHEN_SUPPORTED' : 'WHEN_REQUIRED',
          }
        : { kind: 'local', dir: path.resolve(env.ARCHIVE_DIR ?? path.join(PROJECT_ROOT, 'data', 'archive')) },
    archiveQueue: {
      spoolDir: path.resolve(env.ARCHIVE_SPOOL_DIR ?? path.join(PROJECT_ROOT, 'data', 'spool')),
      concurrency: env.ARCHIVE_UPLOAD_CONCURRENCY,
      retryBaseSeconds: env.ARCHIVE_RETRY_BASE_SECONDS,
      retryMaxSeconds: Math.max(env.ARCHIVE_RETRY_MAX_SECONDS, env.ARCHIVE_RETRY_BASE_SECONDS),
      maxAttempts: env.ARCHIVE_MAX_ATTEMPTS,
      sweepSeconds: env.ARCHIVE_SWEEP_SECONDS,
      retentionSeconds: env.ARCHIVE_RETENTION_SECONDS,
      downloadTtlSeconds: env.ARCHIVE_DOWNLOAD_TTL_SECONDS,
    },
    paths: {
      projectRoot: PROJECT_ROOT,
      sqlDir: path.join(PROJECT_ROOT, 'sql'),
      pagesDir: path.join(PROJECT_ROOT, 'services', 'pages'),
    },
    shutdown: { graceSeconds: env.SHUTDOWN_GRACE_SECONDS },
    rateLimits: { joinPerMinute: env.RATE_LIMIT_JOIN_PER_MINUTE, writePerMinute: env.RATE_LIMIT_WRITE_PER_MINUTE },
    cluster: env.REDIS_URL
      ? {
          redisUrl: env.REDIS_URL,
          nodeId: env.NODE_ID ?? `${os.hostname().replace(/[^A-Za-z0-9_.-]/g, '-').slice(0, 40)}-${crypto.randomBytes(4).toString('hex')}`,
          publicUrl: (env.NODE_PUBLIC_URL ?? env.PUBLIC_URL)?.replace(/\/+$/, '') ?? null,
        }
      : null,
  };
}
