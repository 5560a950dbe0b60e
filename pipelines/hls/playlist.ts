import fs from 'node:fs/promises';

/**
 * Ends a live playlist a crash left open (once), atomically: a temp file, then a rename. Its preload hint goes (a
 * part that will never come), and EXT-X-ENDLIST is appended.
 */
export async function endPlaylist(playlistPath: string): Promise<boolean> {
  let text: string;
  try {
    text = await fs.readFile(playlistPath, 'utf8');
  } catch {
    return false;
  }
  if (/^#EXT-X-ENDLIST\s*$/m.test(text)) return true;
  const tmp = `${playlistPath}.endlist.tmp`;
  const kept = text.split('\n').filter((l) => !l.startsWith('#EXT-X-PRELOAD-HINT')).join('\n');
  await fs.writeFile(tmp, `${kept.replace(/\s*$/, '\n')}#EXT-X-ENDLIST\n`);
  await fs.rename(tmp, playlistPath);
  return true;
}

export interface PlaylistSegment {
  uri: string;
  duration: number;
  programDateTime: string | null;
  discontinuity: boolean;
  /** The init section (EXT-X-MAP URI) it follows, if any. */
  map: string | null;
}

/** Parses a media playlist's segments (enough for tests and the archive). */
export function parseMediaPlaylist(text: string): { mediaSequence: number; segments: PlaylistSegment[]; ended: boolean } {
  let mediaSequence = 0;
  const segments: PlaylistSegment[] = [];
  let duration = 0;
  let pdt: string | null = null;
  let disc = false;
  let map: string | null = null;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('#EXT-X-MEDIA-SEQUENCE:')) mediaSequence = Number(line.slice(22));
    else if (line.startsWith('#EXT-X-MAP:')) map = /URI="([^"]*)"/.exec(line)?.[1] ?? null;
    else if (line.startsWith('#EXTINF:')) duration = parseFloat(line.slice(8));
    else if (line.startsWith('#EXT-X-PROGRAM-DATE-TIME:')) pdt = line.slice(25);
    else if (line === '#EXT-X-DISCONTINUITY') disc = true;
    else if (line && !line.startsWith('#')) {
      segments.push({ uri: line, duration, programDateTime: pdt, discontinuity: disc, map });
      pdt = null;
      disc = false;
    }
  }
  return { mediaSequence, segments, ended: /^#EXT-X-ENDLIST/m.test(text) };
}
