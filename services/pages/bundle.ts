import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import zlib from 'node:zlib';
import { buildSync } from 'esbuild';

/** One response body, with its gzip and brotli forms made once at start-up. */
export interface Encoded {
  identity: Buffer;
  gzip: Buffer;
  br: Buffer;
}

export interface Asset extends Encoded {
  type: string;
  /** Named after its content (`listener.3f9a0c1b2d.js`): cached for a year, never revalidated. */
  immutable: boolean;
}

export interface PageBundle {
  performerHtml: Encoded;
  listenerHtml: Encoded;
  adminHtml: Encoded;
  /** By name: each asset under its content-hashed name, and under its plain name (`listener.js`, not cached). */
  assets: Map<string, Asset>;
}

export function encode(body: string | Buffer): Encoded {
  const identity = typeof body === 'string' ? Buffer.from(body) : body;
  return {
    identity,
    gzip: zlib.gzipSync(identity, { level: 9 }),
    // Quality 9, not 11: within 2 % of 11's size on these scripts, and a tenth of its time at every start.
    br: zlib.brotliCompressSync(identity, { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 9, [zlib.constants.BROTLI_PARAM_SIZE_HINT]: identity.length } }),
  };
}

/** The codings an Accept-Encoding header accepts (lower case; those with q=0 left out). */
export function acceptedEncodings(acceptEncoding: string | string[] | undefined): Set<string> {
  return new Set(
    (Array.isArray(acceptEncoding) ? acceptEncoding.join(',') : (acceptEncoding ?? ''))
      .split(',')
      .map((part) => part.trim().split(';'))
      .filter(([, q]) => q === undefined || !/^\s*q\s*=\s*0(\.0*)?\s*$/.test(q))
      .map(([name]) => name!.trim().toLowerCase()),
  );
}

/** The body to send for an Accept-Encoding header: brotli, then gzip, then as it is. */
export function pickEncoding(e: Encoded, acceptEncoding: string | undefined): { body: Buffer; encoding: 'br' | 'gzip' | null } {
  const accepted = acceptedEncodings(acceptEncoding);
  if (accepted.has('br')) return { body: e.br, encoding: 'br' };
  if (accepted.has('gzip')) return { body: e.gzip, encoding: 'gzip' };
  return { body: e.identity, encoding: null };
}

const hashOf = (body: string | Buffer) => crypto.createHash('sha256').update(body).digest('hex').slice(0, 10);

const built = new Map<string, Promise<PageBundle>>();

/**
 * Bundles the browser pages (TypeScript → one IIFE each, with a source map) in memory at start-up, so what is served
 * always matches the code and no build artefact can go stale. Each script and the stylesheet get a content-hashed
 * name, which the pages' markup is rewritten to use, and their compressed forms are made once. Built once per process
 * and directory (the tests start many apps in one process). Synchronously: esbuild's async API leaves a service
 * process running for the life of the process, which nothing would stop.
 */
export function buildPages(pagesDir: string): Promise<PageBundle> {
  let p = built.get(pagesDir);
  if (!p) {
    p = build(pagesDir);
    built.set(pagesDir, p);
    p.catch(() => built.delete(pagesDir));
  }
  return p;
}

async function build(pagesDir: string): Promise<PageBundle> {
  const result = buildSync({
    entryPoints: { performer: path.join(pagesDir, 'performer', 'main.ts'), listener: path.join(pagesDir, 'listener', 'main.ts'), admin: path.join(pagesDir, 'admin', 'main.ts') },
    bundle: true,
    format: 'iife',
    platform: 'browser',
    target: ['chrome110', 'firefox110', 'safari16'],
    minify: true,
    sourcemap: 'external',
    write: false,
    outdir: '/assets',
    logLevel: 'silent',
  });
  const assets = new Map<string, Asset>();
  /** Plain name → hashed name, for the markup. */
  const renamed = new Map<string, string>();
  const add = (plain: string, type: string, body: string) => {
    const ext = path.extname(plain);
    const hashed = `${path.basename(plain, ext)}.${hashOf(body)}${ext}`;
    const encoded = encode(body);
    assets.set(hashed, { ...encoded, type, immutable: true });
    assets.set(plain, { ...encoded, type, immutable: false });
    renamed.set(plain, hashed);
    return hashed;
  };
  const maps = new Map(result.outputFiles.filter((f) => f.path.endsWith('.js.map')).map((f) => [path.basename(f.path, '.map'), f.text]));
  for (const file of result.outputFiles) {
    const name = path.basename(file.path);
    if (!name.endsWith('.js')) continue;
    const map = maps.get(name);
    // The script names its map after its own content's hash; the map is served under that name.
    const code = file.text.replace(/\/\/# sourceMappingURL=\S+\s*$/, '');
    const hashed = `${path.basename(name, '.js')}.${hashOf(code)}.js`;
    const body = map ? `${code}//# sourceMappingURL=${hashed}.map\n` : code;
    const encoded = encode(body);
    assets.set(hashed, { ...encoded, type: 'application/javascript', immutable: true });
    assets.set(name, { ...encoded, type: 'application/javascript', immutable: false });
    renamed.set(name, hashed);
    if (map) assets.set(`${hashed}.map`, { ...encode(map), type: 'application/json', immutable: true });
  }
  add('style.css', 'text/css', await fs.readFile(path.join(pagesDir, 'style.css'), 'utf8'));
  const page = async (dir: string) => {
    const html = await fs.readFile(path.join(pagesDir, dir, 'index.html'), 'utf8');
    return encode(html.replace(/\/assets\/([\w.-]+)/g, (whole, name: string) => (renamed.has(name) ? `/assets/${renamed.get(name)!}` : whole)));
  };
  return { performerHtml: await page('performer'), listenerHtml: await page('listener'), adminHtml: await page('admin'), assets };
}
