// Browsers give the microphone only to secure contexts (HTTPS, or localhost). On an insecure origin the pages say so in
// plain words, with the HTTPS address to use: the service answers HTTPS on the same port (docs/https.md).

/** The HTTPS address of this page: same host, port, path and query, or null when this origin is already secure. */
export function httpsAddress(loc: Location = location): string | null {
  if (window.isSecureContext) return null;
  return `https://${loc.host}${loc.pathname}${loc.search}${loc.hash}`;
}

/**
 * Fills `box` with the explanation and a link to the HTTPS address, shows it, and returns true, on an insecure origin;
 * returns false (and leaves `box` hidden) on a secure one.
 */
export function explainInsecureOrigin(box: HTMLElement, what: string): boolean {
  const url = httpsAddress();
  if (!url) return false;
  box.replaceChildren(
    document.createTextNode(`${what} needs your microphone, and browsers allow the microphone only over a secure connection (HTTPS). Open this page at `),
    Object.assign(document.createElement('a'), { href: url, textContent: url, id: `${box.id}-link` }),
    document.createTextNode(
      ' instead. If the server uses its own self-signed certificate, your browser warns once: check the fingerprint the server printed at start, then accept it.',
    ),
  );
  box.hidden = false;
  document.body.dataset['insecure'] = 'true';
  return true;
}
