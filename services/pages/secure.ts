// Browsers give the microphone only to secure contexts (HTTPS, or localhost). On an insecure origin the pages say so in
// plain words, with the HTTPS address to use: the service answers HTTPS on the same port (docs/https.md).
import { t } from './i18n/index.ts';

/** The HTTPS address of this page: same host, port, path and query, or null when this origin is already secure. */
export function httpsAddress(loc: Location = location): string | null {
  if (window.isSecureContext) return null;
  return `https://${loc.host}${loc.pathname}${loc.search}${loc.hash}`;
}

/**
 * Fills `box` with the explanation and a link to the HTTPS address, shows it, and returns true, on an insecure origin;
 * returns false (and leaves `box` hidden) on a secure one.
 */
export function explainInsecureOrigin(box: HTMLElement, who: 'performer' | 'caller'): boolean {
  const url = httpsAddress();
  if (!url) return false;
  box.replaceChildren(
    document.createTextNode(t(who === 'performer' ? 'secure.performer' : 'secure.caller')),
    Object.assign(document.createElement('a'), { href: url, textContent: url, id: `${box.id}-link` }),
    document.createTextNode(t('secure.after')),
  );
  box.hidden = false;
  document.body.dataset['insecure'] = 'true';
  return true;
}
