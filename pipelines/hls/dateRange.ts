// EXT-X-DATERANGE tags (the timeline's chapters, tracks and markers in the playlist), for the live playlist and the
// VOD one: pure.

export interface DateRange {
  id: string;
  /** CLASS attribute, e.g. com.stage-radio.chapter. */
  class: string;
  /** ISO 8601 START-DATE. */
  startDate: string;
  /** Client attributes, e.g. { 'X-TITLE': 'Intro' }: quoted strings. */
  attributes: Record<string, string>;
  durationSeconds?: number;
}

/** A quoted-string attribute value (RFC 8216 §4.2): no double quote, CR or LF. */
function quoted(v: string): string {
  return `"${v.replace(/["\r\n]/g, (c) => (c === '"' ? "'" : ' '))}"`;
}

export function dateRangeTag(r: DateRange): string {
  const attrs = [`ID=${quoted(r.id)}`, `CLASS=${quoted(r.class)}`, `START-DATE=${quoted(r.startDate)}`];
  if (r.durationSeconds !== undefined) attrs.push(`DURATION=${r.durationSeconds.toFixed(3)}`);
  for (const [k, v] of Object.entries(r.attributes)) if (/^X-[A-Z0-9-]+$/.test(k)) attrs.push(`${k}=${quoted(v)}`);
  return `#EXT-X-DATERANGE:${attrs.join(',')}`;
}

/**
 * The ranges a playlist window should carry: those starting at or after the window's first PROGRAM-DATE-TIME, plus
 * the latest range of each class that started before it (the chapter or track still current).
 */
export function rangesForWindow(ranges: readonly DateRange[], windowStartMs: number | null): DateRange[] {
  if (windowStartMs === null) return [...ranges];
  const inWindow = ranges.filter((r) => Date.parse(r.startDate) >= windowStartMs);
  const current = new Map<string, DateRange>();
  for (const r of ranges) {
    if (Date.parse(r.startDate) >= windowStartMs) continue;
    const prev = current.get(r.class);
    if (!prev || Date.parse(prev.startDate) <= Date.parse(r.startDate)) current.set(r.class, r);
  }
  return [...current.values(), ...inWindow].sort((a, b) => Date.parse(a.startDate) - Date.parse(b.startDate));
}

