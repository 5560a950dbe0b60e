// Where a stage is found: the URLs the API hands out (performer page, listener page, HLS) and the folder its HLS is
// written into.
import path from 'node:path';
import type { StageUrls } from '../shared/rest.ts';

export class StageLinks {
  readonly #baseUrl: () => string;
  readonly #hlsBase: () => string;
  readonly #cdnDir: string;

  constructor(args: { baseUrl: () => string; publicHlsBaseUrl: string | null; cdnDir: string }) {
    this.#baseUrl = args.baseUrl;
    this.#hlsBase = () => args.publicHlsBaseUrl ?? `${args.baseUrl()}/live`;
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
