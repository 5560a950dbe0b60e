import crypto from 'node:crypto';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { assertValidKey, LocalStore, openStore, S3Store, type ObjectStore } from '../../services/archive/store.ts';
import { createLogger } from '../../services/logger.ts';
import { startS3, type S3Server } from '../support/s3.ts';

const log = createLogger(process.env.TEST_LOG_LEVEL ?? 'error');

const MiB = 1024 * 1024;
const BAD_KEYS: [string, string][] = [
  ['../x', 'parent segment'],
  ['/abs', 'absolute'],
  ['a/../b', 'inner parent segment'],
  ['a\\b', 'backslash'],
  ['', 'empty'],
  ['k'.repeat(1025), '1025 bytes'],
  ['a\u0000b', 'NUL'],
];

const PLAYLIST = Buffer.from('#EXTM3U\n#EXT-X-VERSION:3\n', 'utf8');

const sha256 = (buf: Buffer): string => crypto.createHash('sha256').update(buf).digest('hex');

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    expect(err).to.be.instanceOf(Error);
    return err as Error;
  }
  throw new Error('expected the promise to reject');
}

/** Every file under dir, relative, '/'-separated. */
async function walk(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await fsp.readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) out.push(path.relative(dir, path.join(entry.parentPath, entry.name)).split(path.sep).join('/'));
  }
  return out.sort();
}

interface Source {
  path: string;
  bytes: Buffer;
  sha: string;
}

