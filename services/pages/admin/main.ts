// The admin page: asks for the admin token (or reads it from the URL fragment, #token=..., which never reaches the
// server and is removed from the address bar at once), connects to the /admin namespace with it, and renders the
// snapshots the server sends about once a second, with the performers' live levels in between.
// Bundled by esbuild for the browser. For automation: document.body.dataset.state = login|connecting|live|error and
// window.adminDebug.
import { io, type Socket } from 'socket.io-client';
import type { StageListItem } from '../../shared/rest.ts';
import { setupShows } from './shows.ts';
import { formatDuration, setupLanguage, t } from '../i18n/index.ts';

// The page in the reader's language (en, ja) before anything else is shown.
setupLanguage();
import type { AdminConnectErrorData, AdminLevel, AdminServerEvents, AdminSnapshot, AdminStage, AdminWorker } from '../../shared/admin.ts';

type PageState = 'login' | 'connecting' | 'live' | 'error';

/** Below this a performer counts as silent (the server reports levels above -70 dBov only). */
const METER_MIN_DB = -80;
const SERVER_RETRY_MS = 2_000;

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const ui = {
  login: $<HTMLFormElement>('login'),
  token: $<HTMLInputElement>('token'),
  connect: $<HTMLButtonElement>('connect'),
  status: $<HTMLParagraphElement>('status'),
  error: $<HTMLParagraphElement>('error'),
  dashboard: $<HTMLElement>('dashboard'),
  totals: $<HTMLElement>('totals'),
  workers: $<HTMLTableElement>('workers'),
  stages: $<HTMLDivElement>('stages'),
  noStages: $<HTMLParagraphElement>('no-stages'),
  problems: $<HTMLParagraphElement>('problems'),
};

const shows = setupShows();
let socket: Socket<AdminServerEvents, Record<string, never>> | null = null;
let snapshot: AdminSnapshot | null = null;
/** Per stage, the latest levels (from `audioLevels` or the snapshot, whichever is newer). */
const levels = new Map<string, AdminLevel[]>();
let retryTimer: ReturnType<typeof setTimeout> | null = null;

function setState(state: PageState, status: string, error = ''): void {
  document.body.dataset['state'] = state;
  ui.status.textContent = status;
  ui.error.textContent = error;
  ui.login.hidden = state === 'live' || state === 'connecting';
  ui.connect.disabled = state === 'connecting';
}

function el<K extends keyof HTMLElementTagNameMap>(tag: K, props: { className?: string; text?: string; title?: string } = {}, ...children: Node[]): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (props.className) e.className = props.className;
  if (props.text !== undefined) e.textContent = props.text;
  if (props.title !== undefined) e.title = props.title;
  e.append(...children);
  return e;
}

function fact(term: string, value: string): HTMLElement {
  return el('div', {}, el('dt', { text: term }), el('dd', { text: value }));
}

/** h:mm:ss, always with the hours (on air and uptime run for hours). */
function duration(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  return s < 3600 ? `0:${formatDuration(s).padStart(5, '0')}` : formatDuration(s);
}

/** Cluster mode: each worker and stage says which node it is on (the snapshot covers every node). */
function renderWorkers(workers: AdminWorker[], clustered: boolean): void {
  const body = ui.workers.tBodies[0]!;
  for (const th of ui.workers.querySelectorAll<HTMLElement>('th[data-node]')) th.hidden = !clustered;
  body.replaceChildren(
    ...workers.map((w) => {
      const node = el('td', { text: w.node ?? '' });
      node.hidden = !clustered;
      const row = el(
        'tr',
        {},
        node,
        el('td', { text: `#${w.index}` }),
        el('td', { className: 'num', text: String(w.pid) }),
        el('td', { className: 'num', text: w.cpuPercent === null ? '…' : `${w.cpuPercent.toFixed(1)} %` }),
        el('td', { className: 'num', text: String(w.routers) }),
        el('td', { text: t(w.alive ? 'admin.running' : 'admin.down') }),
      );
      row.dataset['worker'] = String(w.index);
      if (w.node) row.dataset['node'] = w.node;
      return row;
    }),
  );
}

function archiveText(s: AdminStage): string {
  const a = s.archive;
  if (!a) return '—';
  const seg = t('admin.segmentsUploaded', { uploaded: a.segments.uploaded, queued: a.segments.queued });
  const status = t(`shows.archive.${a.status}`);
  return a.error ? `${status}: ${a.error}` : `${status} (${seg})`;
}

