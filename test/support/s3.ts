// A real S3-protocol server (s3rver, filesystem-backed) for tests, with outage simulation.
import fsp from 'node:fs/promises';
import type http from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';

/** The part of s3rver 3.7.1 we use (it ships no typings). */
interface S3rverInstance {
  run(): Promise<AddressInfo>;
  close(): Promise<void>;
  httpServer?: http.Server;
}
type S3rverConstructor = new (options: {
  port: number;
  address: string;
  silent: boolean;
  directory: string;
  configureBuckets: { name: string }[];
}) => S3rverInstance;

const require = createRequire(import.meta.url);
const S3rver = require('s3rver') as S3rverConstructor;

export interface S3Server {
  readonly port: number;
  /** http://127.0.0.1:<port> */
  readonly endpoint: string;
  readonly bucket: string;
  /** s3rver's data directory (temp, removed on stop). */
  readonly dir: string;
  /** The env vars that point the app at this server. */
  env(): Record<string, string>;
  /** The archive config for openStore(). */
  config(): { kind: 's3'; endpoint: string; region: string; bucket: string; accessKeyId: string; secretAccessKey: string; forcePathStyle: true };
  /** Simulates an outage: the server stops listening (connections refused) but keeps its data. */
  pause(): Promise<void>;
  /** Listens again on the same port with the same data. */
  resume(): Promise<void>;
  /** Stops and removes the data dir. Idempotent. */
  stop(): Promise<void>;
}

const REGION = 'us-east-1';
/** s3rver's built-in account. */
const ACCESS_KEY = 'S3RVER';

export async function startS3(opts: { bucket?: string; port?: number } = {}): Promise<S3Server> {
  const bucket = opts.bucket ?? 'archive-test';
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 's3rver-'));
  let instance: S3rverInstance | null = null;

  const launch = async (port: number): Promise<number> => {
    const server = new S3rver({ port, address: '127.0.0.1', silent: true, directory: dir, configureBuckets: [{ name: bucket }] });
    const address = await server.run();
    instance = server;
    return address.port;
  };

  const shutdown = async (): Promise<void> => {
    const server = instance;
    if (server === null) return;
    instance = null;
    const closed = server.close();
    // close() alone waits for keep-alive sockets to go idle and time out; drop them so clients
    // see the outage at once (ECONNRESET on pooled sockets, then ECONNREFUSED).
    server.httpServer?.closeAllConnections();
    await closed;
  };

  let port: number;
  try {
    port = await launch(opts.port ?? 0);
  } catch (err) {
    await fsp.rm(dir, { recursive: true, force: true });
    throw err;
  }
  const endpoint = `http://127.0.0.1:${port}`;
  let stopping: Promise<void> | null = null;

  return {
    port,
    endpoint,
    bucket,
    dir,
    env: () => ({
      S3_ENDPOINT: endpoint,
      S3_REGION: REGION,
      S3_BUCKET: bucket,
      S3_ACCESS_KEY_ID: ACCESS_KEY,
      S3_SECRET_ACCESS_KEY: ACCESS_KEY,
      S3_FORCE_PATH_STYLE: 'true',
    }),
    config: () => ({
      kind: 's3',
      endpoint,
      region: REGION,
      bucket,
      accessKeyId: ACCESS_KEY,
      secretAccessKey: ACCESS_KEY,
      forcePathStyle: true,
    }),
    pause: async () => {
      if (stopping !== null) throw new Error('s3 test server is stopped');
      await shutdown();
    },
    resume: async () => {
      if (stopping !== null) throw new Error('s3 test server is stopped');
      if (instance !== null) return;
      const deadline = Date.now() + 2000;
      for (;;) {
        try {
          await launch(port);
          return;
        } catch (err) {
          const code = (err as { code?: unknown }).code;
          if (code !== 'EADDRINUSE' || Date.now() > deadline) throw err;
          await new Promise((r) => setTimeout(r, 50));
        }
      }
    },
    stop: () => {
      stopping ??= (async () => {
        try {
          await shutdown();
        } finally {
          await fsp.rm(dir, { recursive: true, force: true });
        }
      })();
      return stopping;
    },
  };
}
