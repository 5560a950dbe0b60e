// One performer's isolated track: the Opus packets their mixer slot carries, written to Ogg Opus on the slot's
// timeline, so sample 0 of the track is sample 0 of the programme (the mix). Gaps are filled with silence frames.
import { OPUS_FRAME_SAMPLES } from '../mixer/rtp.ts';
import { OggOpusWriter, opusPacketSamples } from './oggOpus.ts';

export class TrackRecorder {
  readonly path: string;
  readonly performerId: string;
  #writer: OggOpusWriter | null = null;
  readonly #opening: Promise<void>;
  #pending: { ts: number; payload: Buffer }[] = [];
  #closed = false;
  #error: Error | null = null;

  private constructor(path: string, performerId: string, comments: string[]) {
    this.path = path;
    this.performerId = performerId;
    this.#opening = OggOpusWriter.open(path, { channels: 2, comments }).then(
      (w) => {
        this.#writer = w;
        const pending = this.#pending;
        this.#pending = [];
        for (const p of pending) this.#place(p.ts, p.payload);
      },
      (err: unknown) => {
        this.#error = err instanceof Error ? err : new Error(String(err));
      },
    );
  }

  static open(path: string, performerId: string, displayName: string): TrackRecorder {
    return new TrackRecorder(path, performerId, [`TITLE=${displayName}`, `STAGE_RADIO_PERFORMER=${performerId}`]);
  }

  /** A packet at ts (48 kHz units on the programme timeline). */
  push(ts: number, payload: Buffer): void {
    if (this.#closed) return;
    // The relay reuses nothing, but copy: the payload is a view into a packet buffer.
    if (!this.#writer) {
      this.#pending.push({ ts, payload: Buffer.from(payload) });
      return;
    }
    this.#place(ts, payload);
  }

  #place(ts: number, payload: Buffer): void {
    const w = this.#writer!;
    const samples = opusPacketSamples(payload);
    if (samples <= 0) return;
    const gap = ts - w.samples;
    // Overlap (a slot switch): drop a frame rather than shift the track.
    if (gap <= -OPUS_FRAME_SAMPLES) return;
    const frames = Math.round(gap / OPUS_FRAME_SAMPLES);
    if (frames > 0) w.writeSilence(frames);
    w.write(payload, samples);
  }

  /** Pads with silence up to ts (the end of the programme), then closes the file. Idempotent. Rejects if the file could not be opened. */
  async close(endTs?: number): Promise<void> {
    if (this.#closed) return this.#opening;
    this.#closed = true;
    await this.#opening;
    const w = this.#writer;
    if (!w) throw this.#error ?? new Error(`track ${this.path} was never opened`);
    if (endTs !== undefined) {
      const frames = Math.round((endTs - w.samples) / OPUS_FRAME_SAMPLES);
      if (frames > 0) w.writeSilence(frames);
    }
    await w.close();
  }
}
