import fs from 'node:fs/promises';
import path from 'node:path';
import { buildSync } from 'esbuild';

export interface Asset {
  type: string;
  body: string;
}

export interface PageBundle {
  performerHtml: string;
  listenerHtml: string;
  adminHtml: string;
  assets: Map<string, Asset>;
}

/**
 * Bundles the browser pages (TypeScript → one IIFE each) in memory at start-up, so what is served always matches
 * the code and no build artefact can go stale. Synchronously: esbuild's async API leaves a service process running
 * for the life of the process, which nothing would stop.
 */
export async function buildPages(pagesDir: string): Promise<PageBundle> {
  const result = buildSync({
    entryPoints: { performer: path.join(pagesDir, 'performer', 'main.ts'), listener: path.join(pagesDir, 'listener', 'main.ts'), admin: path.join(pagesDir, 'admin', 'main.ts') },
    bundle: true,
    format: 'iife',
    platform: 'browser',
    target: ['chrome110', 'firefox110', 'safari16'],
    minify: true,
    sourcemap: false,
    write: false,
    outdir: '/assets',
    logLevel: 'silent',
  });
  const assets = new Map<string, Asset>();
  for (const file of result.outputFiles) {
    assets.set(path.basename(file.path), { type: 'application/javascript', body: file.text });
  }
  assets.set('style.css', { type: 'text/css', body: await fs.readFile(path.join(pagesDir, 'style.css'), 'utf8') });
  return {
    performerHtml: await fs.readFile(path.join(pagesDir, 'performer', 'index.html'), 'utf8'),
    listenerHtml: await fs.readFile(path.join(pagesDir, 'listener', 'index.html'), 'utf8'),
    adminHtml: await fs.readFile(path.join(pagesDir, 'admin', 'index.html'), 'utf8'),
    assets,
  };
}
