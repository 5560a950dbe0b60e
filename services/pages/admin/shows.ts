// The admin page's shows: a New stage form (title, optional call-in rate) that shows the new stage's links once, and
// the list of stages with Start / Stop, and each stage's recordings with download links. Everything goes through the
// REST API with the admin token (GET/POST /api/stages, /start, /stop, /api/stages/:id/recordings).
// For automation: each row has data-stage and data-status; window.adminDebug.shows().
import type { ErrorBody } from '../../shared/errors.ts';
import { formatDateTime, formatDuration, t } from '../i18n/index.ts';
import type { CreateStageBody, RecordingList, RecordingView, StageCreated, StageList, StageListItem } from '../../shared/rest.ts';

/** The list is read again this often while the page is connected (and at once after every action). */
const REFRESH_MS = 5_000;

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

function el<K extends keyof HTMLElementTagNameMap>(tag: K, props: Partial<HTMLElementTagNameMap[K]> = {}, ...children: (Node | string)[]): HTMLElementTagNameMap[K] {
  const e = Object.assign(document.createElement(tag), props);
  e.append(...children);
  return e;
}

class ApiError extends Error {}

export interface Shows {
  /** Starts reading the list with this token (on connect); null stops (on logout or refusal). */
  setToken(token: string | null): void;
  list(): StageListItem[];
}

