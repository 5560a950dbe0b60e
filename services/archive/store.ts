// Where archived broadcasts end up: a local folder (embedded default) or an S3-protocol bucket.
// Both stores share one contract (ObjectStore); callers never branch on the kind except to choose
// between a presigned URL (S3) and streaming a local file (local).
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  CreateBucketCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type BucketLocationConstraint,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import type { Config } from '../config.ts';
import type { Logger } from '../logger.ts';

export interface ObjectInfo {
  size: number;
}

export interface ObjectStore {
  readonly kind: 'local' | 's3';
  /** Human description for logs, e.g. 's3://bucket (http://127.0.0.1:4569)' or 'file:///abs/dir'. No secrets. */
  readonly description: string;
  /** Makes sure the bucket / folder exists (S3: HeadBucket, CreateBucket on 404/NoSuchBucket). Safe to call again. */
  init(): Promise<void>;
  /**
   * Uploads a local file under key, overwriting, and resolves with the confirmed stored size.
   * S3: multipart (8 MiB parts, 2 in flight) streamed from disk, then HeadObject must report the file's size.
   * Local: copied to a temp name in the target folder, fsynced, renamed into place (atomic).
   * Rejects quickly when the store is unreachable.
   */
  putFile(key: string, filePath: string, contentType: string): Promise<ObjectInfo>;
  /** Same for a small in-memory body (manifests, playlists). */
  putBuffer(key: string, body: Buffer, contentType: string): Promise<ObjectInfo>;
  /** null when absent. */
  head(key: string): Promise<ObjectInfo | null>;
  /** The object's bytes (tests, small files). Rejects if absent. */
  getBuffer(key: string): Promise<Buffer>;
  /**
   * S3: a presigned GET URL valid ttlSeconds, with ResponseContentDisposition `attachment; filename="<filename>"`
   * when filename is given (quote-safe) and ResponseContentType when given. Local: null.
   */
  presignGet(key: string, opts: { ttlSeconds: number; filename?: string; contentType?: string }): Promise<string | null>;
  /** Local: the absolute path of the stored object (for streaming with Range). S3: null. */
  localPath(key: string): string | null;
  /** Keys under prefix with sizes, sorted by key (S3: ListObjectsV2 paginated). */
  list(prefix: string): Promise<{ key: string; size: number }[]>;
  /** Idempotent; releases the SDK client. Later calls reject. */
  close(): void;
}

type S3ArchiveConfig = Extract<Config['archive'], { kind: 's3' }>;

const MAX_KEY_BYTES = 1024;
const PART_SIZE = 8 * 1024 * 1024;
const QUEUE_SIZE = 2;
const CONNECTION_TIMEOUT_MS = 3000;
const REQUEST_TIMEOUT_MS = 30000;

/** Returns the store the configuration asks for. Call init() before use. */
export function openStore(config: Config['archive'], log: Logger): ObjectStore {
  return config.kind === 's3' ? new S3Store(config, log) : new LocalStore(config.dir, log);
}

/**
 * Refuses keys that are empty, absolute, contain '.' or '..' segments or empty segments ('a//b', 'a/'),
 * backslashes, NUL or other control characters, unpaired surrogates, or are longer than 1024 UTF-8 bytes.
 * Throws Error('invalid object key: ...'). Both stores call it.
 */
export function assertValidKey(key: string): void {
  const problem = keyProblem(key);
  if (problem !== null) {
    const shown = typeof key === 'string' ? JSON.stringify(key.length > 80 ? `${key.slice(0, 80)}…` : key) : String(key);
    throw new Error(`invalid object key: ${problem}: ${shown}`);
  }
}

function keyProblem(key: string): string | null {
  if (typeof key !== 'string' || key.length === 0) return 'empty';
  if (Buffer.byteLength(key, 'utf8') > MAX_KEY_BYTES) return `longer than ${MAX_KEY_BYTES} bytes`;
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(key)) return 'contains NUL or control characters';
  if (/\p{Cs}/u.test(key)) return 'contains an unpaired surrogate';
  if (key.includes('\\')) return 'contains a backslash';
  if (key.startsWith('/')) return 'absolute';
  const segments = key.split('/');
  if (segments.includes('..')) return "contains a '..' segment";
  if (segments.includes('.')) return "contains a '.' segment";
  if (segments.includes('')) return 'contains an empty segment';
  return null;
}

