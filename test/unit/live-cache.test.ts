// The origin's file cache: served from memory while a file is unchanged, fresh the moment it is replaced, bounded.
import fs from 'node:fs';
import { expect } from 'chai';
import { LiveFileCache, type CachedFile } from '../../services/http/liveCache.ts';
import { TempDir } from '../support/media.ts';

describe('LiveFileCache', () => {
  let tmp: TempDir;
  beforeEach(() => (tmp = new TempDir()));
  afterEach(() => tmp.remove());

  it('reads a file once while it is unchanged, and serves a replaced version (rename over it) within 50 ms', async () => {
    const cache = new LiveFileCache();
    const f = tmp.file('index.m3u8');
    fs.writeFileSync(f, 'v1');
    const a = (await cache.get(f)) as CachedFile;
    const b = (await cache.get(f)) as CachedFile;
    expect(a.body.toString()).to.equal('v1');
    expect(b).to.equal(a);
    expect([cache.misses, cache.hits]).to.deep.equal([1, 1]);
    // Same size, same second: the inode tells them apart.
    fs.writeFileSync(tmp.file('index.tmp'), 'v2');
    fs.renameSync(tmp.file('index.tmp'), f);
    await new Promise((r) => setTimeout(r, 60));
    const c = (await cache.get(f)) as CachedFile;
    expect(c.body.toString()).to.equal('v2');
    expect(c.etag).to.not.equal(a.etag);
  });

  it('peek() answers at once only what get() would answer: a cached segment, a playlist whose recent stat is unchanged', async () => {
    const cache = new LiveFileCache();
    const seg = tmp.file('seg_00001.ts');
    const pl = tmp.file('index.m3u8');
    fs.writeFileSync(seg, 'segment');
    fs.writeFileSync(pl, 'v1');
    expect(cache.peek(seg, true), 'nothing cached yet').to.equal(null);
    expect(cache.peek(pl), 'nothing cached yet').to.equal(null);
    const s = await cache.get(seg, true);
    const a = (await cache.get(pl)) as CachedFile;
    expect(cache.peek(seg, true)).to.equal(s);
    expect(cache.peek(pl), 'the stat that served it is fresh').to.equal(a);
    fs.writeFileSync(tmp.file('index.tmp'), 'v2');
    fs.renameSync(tmp.file('index.tmp'), pl);
    await new Promise((r) => setTimeout(r, 60));
    expect(cache.peek(pl), 'the stat is stale: get() must look').to.equal(null);
    const b = (await cache.get(pl)) as CachedFile;
    expect(b.body.toString()).to.equal('v2');
    expect(cache.peek(pl)).to.equal(b);
  });

  it('a segment (immutable) is served from memory without a stat, even once deleted', async () => {
    const cache = new LiveFileCache();
    const f = tmp.file('seg_00002.ts');
    fs.writeFileSync(f, 'segment');
    const a = await cache.get(f, true);
    fs.unlinkSync(f);
    expect(await cache.get(f, true)).to.equal(a);
  });

  it('shares one read among requests that arrive together', async () => {
    const cache = new LiveFileCache();
    const f = tmp.file('seg_00001.ts');
    fs.writeFileSync(f, Buffer.alloc(10_000, 7));
    const all = await Promise.all(Array.from({ length: 50 }, () => cache.get(f)));
    expect(cache.misses).to.equal(1);
    expect(new Set(all).size).to.equal(1);
  });

  it('a missing file, a folder or a symlink is missing; a file over the per-file cap is "large"', async () => {
    const cache = new LiveFileCache({ maxFileBytes: 100 });
    fs.writeFileSync(tmp.file('big.ts'), Buffer.alloc(101));
    fs.writeFileSync(tmp.file('target.ts'), 'x');
    fs.symlinkSync(tmp.file('target.ts'), tmp.file('link.ts'));
    fs.mkdirSync(tmp.file('dir.ts'));
    expect(await cache.get(tmp.file('nope.ts'))).to.equal('missing');
    expect(await cache.get(tmp.file('link.ts'))).to.equal('missing');
    expect(await cache.get(tmp.file('dir.ts'))).to.equal('missing');
    expect(await cache.get(tmp.file('big.ts'))).to.equal('large');
    // A cached file that disappears is gone from the cache too.
    const t = tmp.file('target.ts');
    expect(((await cache.get(t)) as CachedFile).body.toString()).to.equal('x');
    fs.unlinkSync(t);
    await new Promise((r) => setTimeout(r, 60));
    expect(await cache.get(t)).to.equal('missing');
    expect(cache.bytes).to.equal(0);
  });

  it('stays within its byte budget, evicting the least recently used', async () => {
    const cache = new LiveFileCache({ maxBytes: 3000 });
    for (let i = 0; i < 10; i++) fs.writeFileSync(tmp.file(`s${i}.ts`), Buffer.alloc(1000, i));
    await cache.get(tmp.file('s0.ts'));
    await cache.get(tmp.file('s1.ts'));
    await cache.get(tmp.file('s0.ts')); // s0 is now the most recent
    await cache.get(tmp.file('s2.ts'));
    await cache.get(tmp.file('s3.ts')); // evicts s1
    expect(cache.bytes).to.equal(3000);
    const misses = cache.misses;
    await cache.get(tmp.file('s0.ts'));
    expect(cache.misses, 's0 still cached').to.equal(misses);
    await cache.get(tmp.file('s1.ts'));
    expect(cache.misses, 's1 was evicted').to.equal(misses + 1);
  });
});
