// The pages' languages: one catalogue per language (en.ts is the reference; ja.ts must have every key, which the
// type below and test/unit/i18n.test.ts enforce). The language is the one chosen with the switcher (kept per browser
// in localStorage), else the first of the browser's languages we have, else English. The server's error `message`s
// stay English: the pages show their own text for each error `code`.
import { en, type Catalogue, type Key } from './en.ts';
import { ja } from './ja.ts';

export type { Key };
export const LANGS = ['en', 'ja'] as const;
export type Lang = (typeof LANGS)[number];
export const CATALOGUES: Record<Lang, Catalogue> = { en, ja };
/** What the switcher shows for each language, in that language. */
export const LANG_NAMES: Record<Lang, string> = { en: 'English', ja: '日本語' };
export const LANG_STORAGE_KEY = 'stage-radio.lang';

/** The stored choice if valid, else the first browser language we have (ja-JP → ja), else English. */
export function pickLang(stored: string | null, browserLanguages: readonly string[]): Lang {
  if (stored && (LANGS as readonly string[]).includes(stored)) return stored as Lang;
  for (const l of browserLanguages) {
    const base = l.toLowerCase().split('-')[0];
    if ((LANGS as readonly string[]).includes(base ?? '')) return base as Lang;
  }
  return 'en';
}

function storedLang(): string | null {
  try {
    return localStorage.getItem(LANG_STORAGE_KEY);
  } catch {
    return null;
  }
}

export const lang: Lang = typeof navigator === 'undefined' ? 'en' : pickLang(storedLang(), navigator.languages ?? [navigator.language]);

/** The text for `key` in the page's language, with `{name}` placeholders filled from `params`. */
export function t(key: Key, params: Record<string, string | number> = {}): string {
  return format(CATALOGUES[lang][key], params);
}

export function format(text: string, params: Record<string, string | number>): string {
  return text.replace(/\{(\w+)\}/g, (whole, name: string) => (name in params ? String(params[name]) : whole));
}

/**
 * Translates the static markup: `data-i18n` (text), `data-i18n-html` (our own catalogue's markup: <strong>, <code>),
 * `data-i18n-placeholder`, `data-i18n-aria-label`, `data-i18n-title`; sets <html lang>.
 */
export function translateDocument(root: ParentNode = document): void {
  document.documentElement.lang = lang;
  for (const e of root.querySelectorAll<HTMLElement>('[data-i18n]')) e.textContent = t(e.dataset['i18n'] as Key);
  for (const e of root.querySelectorAll<HTMLElement>('[data-i18n-html]')) e.innerHTML = t(e.dataset['i18nHtml'] as Key);
  for (const e of root.querySelectorAll<HTMLInputElement>('[data-i18n-placeholder]')) e.placeholder = t(e.dataset['i18nPlaceholder'] as Key);
  for (const e of root.querySelectorAll<HTMLElement>('[data-i18n-aria-label]')) e.setAttribute('aria-label', t(e.dataset['i18nAriaLabel'] as Key));
  for (const e of root.querySelectorAll<HTMLElement>('[data-i18n-title]')) e.title = t(e.dataset['i18nTitle'] as Key);
}

/** A language switcher in `#lang` (a <select>): the choice is kept for this browser and the page reloads in it. */
export function mountSwitcher(): void {
  const select = document.getElementById('lang') as HTMLSelectElement | null;
  if (!select) return;
  select.replaceChildren(...LANGS.map((l) => Object.assign(document.createElement('option'), { value: l, textContent: LANG_NAMES[l], selected: l === lang })));
  select.setAttribute('aria-label', t('common.language'));
  select.addEventListener('change', () => {
    try {
      localStorage.setItem(LANG_STORAGE_KEY, select.value);
    } catch {
      // Storage refused (private mode): this page only.
    }
    location.reload();
  });
}

/** Translates the page and mounts the switcher: the first thing each page's script does. */
export function setupLanguage(): void {
  translateDocument();
  mountSwitcher();
}

const dateTime = new Intl.DateTimeFormat(lang, { dateStyle: 'medium', timeStyle: 'short' });
const time = new Intl.DateTimeFormat(lang, { timeStyle: 'medium' });

export const formatDateTime = (d: Date | string | number) => dateTime.format(new Date(d));
export const formatTime = (d: Date | string | number) => time.format(new Date(d));

/** A duration as h:mm:ss (or m:ss under an hour), digits in the page's language. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const two = new Intl.NumberFormat(lang, { minimumIntegerDigits: 2, useGrouping: false });
  const one = new Intl.NumberFormat(lang, { useGrouping: false });
  return h > 0 ? `${one.format(h)}:${two.format(m)}:${two.format(s % 60)}` : `${one.format(m)}:${two.format(s % 60)}`;
}

/** "3 minutes ago"-style text in the page's language. */
export function formatAgo(seconds: number): string {
  const rtf = new Intl.RelativeTimeFormat(lang, { numeric: 'auto' });
  const s = Math.round(seconds);
  if (s < 60) return rtf.format(-s, 'second');
  if (s < 3600) return rtf.format(-Math.floor(s / 60), 'minute');
  return rtf.format(-Math.floor(s / 3600), 'hour');
}
