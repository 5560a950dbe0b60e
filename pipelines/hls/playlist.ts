import fs from 'node:fs/promises';

/** Appends EXT-X-ENDLIST to a live playlist (once), atomically: a temp file, then a rename. */
export async function endPlaylist(playlistPath: string): Promise<boolean> {
  let text: string;
  try {
    text = await fs.readFile(playlistPath, 'utf8');
  } catch {
    return false;
  }
  if (/^#EXT-X-ENDLIST\s*$/m.test(text)) return true;
  const tmp = `${playlistPath}.endlist.tmp`;
  await fs.writeFile(tmp, `${text.replace(/\s*$/, '\n')}#EXT-X-ENDLIST\n`);
  await fs.rename(tmp, playlistPath);
  return true;
}

export interface PlaylistSegment {
  uri: string;
  duration: number;
  programDateTime: string | null;
  discontinuity: boolean;
}

/** Parses a media playlist's segments (enough for tests and the archive). */
export function parseMediaPlaylist(text: string): { mediaSequence: number; segments: PlaylistSegment[]; ended: boolean } {
  let mediaSequence = 0;
  const segments: PlaylistSegment[] = [];
  let duration = 0;
  let pdt: string | null = null;
  let disc = false;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('#EXT-X-MEDIA-SEQUENCE:')) mediaSequence = Number(line.slice(22));
    else if (line.startsWith('#EXTINF:')) duration = parseFloat(line.slice(8));
    else if (line.startsWith('#EXT-X-PROGRAM-DATE-TIME:')) pdt = line.slice(25);
    else if (line === '#EXT-X-DISCONTINUITY') disc = true;
    else if (line && !line.startsWith('#')) {
      segments.push({ uri: line, duration, programDateTime: pdt, discontinuity: disc });
      pdt = null;
      disc = false;
    }
  }
  return { mediaSequence, segments, ended: /^#EXT-X-ENDLIST/m.test(text) };
}