function ffmpegText(s: AdminStage): string {
  const f = s.ffmpeg;
  if (!f) return '—';
  const restarts = t(f.restarts === 1 ? 'admin.restart' : 'admin.restarts', { n: f.restarts });
  return f.failure ? t('admin.failedAfter', { restarts, failure: f.failure }) : `pid ${f.pid ?? '…'}, ${restarts}`;
}

function renderStage(s: AdminStage): HTMLElement {
  const badge = el('span', { className: 'badge', text: s.status === 'live' || s.status === 'idle' || s.status === 'ended' ? t(`status.${s.status}`) : s.status });
  badge.dataset['status'] = s.status;
  const head = el('h3', {}, el('span', { text: s.title ?? '(unknown)' }), badge, el('span', { className: 'id', text: s.id }));
  if (s.node) head.append(el('span', { className: 'id', text: `${t('admin.node')} ${s.node}` }));
  const facts = el(
    'dl',
    { className: 'facts' },
    fact(t('status.live'), s.onAirSeconds === null ? '—' : duration(s.onAirSeconds)),
    fact(t('admin.listeners'), String(s.listeners)),
    fact(t('admin.calls'), t('admin.callsValue', { waiting: s.calls.waiting, onAir: s.calls.onAir })),
    fact(t('admin.consumers'), String(s.consumers)),
    fact(t('admin.worker'), s.worker === null ? '—' : `#${s.worker}`),
    fact(t('admin.mixerLag'), s.mixerLagSeconds === null ? '—' : `${s.mixerLagSeconds.toFixed(2)} s`),
    fact('FFmpeg', ffmpegText(s)),
    fact(t('admin.archive'), archiveText(s)),
  );
  if (s.endReason) facts.append(fact(t('status.ended'), s.endReason));
  if (s.otherMixInputs > 0) facts.append(fact(t('admin.otherInputs'), String(s.otherMixInputs)));
  const table = el(
    'table',
    {},
    el('thead', {}, el('tr', {}, ...(['admin.performer', 'admin.muted', 'admin.onAir', 'admin.consumers', 'admin.level'] as const).map((h) => el('th', { text: t(h) })))),
    el(
      'tbody',
      {},
      ...s.performers.map((p) => {
        const meter = el('meter');
        meter.min = METER_MIN_DB;
        meter.max = 0;
        meter.low = -50;
        meter.high = -12;
        meter.optimum = -20;
        meter.value = METER_MIN_DB;
        const level = el('span', { className: 'level', text: t('admin.silent') });
        const row = el(
          'tr',
          {},
          el('td', { text: p.role === 'performer' ? p.displayName : `${p.displayName}${t(p.role === 'caller' ? 'performer.role.caller' : 'performer.role.encoder')}` }),
          el('td', { text: p.muted ? t('admin.p.muted') : '' }),
          el('td', { text: t(p.onAir ? 'admin.p.onAir' : p.publishing ? 'admin.p.publishing' : 'admin.p.joining') }),
          el('td', { className: 'num', text: String(p.consumers) }),
          el('td', {}, meter, level),
        );
        row.dataset['performerId'] = p.id;
        return row;
      }),
    ),
  );
  table.setAttribute('aria-label', t('admin.performersOf', { title: s.title ?? s.id }));
  const section = el('section', { className: 'stage' }, head, facts, s.performers.length > 0 ? table : el('p', { text: t('admin.noPerformer') }));
  section.dataset['stageId'] = s.id;
  if (s.node) section.dataset['node'] = s.node;
  return section;
}

function render(snap: AdminSnapshot): void {
  ui.dashboard.hidden = false;
  const sum = snap.totals;
  ui.totals.replaceChildren(
    fact(t('admin.stagesLive'), String(sum.stagesLive)),
    fact(t('admin.performers'), String(sum.performers)),
    fact(t('admin.consumers'), String(sum.consumers)),
    fact(t('admin.listeners'), String(sum.listeners)),
    fact(t('admin.callsWaiting'), String(sum.callsWaiting)),
    fact(t('admin.callersOnAir'), String(sum.callsOnAir)),
    fact(t('admin.uploadQueue'), sum.uploadQueueDepth === null ? '?' : String(sum.uploadQueueDepth)),
    fact(t('admin.up'), duration(snap.uptimeSeconds)),
  );
  renderWorkers(snap.workers, snap.node !== null);
  ui.noStages.hidden = snap.stages.length > 0;
  ui.stages.replaceChildren(...snap.stages.map(renderStage));
  ui.problems.textContent = snap.problems.join('; ');
  for (const s of snap.stages) renderLevels(s.id);
}

