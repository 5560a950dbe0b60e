// Watching a live HLS playlist as a player would: every segment, when it appeared, and what the playlist said of it.
import fs from 'node:fs';
import path from 'node:path';
import { parseMediaPlaylist, type PlaylistSegment } from '../../pipelines/hls/playlist.ts';

export interface SeenSegment extends PlaylistSegment {
  /** Wall-clock ms when the watcher first saw it listed. */
  arrivedAt: number;
}

export class PlaylistWatcher {
  readonly segments: SeenSegment[] = [];
  readonly #seen = new Set<string>();
  readonly #timer: NodeJS.Timeout;
  readonly playlist: string;
  discontinuities = 0;
  ended = false;

  /** Watchers not stopped yet: a test that fails before it stops its own still has it stopped (test/support/hooks.ts). */
  static readonly running = new Set<PlaylistWatcher>();

  constructor(playlist: string, everyMs = 100) {
    this.playlist = playlist;
    this.#timer = setInterval(() => this.poll(), everyMs);
    PlaylistWatcher.running.add(this);
  }

  poll(): void {
    let text: string;
    try {
      text = fs.readFileSync(this.playlist, 'utf8');
    } catch {
      return;
    }
    const now = Date.now();
    const parsed = parseMediaPlaylist(text);
    this.ended = parsed.ended;
    for (const s of parsed.segments) {
      if (this.#seen.has(s.uri)) continue;
      this.#seen.add(s.uri);
      if (s.discontinuity) this.discontinuities++;
      this.segments.push({ ...s, arrivedAt: now });
    }
  }

  async waitFor(pred: (w: PlaylistWatcher) => boolean, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      this.poll();
      if (pred(this)) return true;
      await new Promise((r) => setTimeout(r, 50));
    }
    return pred(this);
  }

  /** An ffmpeg input joining every segment seen (the concat protocol: MPEG-TS segments join byte for byte). */
  concatInput(from = 0): string {
    const dir = path.dirname(this.playlist);
    return `concat:${this.segments.slice(from).map((s) => path.join(dir, s.uri)).join('|')}`;
  }

  /** Gaps (ms) between consecutive segments' arrivals. */
  gapsMs(): number[] {
    return this.segments.slice(1).map((s, i) => s.arrivedAt - this.segments[i]!.arrivedAt);
  }

  stop(): void {
    clearInterval(this.#timer);
    PlaylistWatcher.running.delete(this);
    this.poll();
  }
}

export function segmentNumber(uri: string): number {
  return Number(/(\d+)\.ts$/.exec(uri)?.[1] ?? NaN);
}