describe('archive store', function () {
  let srcDir: string;
  let big: Source; // 20 MiB: multipart on S3 (3 parts of 8 MiB)
  let small: Source; // 10 KiB: single PutObject
  let other: Source; // 10 KiB, different content, for overwrites

  const makeSource = async (name: string, size: number): Promise<Source> => {
    const bytes = crypto.randomBytes(size);
    const p = path.join(srcDir, name);
    await fsp.writeFile(p, bytes);
    return { path: p, bytes, sha: sha256(bytes) };
  };

  before(async function () {
    srcDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'store-src-'));
    big = await makeSource('big.bin', 20 * MiB);
    small = await makeSource('small.bin', 10 * 1024);
    other = await makeSource('other.bin', 10 * 1024 + 7);
  });

  after(async function () {
    await fsp.rm(srcDir, { recursive: true, force: true });
  });

  describe('assertValidKey', function () {
    for (const [key, why] of BAD_KEYS) {
      it(`refuses ${why} (${JSON.stringify(key.length > 20 ? `${key.slice(0, 8)}…` : key)})`, function () {
        expect(() => assertValidKey(key)).to.throw(Error, /^invalid object key: /);
      });
    }

    it('accepts ordinary archive keys, including 1024-byte ones', function () {
      for (const key of ['stages/42/2024-05-01T20-00-00Z/recording.m4a', 'a', 'x/y z/ü.aac', 'k'.repeat(1024), 'a..b/c..']) {
        expect(() => assertValidKey(key), key).not.to.throw();
      }
    });
  });

  interface Harness {
    store: ObjectStore;
    cleanup(): Promise<void>;
  }

  const kinds: { kind: 'local' | 's3'; open(): Promise<Harness> }[] = [
    {
      kind: 'local',
      async open() {
        const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'store-local-'));
        const store = openStore({ kind: 'local', dir: path.join(dir, 'archive') }, log);
        return {
          store,
          async cleanup() {
            store.close();
            await fsp.rm(dir, { recursive: true, force: true });
          },
        };
      },
    },
    {
      kind: 's3',
      async open() {
        const server = await startS3();
        const store = openStore(server.config(), log);
        return {
          store,
          async cleanup() {
            store.close();
            await server.stop();
          },
        };
      },
    },
  ];

  for (const { kind, open } of kinds) {
    describe(`${kind} store: shared behaviour`, function () {
      let h: Harness;
      let store: ObjectStore;

      before(async function () {
        h = await open();
        store = h.store;
        await store.init();
        await store.init(); // safe to call again
      });

      after(async function () {
        await h?.cleanup();
      });

      it('has the right kind and a description without secrets', function () {
        expect(store.kind).to.equal(kind);
        expect(store.description).to.match(kind === 's3' ? /^s3:\/\/archive-test \(http:\/\/127\.0\.0\.1:\d+\)$/ : /^file:\/\/\//);
        expect(store.description).not.to.include('S3RVER');
      });

      it('putFile of a 20 MiB file: confirmed size, head size, identical bytes (sha256)', async function () {
        const started = Date.now();
        const info = await store.putFile('rec/big.bin', big.path, 'application/octet-stream');
        const ms = Date.now() - started;
        this.test!.title += ` [upload ${ms} ms]`;
        expect(info).to.deep.equal({ size: big.bytes.length });
        expect(await store.head('rec/big.bin')).to.deep.equal({ size: big.bytes.length });
        const got = await store.getBuffer('rec/big.bin');
        expect(got.length).to.equal(big.bytes.length);
        expect(sha256(got)).to.equal(big.sha);
      });

      it('putFile of a 10 KiB file: confirmed size, head size, identical bytes', async function () {
        const info = await store.putFile('rec/small.bin', small.path, 'audio/aac');
        expect(info).to.deep.equal({ size: small.bytes.length });
        expect(await store.head('rec/small.bin')).to.deep.equal({ size: small.bytes.length });
        expect(sha256(await store.getBuffer('rec/small.bin'))).to.equal(small.sha);
      });

      it('putBuffer round-trips (including an empty body)', async function () {
        const body = PLAYLIST;
        expect(await store.putBuffer('rec/index.m3u8', body, 'application/vnd.apple.mpegurl')).to.deep.equal({ size: body.length });
        expect((await store.getBuffer('rec/index.m3u8')).equals(body)).to.equal(true);
        expect(await store.putBuffer('rec/empty.json', Buffer.alloc(0), 'application/json')).to.deep.equal({ size: 0 });
        expect((await store.getBuffer('rec/empty.json')).length).to.equal(0);
      });

      it('list(prefix) returns the keys under the prefix with their sizes', async function () {
        await store.putBuffer('recx/not-under-rec-slash.txt', Buffer.from('x'), 'text/plain');
        await store.putBuffer('other/elsewhere.txt', Buffer.from('yy'), 'text/plain');
        const expected = [
          { key: 'rec/big.bin', size: big.bytes.length },
          { key: 'rec/empty.json', size: 0 },
          { key: 'rec/index.m3u8', size: PLAYLIST.length },
          { key: 'rec/small.bin', size: small.bytes.length },
        ];
        expect(await store.list('rec/')).to.deep.equal(expected);
        expect(await store.list('rec')).to.deep.equal([...expected, { key: 'recx/not-under-rec-slash.txt', size: 1 }]);
        expect(await store.list('rec/s')).to.deep.equal([{ key: 'rec/small.bin', size: small.bytes.length }]);
        expect(await store.list('nothing/')).to.deep.equal([]);
        expect((await store.list('')).map((o) => o.key)).to.include.members(['other/elsewhere.txt', 'rec/big.bin']);
      });

      it('overwrites an existing key with different content', async function () {
        await store.putFile('rec/over.bin', small.path, 'application/octet-stream');
        expect(await store.putFile('rec/over.bin', other.path, 'application/octet-stream')).to.deep.equal({ size: other.bytes.length });
        expect(sha256(await store.getBuffer('rec/over.bin'))).to.equal(other.sha);
        await store.putBuffer('rec/over.bin', Buffer.from('short'), 'text/plain');
        expect((await store.getBuffer('rec/over.bin')).toString()).to.equal('short');
        expect(await store.head('rec/over.bin')).to.deep.equal({ size: 5 });
      });

      it('head of a missing key is null; getBuffer of a missing key rejects', async function () {
        expect(await store.head('rec/missing.bin')).to.equal(null);
        expect(await store.head('no/such/folder/x')).to.equal(null);
        await rejection(store.getBuffer('rec/missing.bin'));
      });

      it('refuses invalid keys on every operation and writes nothing', async function () {
        const before = await store.list('');
        for (const [key, why] of BAD_KEYS) {
          const ops: (() => Promise<unknown>)[] = [
            () => store.putFile(key, small.path, 'application/octet-stream'),
            () => store.putBuffer(key, Buffer.from('x'), 'text/plain'),
            () => store.head(key),
            () => store.getBuffer(key),
            () => store.presignGet(key, { ttlSeconds: 60 }),
          ];
          for (const op of ops) {
            const err = await rejection(Promise.resolve().then(op));
            expect(err.message, why).to.match(/^invalid object key: /);
          }
          expect(() => store.localPath(key), why).to.throw(Error, /^invalid object key: /);
        }
        expect(await store.list('')).to.deep.equal(before);
        await rejection(store.list('../'));
      });

      it('a put whose source file is missing rejects with ENOENT and leaves nothing', async function () {
        const before = await store.list('');
        const err = await rejection(store.putFile('fresh/folder/missing.bin', path.join(srcDir, 'does-not-exist.bin'), 'audio/aac'));
        expect((err as NodeJS.ErrnoException).code).to.equal('ENOENT');
        expect(await store.head('fresh/folder/missing.bin')).to.equal(null);
        expect(await store.list('')).to.deep.equal(before);
      });

      it('rejects operations after close()', async function () {
        const { store: closing, cleanup } = await open();
        try {
          await closing.init();
          closing.close();
          closing.close(); // idempotent
          const err = await rejection(Promise.resolve().then(() => closing.head('rec/x')));
          expect(err.message).to.match(/closed/);
        } finally {
          await cleanup();
        }
      });
    });
  }

  describe('s3 store: S3 specifics (s3rver)', function () {
    let server: S3Server;
    let store: S3Store;

    before(async function () {
      server = await startS3({ bucket: 'specifics' });
      store = new S3Store(server.config(), log);
      await store.init();
      await store.putFile('dl/show.bin', small.path, 'application/octet-stream');
    });

    after(async function () {
      store?.close();
      await server?.stop();
    });

    it('localPath is null', function () {
      expect(store.localPath('dl/show.bin')).to.equal(null);
    });

    it('a presigned GET URL works with plain fetch(): 200, exact bytes, Content-Disposition and Content-Type', async function () {
      const url = await store.presignGet('dl/show.bin', { ttlSeconds: 60, filename: 'Friday Night Show.aac', contentType: 'audio/aac' });
      expect(url).to.be.a('string').and.match(/^http:\/\/127\.0\.0\.1:\d+\/specifics\/dl\/show\.bin\?/);
      expect(url).not.to.include('S3RVER:'); // only the access key id appears (in X-Amz-Credential), never the secret as such
      const res = await fetch(url);
      expect(res.status).to.equal(200);
      expect(res.headers.get('content-disposition')).to.equal('attachment; filename="Friday Night Show.aac"');
      expect(res.headers.get('content-type')).to.equal('audio/aac');
      const got = Buffer.from(await res.arrayBuffer());
      expect(sha256(got)).to.equal(small.sha);
    });

    it('quotes awkward filenames safely (ASCII fallback plus RFC 6266 filename*)', async function () {
      const url = await store.presignGet('dl/show.bin', { ttlSeconds: 60, filename: 'Live "at" the Café\\set.aac' });
      const res = await fetch(url);
      expect(res.status).to.equal(200);
      await res.arrayBuffer();
      expect(res.headers.get('content-disposition')).to.equal(
        `attachment; filename="Live _at_ the Caf__set.aac"; filename*=UTF-8''Live%20%22at%22%20the%20Caf%C3%A9%5Cset.aac`,
      );
    });

    it('a Range request on the presigned URL gets 206 with exactly the requested bytes', async function () {
      const url = await store.presignGet('dl/show.bin', { ttlSeconds: 60 });
      const res = await fetch(url, { headers: { Range: 'bytes=0-99' } });
      expect(res.status).to.equal(206);
      expect(res.headers.get('content-range')).to.equal(`bytes 0-99/${small.bytes.length}`);
      const got = Buffer.from(await res.arrayBuffer());
      expect(got.length).to.equal(100);
      expect(got.equals(small.bytes.subarray(0, 100))).to.equal(true);
    });

    it('an expired presigned URL is refused with 403 AccessDenied (s3rver enforces X-Amz-Expires)', async function () {
      const url = await store.presignGet('dl/show.bin', { ttlSeconds: 1 });
      await new Promise((r) => setTimeout(r, 2500));
      const res = await fetch(url);
      const body = await res.text();
      expect(res.status).to.equal(403);
      expect(body).to.include('AccessDenied').and.include('expired');
    });

    it('outage: putFile rejects within 10 s with a readable error, then succeeds after the server is back', async function () {
      await server.pause();
      try {
        const started = Date.now();
        const err = await rejection(store.putFile('outage/big.bin', big.path, 'application/octet-stream'));
        const ms = Date.now() - started;
        this.test!.title += ` [rejected after ${ms} ms: ${err.message}]`;
        expect(ms).to.be.below(10_000);
        expect(err.message).to.match(/^S3 Upload s3:\/\/specifics\/outage\/big\.bin failed: /);
        expect(err.message).to.match(/ECONNREFUSED|ECONNRESET|socket hang up/);
        const headErr = await rejection(store.head('dl/show.bin'));
        expect(headErr.message).to.match(/^S3 HeadObject .*ECONNREFUSED/);
      } finally {
        await server.resume();
      }
      expect(await store.putFile('outage/big.bin', big.path, 'application/octet-stream')).to.deep.equal({ size: big.bytes.length });
      expect(sha256(await store.getBuffer('outage/big.bin'))).to.equal(big.sha);
      // data from before the outage survived it
      expect(sha256(await store.getBuffer('dl/show.bin'))).to.equal(small.sha);
    });

    it('init() creates a bucket that does not exist yet', async function () {
      const fresh = new S3Store({ ...server.config(), bucket: 'not-yet-there' }, log);
      try {
        const err = await rejection(fresh.putBuffer('a.txt', Buffer.from('a'), 'text/plain'));
        expect(err.message).to.match(/NoSuchBucket \(HTTP 404\)/);
        await fresh.init();
        await fresh.init();
        expect(await fresh.putBuffer('a.txt', Buffer.from('abc'), 'text/plain')).to.deep.equal({ size: 3 });
        expect(await fresh.list('')).to.deep.equal([{ key: 'a.txt', size: 3 }]);
        expect(await store.head('a.txt')).to.equal(null); // a different bucket
      } finally {
        fresh.close();
      }
    });

    it('init() against an unreachable endpoint rejects fast with a readable error', async function () {
      await server.pause();
      try {
        const started = Date.now();
        const err = await rejection(store.init());
        expect(Date.now() - started).to.be.below(10_000);
        expect(err.message).to.match(/^S3 HeadBucket s3:\/\/specifics failed: .*ECONNREFUSED/);
      } finally {
        await server.resume();
      }
      await store.init();
    });
  });

  describe('local store: local specifics', function () {
    let root: string;
    let dir: string;
    let store: LocalStore;

    before(async function () {
      root = await fsp.mkdtemp(path.join(os.tmpdir(), 'store-local-'));
      dir = path.join(root, 'archive');
      store = new LocalStore(dir, log);
      await store.init();
    });

    after(async function () {
      store?.close();
      await fsp.rm(root, { recursive: true, force: true });
    });

    it('describes itself as a file:// URL of its folder', function () {
      expect(store.description).to.equal(`file://${dir}`);
    });

    it('localPath(key) is the absolute path of the stored file', async function () {
      await store.putFile('stage/1/rec.bin', small.path, 'application/octet-stream');
      const p = store.localPath('stage/1/rec.bin');
      expect(p).to.equal(path.join(dir, 'stage', '1', 'rec.bin'));
      expect(path.isAbsolute(p!)).to.equal(true);
      expect(sha256(await fsp.readFile(p!))).to.equal(small.sha);
    });

    it('presignGet is null', async function () {
      expect(await store.presignGet('stage/1/rec.bin', { ttlSeconds: 60, filename: 'x.aac' })).to.equal(null);
    });

    it('leaves no temp files behind after puts', async function () {
      await store.putFile('stage/2/big.bin', big.path, 'application/octet-stream');
      await store.putFile('stage/2/big.bin', small.path, 'application/octet-stream');
      await store.putBuffer('stage/2/index.m3u8', Buffer.from('#EXTM3U\n'), 'application/vnd.apple.mpegurl');
      await Promise.all([1, 2, 3, 4].map((i) => store.putBuffer('stage/2/race.txt', Buffer.from(`v${i}`), 'text/plain')));
      expect(await walk(dir)).to.deep.equal(['stage/1/rec.bin', 'stage/2/big.bin', 'stage/2/index.m3u8', 'stage/2/race.txt']);
      expect((await store.getBuffer('stage/2/race.txt')).toString()).to.match(/^v[1-4]$/);
    });

    it('a put whose source is missing rejects with ENOENT and creates neither file nor folder', async function () {
      const before = await fsp.readdir(dir, { recursive: true });
      const err = await rejection(store.putFile('brand/new/x.bin', path.join(root, 'nope.bin'), 'audio/aac'));
      expect((err as NodeJS.ErrnoException).code).to.equal('ENOENT');
      expect(await fsp.readdir(dir, { recursive: true })).to.deep.equal(before);
    });

    it('init() creates a missing folder, and is safe to call again', async function () {
      const nested = new LocalStore(path.join(root, 'deep', 'er', 'archive'), log);
      await nested.init();
      await nested.init();
      expect((await fsp.stat(path.join(root, 'deep', 'er', 'archive'))).isDirectory()).to.equal(true);
      nested.close();
    });
  });
});