/** Prefixes may be '' or end with '/', but must not escape the store either. */
function assertValidPrefix(prefix: string): void {
  if (prefix === '') return;
  const problem = keyProblem(prefix.endsWith('/') ? prefix.slice(0, -1) : prefix);
  if (problem !== null) throw new Error(`invalid object key prefix: ${problem}: ${JSON.stringify(prefix.slice(0, 80))}`);
}

/** `attachment; filename="..."` with a quote-safe ASCII fallback, plus RFC 6266 filename* when it is not plain ASCII. */
function contentDisposition(filename: string): string {
  const fallback = filename.replace(/[^\x20-\x7e]|["\\%]/g, '_').trim() || 'download';
  const plain = fallback === filename;
  if (plain) return `attachment; filename="${fallback}"`;
  const encoded = encodeURIComponent(filename).replace(/['()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  return `attachment; filename="${fallback}"; filename*=UTF-8''${encoded}`;
}

function errnoCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && typeof (err as { code?: unknown }).code === 'string'
    ? (err as { code: string }).code
    : undefined;
}

// ---------------------------------------------------------------------------------------------
// Local folder
// ---------------------------------------------------------------------------------------------

const TEMP_NAME = /^\..+\.[0-9a-f]{16}\.tmp$/;

export class LocalStore implements ObjectStore {
  readonly kind = 'local' as const;
  readonly description: string;
  private readonly dir: string;
  private readonly log: Logger;
  private closed = false;

  constructor(dir: string, log: Logger) {
    this.dir = path.resolve(dir);
    this.description = pathToFileURL(this.dir).href;
    this.log = log.child({ component: 'store' });
  }

  async init(): Promise<void> {
    this.assertOpen();
    await fsp.mkdir(this.dir, { recursive: true });
    this.log.debug('archive store ready', { store: this.description });
  }

  async putFile(key: string, filePath: string, contentType: string): Promise<ObjectInfo> {
    this.assertOpen();
    const dest = this.pathFor(key);
    const started = Date.now();
    const source = await fsp.stat(filePath); // ENOENT surfaces here, before anything is created
    if (!source.isFile()) throw new Error(`cannot archive ${filePath}: not a regular file`);
    const size = await this.writeAtomically(dest, async (tmp) => {
      await fsp.copyFile(filePath, tmp, fs.constants.COPYFILE_EXCL);
      const fh = await fsp.open(tmp, 'r+');
      try {
        await fh.sync();
        return (await fh.stat()).size;
      } finally {
        await fh.close();
      }
    }, source.size);
    this.log.debug('stored file', { key, size, contentType, ms: Date.now() - started });
    return { size };
  }

  async putBuffer(key: string, body: Buffer, contentType: string): Promise<ObjectInfo> {
    this.assertOpen();
    const dest = this.pathFor(key);
    const size = await this.writeAtomically(dest, async (tmp) => {
      const fh = await fsp.open(tmp, 'wx');
      try {
        await fh.writeFile(body);
        await fh.sync();
        return (await fh.stat()).size;
      } finally {
        await fh.close();
      }
    }, body.length);
    this.log.debug('stored buffer', { key, size, contentType });
    return { size };
  }

  async head(key: string): Promise<ObjectInfo | null> {
    this.assertOpen();
    try {
      const st = await fsp.stat(this.pathFor(key));
      return st.isFile() ? { size: st.size } : null;
    } catch (err) {
      const code = errnoCode(err);
      if (code === 'ENOENT' || code === 'ENOTDIR') return null;
      throw err;
    }
  }

  async getBuffer(key: string): Promise<Buffer> {
    this.assertOpen();
    return fsp.readFile(this.pathFor(key));
  }

  async presignGet(key: string, _opts: { ttlSeconds: number; filename?: string; contentType?: string }): Promise<string | null> {
    assertValidKey(key);
    return null;
  }

  localPath(key: string): string | null {
    return this.pathFor(key);
  }

  async list(prefix: string): Promise<{ key: string; size: number }[]> {
    this.assertOpen();
    assertValidPrefix(prefix);
    const slash = prefix.lastIndexOf('/');
    const startSegments = slash >= 0 ? prefix.slice(0, slash).split('/') : [];
    const out: { key: string; size: number }[] = [];
    const walk = async (segments: string[]): Promise<void> => {
      let entries: fs.Dirent[];
      try {
        entries = await fsp.readdir(path.join(this.dir, ...segments), { withFileTypes: true });
      } catch (err) {
        const code = errnoCode(err);
        if (code === 'ENOENT' || code === 'ENOTDIR') return;
        throw err;
      }
      for (const entry of entries) {
        const childSegments = [...segments, entry.name];
        const key = childSegments.join('/');
        if (entry.isDirectory()) {
          // Only descend where keys under it can still match the prefix.
          if (`${key}/`.startsWith(prefix) || prefix.startsWith(`${key}/`)) await walk(childSegments);
        } else if (entry.isFile() && !TEMP_NAME.test(entry.name) && key.startsWith(prefix)) {
          try {
            const st = await fsp.stat(path.join(this.dir, ...childSegments));
            out.push({ key, size: st.size });
          } catch (err) {
            if (errnoCode(err) !== 'ENOENT') throw err; // removed while listing
          }
        }
      }
    };
    await walk(startSegments);
    out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    return out;
  }

  close(): void {
    this.closed = true;
  }

  private assertOpen(): void {
    if (this.closed) throw new Error(`object store ${this.description} is closed`);
  }

  private pathFor(key: string): string {
    assertValidKey(key);
    const p = path.join(this.dir, ...key.split('/'));
    if (!p.startsWith(this.dir + path.sep)) throw new Error(`invalid object key: escapes the archive folder: ${JSON.stringify(key)}`);
    return p;
  }

  /** Writes via `write(tmp)` next to dest, checks the size, renames into place; on failure removes what it made. */
  private async writeAtomically(dest: string, write: (tmp: string) => Promise<number>, expectedSize: number): Promise<number> {
    const folder = path.dirname(dest);
    const firstCreated = await fsp.mkdir(folder, { recursive: true });
    const tmp = path.join(folder, `.${path.basename(dest)}.${crypto.randomBytes(8).toString('hex')}.tmp`);
    try {
      const size = await write(tmp);
      if (size !== expectedSize) {
        throw new Error(`stored ${size} bytes for ${path.basename(dest)} but expected ${expectedSize} (source changed while copying?)`);
      }
      await fsp.rename(tmp, dest);
      await fsyncDir(folder);
      return size;
    } catch (err) {
      await fsp.rm(tmp, { force: true }).catch(() => {});
      if (firstCreated !== undefined) await removeEmptyDirs(folder, firstCreated);
      throw err;
    }
  }
}

async function fsyncDir(dir: string): Promise<void> {
  let fh: fsp.FileHandle | undefined;
  try {
    fh = await fsp.open(dir, 'r');
    await fh.sync();
  } catch {
    // Not every platform / filesystem lets a directory be fsynced; the rename itself is still atomic.
  } finally {
    await fh?.close().catch(() => {});
  }
}

/** Removes `from` and its parents up to and including `upTo`, stopping at the first that is not empty. */
async function removeEmptyDirs(from: string, upTo: string): Promise<void> {
  let dir = from;
  for (;;) {
    try {
      await fsp.rmdir(dir);
    } catch {
      return;
    }
    if (dir === upTo || !dir.startsWith(upTo)) return;
    dir = path.dirname(dir);
  }
}

// ---------------------------------------------------------------------------------------------
// S3
// ---------------------------------------------------------------------------------------------

interface SdkErrorShape {
  name?: unknown;
  message?: unknown;
  code?: unknown;
  Code?: unknown;
  errors?: unknown;
  $metadata?: { httpStatusCode?: number };
}

/** The first Node.js major the AWS SDK's releases after January 2027 support. */
const SDK_NODE_MAJOR = 22;

/**
 * On an older Node.js the SDK prints an eight-line NodeVersionSupportWarning on stderr when a client is made. Said
 * once in the service's log instead, as one structured line; `AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED` set by
 * the operator is left alone.
 */
function sayNodeSupportOnce(log: Logger): void {
  if (process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] !== undefined) return;
  process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] = 'true';
  const major = Number(process.versions.node.split('.')[0]);
  if (major < SDK_NODE_MAJOR) {
    log.warn(`Node.js ${process.version} is past its end of life; the AWS SDK's releases after January 2027 need Node.js ${SDK_NODE_MAJOR} or later (24 LTS is recommended)`);
  }
}

function sdkStatus(err: unknown): number | undefined {
  return typeof err === 'object' && err !== null ? (err as SdkErrorShape).$metadata?.httpStatusCode : undefined;
}

function sdkName(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const e = err as SdkErrorShape;
  for (const v of [e.Code, e.code, e.name]) if (typeof v === 'string' && v !== '' && v !== 'Error') return v;
  return undefined;
}

function isNotFound(err: unknown): boolean {
  const name = sdkName(err);
  return sdkStatus(err) === 404 || name === 'NotFound' || name === 'NoSuchKey' || name === 'NoSuchBucket';
}

/** One readable line for an SDK / network error: "<Code> (HTTP <status>): <message>". */
function describeError(err: unknown): string {
  if (typeof err !== 'object' || err === null) return String(err);
  const e = err as SdkErrorShape;
  let message = typeof e.message === 'string' ? e.message : '';
  if (message === '' && Array.isArray(e.errors)) {
    // AggregateError (e.g. from a multi-address connect) carries its reasons inside.
    message = e.errors.map((inner: unknown) => (inner instanceof Error ? inner.message : String(inner))).join('; ');
  }
  const name = sdkName(err);
  const status = sdkStatus(err);
  const head = [name, status !== undefined ? `(HTTP ${status})` : undefined].filter(Boolean).join(' ');
  if (message === '' || message === name || message === 'UnknownError') return head || 'unknown error';
  // Network errors already say what they are: "connect ECONNREFUSED 127.0.0.1:4569".
  if (status === undefined && name !== undefined && message.includes(name)) return message;
  return head ? `${head}: ${message}` : message;
}

export class S3Store implements ObjectStore {
  readonly kind = 's3' as const;
  readonly description: string;
  private readonly bucket: string;
  private readonly region: string;
  private readonly endpoint: string | null;
  private readonly client: S3Client;
  private readonly log: Logger;
  private closed = false;

  constructor(cfg: S3ArchiveConfig, log: Logger) {
    this.bucket = cfg.bucket;
    this.region = cfg.region;
    this.endpoint = cfg.endpoint;
    this.log = log.child({ component: 'store' });
    this.description = `s3://${cfg.bucket} (${cfg.endpoint !== null ? redactUrl(cfg.endpoint) : `aws ${cfg.region}`})`;
    const clientConfig: S3ClientConfig = {
      region: cfg.region,
      forcePathStyle: cfg.forcePathStyle,
      // Plain (non aws-chunked) bodies: S3-compatible servers that do not understand the chunked trailer
      // framing would otherwise store it inside the object. Real S3 accepts this too.
      requestChecksumCalculation: cfg.checksums ?? 'WHEN_REQUIRED',
      responseChecksumValidation: cfg.checksums ?? 'WHEN_REQUIRED',
      // The caller (a durable queue) retries with its own backoff; fail fast here.
      maxAttempts: 2,
      requestHandler: new NodeHttpHandler({ connectionTimeout: CONNECTION_TIMEOUT_MS, requestTimeout: REQUEST_TIMEOUT_MS }),
    };
    if (cfg.endpoint !== null) clientConfig.endpoint = cfg.endpoint;
    if (cfg.accessKeyId !== null && cfg.secretAccessKey !== null) {
      clientConfig.credentials = { accessKeyId: cfg.accessKeyId, secretAccessKey: cfg.secretAccessKey };
    }
    sayNodeSupportOnce(this.log);
    this.client = new S3Client(clientConfig);
  }

  async init(): Promise<void> {
    this.assertOpen();
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }));
      this.log.debug('archive bucket exists', { store: this.description });
      return;
    } catch (err) {
      if (!isNotFound(err)) throw this.wrap('HeadBucket', null, err);
    }
    try {
      await this.client.send(
        new CreateBucketCommand({
          Bucket: this.bucket,
          ...(this.region !== 'us-east-1' && this.endpoint === null
            ? { CreateBucketConfiguration: { LocationConstraint: this.region as BucketLocationConstraint } }
            : {}),
        }),
      );
      this.log.info('created archive bucket', { store: this.description });
    } catch (err) {
      if (sdkName(err) === 'BucketAlreadyOwnedByYou') return; // created concurrently by us
      throw this.wrap('CreateBucket', null, err);
    }
  }

  async putFile(key: string, filePath: string, contentType: string): Promise<ObjectInfo> {
    this.assertOpen();
    assertValidKey(key);
    const started = Date.now();
    const source = await fsp.stat(filePath); // ENOENT surfaces as-is
    if (!source.isFile()) throw new Error(`cannot archive ${filePath}: not a regular file`);
    const body = fs.createReadStream(filePath);
    // Surface read errors through the upload, not as an unhandled 'error' event.
    body.on('error', () => {});
    try {
      const upload = new Upload({
        client: this.client,
        params: { Bucket: this.bucket, Key: key, Body: body, ContentType: contentType, ContentLength: source.size },
        partSize: PART_SIZE,
        queueSize: QUEUE_SIZE,
        leavePartsOnError: false,
      });
      await upload.done();
    } catch (err) {
      throw this.wrap('Upload', key, err);
    } finally {
      body.destroy();
    }
    const info = await this.confirm(key, source.size);
    this.log.debug('uploaded file', { key, size: info.size, contentType, ms: Date.now() - started });
    return info;
  }

  async putBuffer(key: string, body: Buffer, contentType: string): Promise<ObjectInfo> {
    this.assertOpen();
    assertValidKey(key);
    try {
      await this.client.send(
        new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: body, ContentType: contentType, ContentLength: body.length }),
      );
    } catch (err) {
      throw this.wrap('PutObject', key, err);
    }
    const info = await this.confirm(key, body.length);
    this.log.debug('uploaded buffer', { key, size: info.size, contentType });
    return info;
  }

  async head(key: string): Promise<ObjectInfo | null> {
    this.assertOpen();
    assertValidKey(key);
    try {
      const res = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return { size: res.ContentLength ?? 0 };
    } catch (err) {
      if (isNotFound(err)) return null;
      throw this.wrap('HeadObject', key, err);
    }
  }

  async getBuffer(key: string): Promise<Buffer> {
    this.assertOpen();
    assertValidKey(key);
    try {
      const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      if (res.Body === undefined) throw new Error('response has no body');
      const bytes = await res.Body.transformToByteArray();
      return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    } catch (err) {
      throw this.wrap('GetObject', key, err);
    }
  }

  async presignGet(key: string, opts: { ttlSeconds: number; filename?: string; contentType?: string }): Promise<string> {
    this.assertOpen();
    assertValidKey(key);
    const command = new GetObjectCommand({
      Bucket: this.bucket,
      Key: key,
      ...(opts.filename !== undefined ? { ResponseContentDisposition: contentDisposition(opts.filename) } : {}),
      ...(opts.contentType !== undefined ? { ResponseContentType: opts.contentType } : {}),
    });
    try {
      return await getSignedUrl(this.client, command, { expiresIn: Math.max(1, Math.round(opts.ttlSeconds)) });
    } catch (err) {
      throw this.wrap('presign GetObject', key, err);
    }
  }

  localPath(key: string): string | null {
    assertValidKey(key);
    return null;
  }

  async list(prefix: string): Promise<{ key: string; size: number }[]> {
    this.assertOpen();
    assertValidPrefix(prefix);
    const out: { key: string; size: number }[] = [];
    let token: string | undefined;
    do {
      let res;
      try {
        res = await this.client.send(
          new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ...(token !== undefined ? { ContinuationToken: token } : {}) }),
        );
      } catch (err) {
        throw this.wrap('ListObjectsV2', prefix, err);
      }
      for (const obj of res.Contents ?? []) {
        if (obj.Key !== undefined) out.push({ key: obj.Key, size: obj.Size ?? 0 });
      }
      token = res.IsTruncated === true ? res.NextContinuationToken : undefined;
    } while (token !== undefined);
    return out;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.client.destroy();
  }

  private assertOpen(): void {
    if (this.closed) throw new Error(`object store ${this.description} is closed`);
  }

  /** HeadObject after a put: the stored size must be what we sent. */
  private async confirm(key: string, expected: number): Promise<ObjectInfo> {
    const info = await this.head(key);
    if (info === null) throw new Error(`S3 upload of s3://${this.bucket}/${key} not confirmed: HeadObject found no object`);
    if (info.size !== expected) {
      throw new Error(`S3 upload of s3://${this.bucket}/${key} not confirmed: stored ${info.size} bytes, expected ${expected}`);
    }
    return info;
  }

  private wrap(op: string, key: string | null, err: unknown): Error {
    const target = key === null ? `s3://${this.bucket}` : `s3://${this.bucket}/${key}`;
    const wrapped = new Error(`S3 ${op} ${target} failed: ${describeError(err)}`, { cause: err }) as Error & {
      code?: string;
      statusCode?: number;
    };
    const code = sdkName(err);
    const status = sdkStatus(err);
    if (code !== undefined) wrapped.code = code;
    if (status !== undefined) wrapped.statusCode = status;
    return wrapped;
  }
}

function redactUrl(raw: string): string {
  try {
    const u = new URL(raw);
    u.username = '';
    u.password = '';
    u.search = '';
    return u.href.replace(/\/$/, '');
  } catch {
    return '(invalid endpoint)';
  }
}
