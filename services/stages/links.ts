// Where a stage is found: the URLs the API hands out (performer page, listener page, HLS) and the folder its HLS is
// written into.
import { AsyncLocalStorage } from 'node:async_hooks';
import path from 'node:path';
import type { StageUrls } from '../shared/rest.ts';

/**
 * The origin the current HTTP request came in on (`https://192.168.1.20:8080`), set by the HTTP app around each
 * request: without PUBLIC_URL, the links handed out follow the address and the scheme the caller used, so a stage made
 * from another computer over HTTPS gets links that work from there.
 */
export const requestOrigin = new AsyncLocalStorage<string>();

const HOST_HEADER = /^([A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])(:\d{1,5})?$/;

/** The origin of a request from its scheme and Host header; null for a missing or malformed Host. */
export function originOf(secure: boolean, host: string | undefined): string | null {
  if (!host || !HOST_HEADER.test(host)) return null;
  return `${secure ? 'https' : 'http'}://${host.toLowerCase()}`;
}

export class StageLinks {
  readonly #baseUrl: () => string;
  readonly #hlsBase: () => string;
  readonly #cdnDir: string;

  constructor(args: { baseUrl: () => string; publicHlsBaseUrl: string | null; cdnDir: string }) {
    this.#baseUrl = args.baseUrl;
    this.#hlsBase = () => args.publicHlsBaseUrl ?? `${this.#baseUrl()}/live`;
    this.#cdnDir = args.cdnDir;
  }

  urls(id: string, performerKey?: string): StageUrls {
    const base = this.#baseUrl();
    return {
      performerUrl: `${base}/stage/${encodeURIComponent(id)}${performerKey ? `?key=${encodeURIComponent(performerKey)}` : ''}`,
      listenUrl: `${base}/listen/${encodeURIComponent(id)}`,
      hlsUrl: `${this.#hlsBase()}/${encodeURIComponent(id)}/index.m3u8`,
      whipUrl: `${base}/whip/${encodeURIComponent(id)}`,
    };
  }

  /** Where the stage's HLS is written (cdn/live/<id>). */
  hlsDir(id: string): string {
    return path.join(this.#cdnDir, 'live', id);
  }
}
