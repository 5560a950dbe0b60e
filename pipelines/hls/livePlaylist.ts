// The live media playlist, rendered from the writer's state: a pure function, pinned by golden tests. With a part
// target it is a Low-Latency HLS playlist (RFC 8216bis: EXT-X-PART, EXT-X-PRELOAD-HINT, EXT-X-SERVER-CONTROL with
// blocking reload); without, a classic one. Both list fMP4 segments behind an EXT-X-MAP, with a PROGRAM-DATE-TIME on
// every segment, the timeline's EXT-X-DATERANGE tags, DISCONTINUITY where a new FFmpeg run begins, and ENDLIST at
// the end.

export interface LivePart {
  uri: string;
  /** Seconds. */
  duration: number;
}

export interface LiveSegment {
  /** Media sequence number. */
  msn: number;
  uri: string;
  /** Seconds (its parts' sum). */
  duration: number;
  /** ISO 8601, milliseconds, UTC. */
  programDateTime: string;
  /** The first segment of a new FFmpeg run (not of the first one): preceded by EXT-X-DISCONTINUITY. */
  discontinuity: boolean;
  /** Its run's init section (EXT-X-MAP). */
  map: string;
  parts: LivePart[];
}

export interface LivePlaylistState {
  /** Complete segments in the window, oldest first. */
  segments: readonly LiveSegment[];
  /** The segment being made: the parts it has so far (none of it is a segment yet). */
  partial: Omit<LiveSegment, 'uri' | 'duration'> | null;
  /** The next part's URI, for EXT-X-PRELOAD-HINT (LL only; none once ended). */
  preloadHint: string | null;
  /** DISCONTINUITY tags of segments that have left the window (EXT-X-DISCONTINUITY-SEQUENCE). */
  discontinuitySequence: number;
  /** EXT-X-DATERANGE lines for the window. */
  dateRanges: readonly string[];
  ended: boolean;
}

export interface LivePlaylistOptions {
  /** EXT-X-TARGETDURATION: whole seconds, at least every segment's duration rounded. */
  targetDuration: number;
  /** EXT-X-PART-INF's PART-TARGET (seconds), or null for a playlist without parts (LL-HLS off). */
  partTarget: number | null;
  /** PART-HOLD-BACK (seconds): at least 3 × partTarget. */
  partHoldBack: number;
  /**
   * At most this many of the newest complete segments keep their parts listed; and never a part more than three
   * target durations from the playlist's end (RFC 8216bis §4.4.4.9: such EXT-X-PART tags must be removed).
   */
  partsForSegments: number;
}

const secs = (n: number) => n.toFixed(5).replace(/0{1,3}$/, '');

export function renderLivePlaylist(s: LivePlaylistState, o: LivePlaylistOptions): string {
  const ll = o.partTarget !== null;
  const lines = ['#EXTM3U', `#EXT-X-VERSION:${ll ? 9 : 7}`, `#EXT-X-TARGETDURATION:${o.targetDuration}`];
  if (ll) {
    lines.push(`#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=${secs(o.partHoldBack)}`);
    lines.push(`#EXT-X-PART-INF:PART-TARGET=${secs(o.partTarget!)}`);
  }
  const first = s.segments[0] ?? s.partial;
  lines.push(`#EXT-X-MEDIA-SEQUENCE:${first?.msn ?? 0}`);
  if (s.discontinuitySequence > 0) lines.push(`#EXT-X-DISCONTINUITY-SEQUENCE:${s.discontinuitySequence}`);
  lines.push('#EXT-X-INDEPENDENT-SEGMENTS');
  lines.push(...s.dateRanges);
  let map: string | null = null;
  const head = (seg: { discontinuity: boolean; map: string; programDateTime: string }, dated = true) => {
    // Also on the first segment listed: its discontinuity number is then the header's plus one, as it was for players
    // that saw it listed after others (the header counts it only once it has left the window).
    if (seg.discontinuity) lines.push('#EXT-X-DISCONTINUITY');
    if (seg.map !== map) {
      lines.push(`#EXT-X-MAP:URI="${seg.map}"`);
      map = seg.map;
    }
    if (dated) lines.push(`#EXT-X-PROGRAM-DATE-TIME:${seg.programDateTime}`);
  };
  const partLines = (parts: readonly LivePart[]) => {
    for (const p of parts) lines.push(`#EXT-X-PART:DURATION=${secs(p.duration)},URI="${p.uri}",INDEPENDENT=YES`);
  };
  // Which complete segments keep their parts: counted back from the playlist's end.
  let fromEnd = s.partial && !s.ended ? s.partial.parts.reduce((t, p) => t + p.duration, 0) : 0;
  let withParts = s.segments.length;
  for (let i = s.segments.length - 1; i >= 0 && s.segments.length - i <= o.partsForSegments; i--) {
    fromEnd += s.segments[i]!.duration;
    if (fromEnd > 3 * o.targetDuration + 1e-9) break;
    withParts = i;
  }
  s.segments.forEach((seg, i) => {
    head(seg);
    if (ll && i >= withParts) partLines(seg.parts);
    lines.push(`#EXTINF:${secs(seg.duration)},`, seg.uri);
  });
  // The segment being made, by its parts (a classic playlist lists only whole segments).
  // No PROGRAM-DATE-TIME of its own: its date follows from the segment before it (as in Apple's and MediaMTX's
  // playlists). hls.js 1.6 maps each DATERANGE to the segment a PROGRAM-DATE-TIME tag dates, and a tag dating parts
  // only (no segment yet) made it read past its segments and throw (`reading 'ref'`) on every reload with a DATERANGE
  // that starts in the segment being made.
  if (ll && s.partial && s.partial.parts.length > 0 && !s.ended) {
    head(s.partial, false);
    partLines(s.partial.parts);
  }
  if (ll && s.preloadHint && !s.ended) lines.push(`#EXT-X-PRELOAD-HINT:TYPE=PART,URI="${s.preloadHint}"`);
  if (s.ended) lines.push('#EXT-X-ENDLIST');
  return `${lines.join('\n')}\n`;
}