export function setupShows(): Shows {
  const ui = {
    form: $<HTMLFormElement>('new-stage'),
    title: $<HTMLInputElement>('new-title'),
    rate: $<HTMLInputElement>('new-rate'),
    currency: $<HTMLInputElement>('new-currency'),
    create: $<HTMLButtonElement>('create-stage'),
    error: $<HTMLParagraphElement>('shows-error'),
    created: $<HTMLDivElement>('created'),
    createdTitle: $<HTMLElement>('created-title'),
    createdPerformer: $<HTMLAnchorElement>('created-performer'),
    createdListen: $<HTMLAnchorElement>('created-listen'),
    createdHls: $<HTMLElement>('created-hls'),
    table: $<HTMLTableElement>('stage-list'),
    empty: $<HTMLParagraphElement>('no-shows'),
  };
  let token: string | null = null;
  let stages: StageListItem[] = [];
  let timer: ReturnType<typeof setInterval> | null = null;
  /** Stages whose recordings are shown, and what was last read. */
  const open = new Map<string, RecordingView[] | null>();

  async function api<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
    if (!token) throw new ApiError('not connected');
    const res = await fetch(path, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      cache: 'no-store',
    });
    const data = (await res.json().catch(() => null)) as (T & { error?: ErrorBody }) | null;
    if (!res.ok) throw new ApiError(data?.error?.message ?? `${res.status} ${res.statusText}`);
    return data as T;
  }

  function showError(err: unknown): void {
    ui.error.textContent = err instanceof Error ? err.message : String(err);
  }

  /** Reads the currency's decimals from Intl (EUR 2, JPY 0), so a typed 0.50 becomes 50 cents. */
  function callRate(): CreateStageBody['callRate'] | undefined {
    const amount = ui.rate.value.trim();
    const currency = ui.currency.value.trim().toUpperCase();
    if (!amount && !currency) return undefined;
    if (!/^[A-Z]{3}$/.test(currency)) throw new ApiError(t('shows.error.currencyCode'));
    let digits: number;
    try {
      digits = new Intl.NumberFormat('en', { style: 'currency', currency }).resolvedOptions().maximumFractionDigits ?? 2;
    } catch {
      throw new ApiError(t('shows.error.currencyUnknown', { currency }));
    }
    const value = Number(amount);
    if (!amount || !Number.isFinite(value) || value < 0) throw new ApiError(t('shows.error.amount'));
    return { currency, amountMinor: Math.round(value * 10 ** digits) };
  }

  ui.form.addEventListener('submit', (e) => {
    e.preventDefault();
    void (async () => {
      ui.error.textContent = '';
      ui.create.disabled = true;
      try {
        const rate = callRate();
        const created = await api<StageCreated>('POST', '/api/stages', { title: ui.title.value, ...(rate ? { callRate: rate } : {}) });
        showCreated(created);
        ui.form.reset();
        await refresh();
      } catch (err) {
        showError(err);
      } finally {
        ui.create.disabled = false;
      }
    })();
  });

  function showCreated(c: StageCreated): void {
    ui.createdTitle.textContent = c.title;
    ui.createdPerformer.href = c.performerUrl;
    ui.createdPerformer.textContent = c.performerUrl;
    ui.createdListen.href = c.listenUrl;
    ui.createdListen.textContent = c.listenUrl;
    ui.createdHls.textContent = c.hlsUrl;
    ui.created.dataset['stage'] = c.id;
    ui.created.hidden = false;
  }

  for (const button of document.querySelectorAll<HTMLButtonElement>('#created button[data-copy]')) {
    button.addEventListener('click', () => {
      const text = $(button.dataset['copy']!).textContent ?? '';
      void navigator.clipboard.writeText(text).then(
        () => {
          button.textContent = t('common.copied');
          setTimeout(() => (button.textContent = t('common.copy')), 1500);
        },
        () => {
          // No clipboard (an insecure origin): select the text for a manual copy.
          const range = document.createRange();
          range.selectNodeContents($(button.dataset['copy']!));
          getSelection()?.removeAllRanges();
          getSelection()?.addRange(range);
        },
      );
    });
  }

  async function transition(s: StageListItem, action: 'start' | 'stop'): Promise<void> {
    ui.error.textContent = '';
    try {
      await api('POST', `/api/stages/${encodeURIComponent(s.id)}/${action}`, {});
    } catch (err) {
      showError(err);
    }
    await refresh();
  }

  async function toggleRecordings(id: string): Promise<void> {
    if (open.has(id)) open.delete(id);
    else open.set(id, null);
    render();
    if (open.has(id)) await readRecordings(id);
  }

  async function readRecordings(id: string): Promise<void> {
    try {
      const list = await api<RecordingList>('GET', `/api/stages/${encodeURIComponent(id)}/recordings`);
      if (open.has(id)) open.set(id, list.recordings);
    } catch (err) {
      showError(err);
    }
    render();
  }

  function recordingItem(r: RecordingView): HTMLLIElement {
    const li = el('li');
    li.dataset['recording'] = r.id;
    li.dataset['status'] = r.status;
    const when = `${formatDateTime(r.startedAt)}${r.durationSeconds !== null ? `, ${formatDuration(Math.round(r.durationSeconds))}` : ''}`;
    const status = t(`shows.archive.${r.status}`);
    li.append(`${when}: ${status}${r.status === 'archived' ? '' : ` (${t('admin.segmentsUploaded', { uploaded: r.segments.uploaded, queued: r.segments.count })})`} `);
    if (r.error) li.append(el('span', { className: 'warning', textContent: r.error }));
    const uploaded = r.files.filter((f) => f.state === 'uploaded');
    const audio = uploaded.find((f) => f.kind === 'audio');
    if (audio) li.append(el('a', { href: audio.url, download: '', className: 'download', textContent: t('shows.downloadAudio') }), ' ');
    for (const f of uploaded.filter((f) => f.kind === 'track' || f.kind === 'timeline' || f.kind === 'chapters')) {
      const label = f.kind === 'track' ? t('shows.trackOf', { name: f.displayName ?? f.performerId ?? '' }) : t(f.kind === 'timeline' ? 'shows.timeline' : 'shows.chapters');
      li.append(el('a', { href: f.url, download: '', textContent: label }), ' ');
    }
    return li;
  }

  function row(s: StageListItem): HTMLTableRowElement[] {
    const badge = el('span', { className: 'badge', textContent: t(`status.${s.status}`) });
    badge.dataset['status'] = s.status;
    const actions = el('td', { className: 'actions' });
    if (s.status === 'idle') actions.append(el('button', { type: 'button', textContent: t('shows.start'), onclick: () => void transition(s, 'start') }));
    if (s.status === 'live') actions.append(el('button', { type: 'button', textContent: t('shows.stop'), onclick: () => void transition(s, 'stop') }));
    actions.append(el('a', { href: s.listenUrl, target: '_blank', rel: 'noopener', textContent: t('shows.listen') }));
    if (s.status !== 'idle') {
      const shown = open.has(s.id);
      actions.append(el('button', { type: 'button', textContent: t(shown ? 'shows.hideRecordings' : 'shows.recordings'), ariaExpanded: String(shown), onclick: () => void toggleRecordings(s.id) }));
    }
    const tr = el(
      'tr',
      {},
      el('td', { textContent: s.title }),
      el('td', {}, badge),
      el('td', { textContent: formatDateTime(s.createdAt) }),
      el('td', { className: 'num', textContent: String(s.performers) }),
      actions,
    );
    tr.dataset['stage'] = s.id;
    tr.dataset['status'] = s.status;
    if (!open.has(s.id)) return [tr];
    const recs = open.get(s.id);
    const cell = el('td', { colSpan: 5 });
    if (recs === null || recs === undefined) cell.append(t('shows.readingRecordings'));
    else if (recs.length === 0) cell.append(t('shows.noRecording'));
    else cell.append(el('ul', { className: 'recs' }, ...recs.map(recordingItem)));
    const more = el('tr', { className: 'recordings' }, cell);
    more.dataset['recordingsOf'] = s.id;
    return [tr, more];
  }

  function render(): void {
    ui.table.tBodies[0]!.replaceChildren(...stages.flatMap(row));
    ui.table.hidden = stages.length === 0;
    ui.empty.hidden = stages.length > 0;
  }

  async function refresh(): Promise<void> {
    if (!token) return;
    try {
      stages = (await api<StageList>('GET', '/api/stages')).stages;
      render();
      // Recordings still being archived are read again with the list.
      for (const [id, recs] of open) if (recs === null || recs.some((r) => r.status !== 'archived' && r.status !== 'failed')) await readRecordings(id);
    } catch (err) {
      showError(err);
    }
  }

  return {
    setToken(next) {
      token = next;
      if (timer) clearInterval(timer);
      timer = null;
      if (!next) return;
      void refresh();
      timer = setInterval(() => void refresh(), REFRESH_MS);
    },
    list: () => stages,
  };
}