/** Puts the stage's latest levels on its performers' meters; a performer not in the list is silent. */
function renderLevels(stageId: string): void {
  const section = [...ui.stages.querySelectorAll<HTMLElement>('section.stage')].find((e) => e.dataset['stageId'] === stageId);
  if (!section) return;
  const byId = new Map((levels.get(stageId) ?? []).map((l) => [l.performerId, l.volume]));
  for (const row of section.querySelectorAll<HTMLTableRowElement>('tr[data-performer-id]')) {
    const v = byId.get(row.dataset['performerId'] ?? '');
    const meter = row.querySelector('meter');
    const text = row.querySelector<HTMLElement>('.level');
    if (meter) meter.value = v === undefined ? METER_MIN_DB : Math.max(METER_MIN_DB, v);
    if (text) text.textContent = v === undefined ? t('admin.silent') : `${v.toFixed(1)} dB`;
  }
}

function isAuthError(data: unknown): data is AdminConnectErrorData {
  return typeof data === 'object' && data !== null && typeof (data as { code?: unknown }).code === 'string' && typeof (data as { message?: unknown }).message === 'string';
}

function disconnect(): void {
  if (retryTimer) clearTimeout(retryTimer);
  retryTimer = null;
  socket?.removeAllListeners();
  socket?.disconnect();
  socket = null;
}

function connect(token: string): void {
  disconnect();
  setState('connecting', t('admin.connecting'));
  const s: Socket<AdminServerEvents, Record<string, never>> = io('/admin', {
    auth: { token },
    transports: ['websocket'],
    reconnectionDelay: 500,
    reconnectionDelayMax: 8_000,
  });
  socket = s;
  s.on('connect', () => {
    setState('live', t('admin.connected'));
    // The token is good: the shows are read with it too.
    shows.setToken(token);
  });
  s.on('connect_error', (err: Error & { data?: unknown }) => {
    if (isAuthError(err.data)) {
      // Refused by the server: retrying with the same token would be refused again.
      disconnect();
      shows.setToken(null);
      snapshot = null;
      ui.dashboard.hidden = true;
      const code = err.data.code;
      setState('error', '', code === 'UNAUTHORIZED' || code === 'RATE_LIMITED' ? t(`admin.refused.${code}`) : t('admin.refused', { message: err.data.message }));
      ui.token.focus();
      return;
    }
    setState('connecting', t('admin.unreachable', { message: err.message }));
  });
  s.on('disconnect', (reason) => {
    if (socket !== s) return;
    setState('connecting', t('admin.lost'));
    // The server closed it (a restart, say): Socket.IO does not retry that on its own.
    if (reason === 'io server disconnect') retryTimer = setTimeout(() => s.connect(), SERVER_RETRY_MS);
  });
  s.on('snapshot', (snap) => {
    snapshot = snap;
    for (const [id, l] of Object.entries(snap.levels)) levels.set(id, l);
    for (const id of [...levels.keys()]) if (!snap.stages.some((st) => st.id === id)) levels.delete(id);
    render(snap);
  });
  s.on('audioLevels', ({ stageId, levels: l }) => {
    levels.set(stageId, l);
    renderLevels(stageId);
  });
}

ui.login.addEventListener('submit', (e) => {
  e.preventDefault();
  const token = ui.token.value.trim();
  if (token) connect(token);
});

// A token in the fragment (#token=...) connects at once; it is taken out of the address bar and history.
const fromFragment = new URLSearchParams(location.hash.slice(1)).get('token');
if (fromFragment) {
  history.replaceState(null, '', location.pathname + location.search);
  connect(fromFragment);
} else {
  setState('login', t('admin.enterToken'));
  ui.token.focus();
}

declare global {
  interface Window {
    adminDebug: {
      /** The last snapshot received, or null. */
      snapshot: () => AdminSnapshot | null;
      /** The latest level of every performer reported (dBov), by performer id. */
      levels: () => Record<string, number>;
      state: () => string;
      /** The stages of the shows list, as last read. */
      shows: () => StageListItem[];
    };
  }
}

window.adminDebug = {
  snapshot: () => snapshot,
  levels: () => {
    const out: Record<string, number> = {};
    for (const l of levels.values()) for (const { performerId, volume } of l) out[performerId] = volume;
    return out;
  },
  state: () => document.body.dataset['state'] ?? '',
  shows: () => shows.list(),
};
