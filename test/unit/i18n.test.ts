// The pages' catalogues: every language has every key of the reference (en), the same placeholders, nothing empty;
// every key the pages' markup and scripts use exists. A missing key fails here (and in the typecheck).
import fs from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import { CATALOGUES, LANGS, format, pickLang } from '../../services/pages/i18n/index.ts';
import { en } from '../../services/pages/i18n/en.ts';

const PAGES = path.resolve(import.meta.dirname, '../../services/pages');
const placeholders = (s: string) => [...s.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort();
const tags = (s: string) => [...s.matchAll(/<\/?(\w+)/g)].map((m) => m[1]).sort();

function files(dir: string, ext: RegExp): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((d) => {
    const p = path.join(dir, d.name);
    return d.isDirectory() ? files(p, ext) : ext.test(d.name) ? [p] : [];
  });
}

describe('unit: page catalogues (en, ja)', () => {
  const reference = Object.keys(en).sort();

  for (const lang of LANGS) {
    it(`${lang} has exactly the reference's keys, each non-empty, with the same placeholders and markup`, () => {
      const cat = CATALOGUES[lang] as Record<string, string>;
      const keys = Object.keys(cat).sort();
      expect(reference.filter((k) => !keys.includes(k)), `keys missing from ${lang}`).to.deep.equal([]);
      expect(keys.filter((k) => !reference.includes(k)), `keys in ${lang} that en does not have`).to.deep.equal([]);
      for (const k of reference) {
        const text = cat[k] ?? '';
        expect(text.trim(), `${lang} ${k} is empty`).to.not.equal('');
        expect(placeholders(text), `${lang} ${k}: placeholders`).to.deep.equal(placeholders((en as Record<string, string>)[k]!));
        expect(tags(text), `${lang} ${k}: markup`).to.deep.equal(tags((en as Record<string, string>)[k]!));
      }
    });
  }

  it('ja is written in Japanese: every entry but names and codes has kana or kanji', () => {
    const international = new Set(['admin.heading']);
    const latinOnly = Object.entries(CATALOGUES.ja).filter(([k, v]) => !international.has(k) && !/[\u3040-\u30ff\u4e00-\u9fff]/.test(v));
    expect(latinOnly, 'entries still in English').to.deep.equal([]);
  });

  it('every key the pages use is in the catalogue (markup data-i18n-*, scripts t(...))', () => {
    const used = new Set<string>();
    for (const f of files(PAGES, /\.html$/)) {
      for (const m of fs.readFileSync(f, 'utf8').matchAll(/data-i18n(?:-[a-z-]+)?="([^"]+)"/g)) used.add(m[1]!);
    }
    for (const f of files(PAGES, /\.ts$/).filter((f) => !f.includes(`${path.sep}i18n${path.sep}`))) {
      for (const m of fs.readFileSync(f, 'utf8').matchAll(/\bt\(\s*'([\w.]+)'/g)) used.add(m[1]!);
    }
    expect(used.size, 'keys found in the pages').to.be.greaterThan(100);
    expect([...used].filter((k) => !(k in en)), 'used but not in the catalogue').to.deep.equal([]);
  });

  it('every page has the language switcher and marks its text for translation', () => {
    for (const page of ['performer', 'listener', 'admin']) {
      const html = fs.readFileSync(path.join(PAGES, page, 'index.html'), 'utf8');
      expect(html, page).to.include('<select id="lang">');
      expect(html.match(/data-i18n/g)?.length ?? 0, page).to.be.greaterThan(10);
    }
  });

  it('picks the stored choice, else the first browser language it has, else English; fills placeholders', () => {
    expect(pickLang(null, ['ja-JP', 'en-US'])).to.equal('ja');
    expect(pickLang(null, ['fr-FR', 'ja'])).to.equal('ja');
    expect(pickLang(null, ['en-GB'])).to.equal('en');
    expect(pickLang(null, ['fr-FR', 'de'])).to.equal('en');
    expect(pickLang('en', ['ja-JP'])).to.equal('en');
    expect(pickLang('xx', ['ja-JP'])).to.equal('ja');
    expect(format('{a} and {b} ({a})', { a: 1, b: 'two' })).to.equal('1 and two (1)');
    expect(format('{missing}', {})).to.equal('{missing}');
  });
});
