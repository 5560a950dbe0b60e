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

  /**
   * An ffmpeg input joining the segments seen from `from` on (the concat protocol: fMP4 segments join byte for byte
   * behind their init section). Stops at the first segment of another FFmpeg run (a different init section).
   */
  concatInput(from = 0): string {
    return segmentsInput(path.dirname(this.playlist), this.segments.slice(from));
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
  return Number(/(\d+)\.(ts|m4s)$/.exec(uri)?.[1] ?? NaN);
}

/** An ffmpeg input for these segments of `dir` (one run: the first one's init section, then each in order). */
export function segmentsInput(dir: string, segments: readonly { uri: string; map: string | null }[]): string {
  const first = segments[0];
  if (!first) throw new Error('no segments');
  const run = segments.filter((s, i) => i === 0 || s.map === first.map);
  const files = run.map((s) => path.join(dir, s.uri));
  return `concat:${[...(first.map ? [path.join(dir, first.map)] : []), ...files].join('|')}`;
}
