// gotrace's page: the live view (`gotrace attach PID --web`, the agent's `/targets/ID/`), the
// agent's target list (its `/`) and the offline report (`index.html` in an output directory).
//
// Data: the inline <script type="application/json" id="gotrace-data"> when there is one (the
// report: rendered once), else `api/page` fetched every `tick_s` seconds, relative to the page's
// own URL so the same page works at `/` and at `/targets/ID/`. The shape is in README.md
// ("Watching in the browser") and tracer-user/src/export/page_data.rs.
//
// Stable hooks for tests and users (do not rename without updating tests/it/web*.rs):
//   #status                 "live · updated 2s ago" / "target exited…" / "cannot reach gotrace…"; class live|ended|error|report
//   #target, #stats         the header: pid, exe, Go version; heap in use vs goal, goroutines, session time
//   nav [data-view=V]       tab buttons, V in flame|timelines|findings|groups|diff|targets;
//                           aria-selected="true" on the open one; section#view-V holds its view
//   [data-kind=K]           flamegraph switch, K in inuse_space|alloc_space|goroutines (aria-pressed)
//   #flamegraph             the flamegraph (an SVG; frames are <g class="frame" name=FUNCTION>);
//                           data-renders (redraws), data-zoom ("total > main.main > …"), data-search
//   #flame-search, #flame-reset   search box (regexp, case-insensitive), reset-zoom button
//   #top-table              top functions of the flamegraph shown: self, self %, total, total %, function
//   #timelines              the charts, each .chart[data-chart=heap|goroutines|stacks|gc] (data-points)
//   #findings               one .finding[data-key] per finding (.new while freshly seen), #findings-count
//   #groups, #groups-filter goroutine groups table (tr.group[data-state]) and its text filter; #groups-summary
//   #diff, #diff-base, #diff-table   differential flamegraph, its base <select>, the frames that grew most
//   #targets                the agent's targets (tr.target[data-id], a link to each one's page)

import './style.css';
import { FlameView, fillDiffTable, fillTopTable } from './flame.js';
import { Timelines } from './charts.js';
import { bytes, count, duration, el, frameList, patchRows, signed, site } from './util.js';

const $ = (id) => document.getElementById(id);
const VIEWS = ['flame', 'timelines', 'findings', 'groups', 'diff', 'targets'];
const KINDS = {
  inuse_space: { format: bytes, label: 'heap in use' },
  alloc_space: { format: bytes, label: 'allocations' },
  goroutines: { format: count, label: 'goroutines' },
};
const NEW_FINDING_MS = 15000;

const state = {
  data: null,
  inline: false,
  view: null,
  kind: 'inuse_space',
  diffBase: '',
  lastOk: 0,
  error: null,
  gone: false, // api/page answered 404
  seenFindings: null, // keys of the findings shown so far (null before the first data)
  openStacks: new Set(), // <details> the user opened, kept open across ticks
  groupsSig: '',
  findingsSig: '',
};

const flame = new FlameView($('flamegraph'), {
  format: (v) => KINDS[state.kind].format(v),
  details: $('flame-details'),
  onSearch: (n, sum, total) => {
    $('flame-details').textContent = state.data && $('flame-search').value
      ? `${n} frames match: ${KINDS[state.kind].format(sum)} of ${KINDS[state.kind].format(total)}`
      : '';
  },
});
const diffFlame = new FlameView($('diff'), { format: bytes, differential: true, details: $('diff-label') });
const timelines = new Timelines($('timelines'));

// ---- data ---------------------------------------------------------------------------------

function start() {
  wire();
  const inline = $('gotrace-data');
  if (inline) {
    state.inline = true;
    state.lastOk = Date.now();
    render(JSON.parse(inline.textContent));
    return;
  }
  if (location.protocol === 'file:') {
    setStatus('error', 'no data: this page shows what gotrace serves (gotrace attach PID --web) or writes (index.html)');
    return;
  }
  poll();
  setInterval(showStatus, 1000);
}

let timer = null;
let inFlight = false;
let again = false;

function apiUrl() {
  const q = new URLSearchParams();
  if (state.view === 'diff' && state.diffBase) q.set('diff', state.diffBase);
  if ((state.view === 'flame' && state.kind === 'goroutines') || state.view === 'groups') q.set('goroutines', '1');
  const s = q.toString();
  return 'api/page' + (s ? '?' + s : '');
}

/** Fetches now (what is asked changed, or the tick came), then again a tick later. */
async function poll() {
  if (state.inline) return;
  clearTimeout(timer);
  if (inFlight) {
    again = true;
    return;
  }
  inFlight = true;
  let data = null;
  try {
    // A server that accepts and never answers must not stop the polling.
    const r = await fetch(apiUrl(), { cache: 'no-store', signal: AbortSignal.timeout(15000) });
    state.gone = r.status === 404;
    if (!r.ok) throw new Error(`HTTP ${r.status}${r.statusText ? ' ' + r.statusText : ''}`);
    data = await r.json();
    state.lastOk = Date.now();
    state.error = null;
  } catch (e) {
    state.error = e.message || String(e);
  }
  inFlight = false;
  const tick = Math.max(0.2, (data && data.tick_s) || (state.data && state.data.tick_s) || 1);
  timer = setTimeout(poll, again ? 0 : tick * 1000);
  again = false;
  if (data) render(data);
  else showStatus();
}

// ---- rendering ----------------------------------------------------------------------------

function render(data) {
  state.data = data;
  const agent = data.mode === 'agent';
  for (const b of document.querySelectorAll('nav [data-view]')) {
    b.hidden = agent ? b.dataset.view !== 'targets' : b.dataset.view === 'targets';
  }
  if (!state.view || document.querySelector(`nav [data-view=${state.view}]`).hidden) openView(initialView(agent), false);
  renderHeader(data);
  if (agent) {
    renderTargets(data.targets || []);
  } else {
    renderFlame();
    timelines.render((data.report && data.report.timeline) || []);
    $('timelines-empty').hidden = !!(data.report && data.report.timeline && data.report.timeline.length);
    renderFindings((data.report && data.report.findings) || []);
    renderGroups();
    renderDiff();
  }
  showStatus();
}

function renderHeader(data) {
  const t = (data.report && data.report.target) || null;
  if (data.mode === 'agent') {
    $('target').replaceChildren(el('span', {}, 'agent'), el('span', {}, `${(data.targets || []).length} targets`));
    $('stats').replaceChildren();
    document.title = 'gotrace agent';
    return;
  }
  if (t) {
    $('target').replaceChildren(...[
      el('span', {}, 'pid ', el('b', {}, t.pid)),
      el('span', { class: 'mono' }, t.exe || ''),
      el('span', {}, t.go_version || ''),
      t.module ? el('span', { class: 'mono' }, t.module) : null,
      t.stripped ? el('span', {}, 'stripped') : null].filter(Boolean));
    document.title = `gotrace · ${t.pid} ${(t.exe || '').split('/').pop()}`;
  }
  const r = data.report || {};
  const tl = r.timeline || [];
  const last = tl.length ? tl[tl.length - 1] : {};
  const heap = last.heap_inuse ?? (r.heap && r.heap.inuse_bytes);
  const goal = last.heap_goal ?? (r.gc && r.gc.at_end && r.gc.at_end.heap_goal);
  const gs = last.goroutines ?? (r.goroutines && r.goroutines.live_at_end);
  const s = r.session || {};
  $('stats').replaceChildren(
    el('span', {}, 'heap in use ', el('b', { id: 'stat-heap' }, bytes(heap)), ' / goal ', el('b', {}, bytes(goal))),
    el('span', {}, 'goroutines ', el('b', { id: 'stat-goroutines' }, count(gs))),
    el('span', {}, 'session ', el('b', {}, duration(s.duration_s)), s.started_at ? ` since ${s.started_at}` : ''));
}

function setStatus(cls, text) {
  const s = $('status');
  s.className = 'status ' + cls;
  s.textContent = text;
}

function showStatus() {
  const d = state.data;
  if (state.inline) {
    setStatus('report', d && d.generated_at ? `report · written ${d.generated_at}` : 'report');
    return;
  }
  const ago = state.lastOk ? `${Math.round((Date.now() - state.lastOk) / 1000)}s ago` : 'never';
  if (state.error && state.gone) {
    // The agent forgets a target that exited.
    setStatus('ended', `target exited: gotrace no longer serves it · last data ${ago}`);
    return;
  }
  if (state.error) {
    setStatus('error', `cannot reach gotrace (${state.error}): the session may have ended · retrying · last data ${ago}`);
    return;
  }
  const end = d && d.report && d.report.session && d.report.session.end_reason;
  if (end) setStatus('ended', end === 'target-exited' ? 'target exited' : `session ended (${end})`);
  else if (d) setStatus('live', `live · updated ${ago}`);
}

// ---- flamegraph ---------------------------------------------------------------------------

function renderFlame() {
  const flames = (state.data && state.data.flames) || {};
  const tree = flames[state.kind] || null;
  for (const b of document.querySelectorAll('[data-kind]')) b.setAttribute('aria-pressed', String(b.dataset.kind === state.kind));
  const empty = $('flame-empty');
  empty.hidden = !!tree;
  if (!tree) {
    const asked = state.kind !== 'goroutines' || state.inline || apiUrl().includes('goroutines=1');
    empty.textContent = asked ? `No ${KINDS[state.kind].label} profile${state.kind === 'inuse_space' ? ' (the heap sampler may be off, or no GC cycle has run yet)' : ''}.` : 'loading…';
  }
  flame.render(tree);
  fillTopTable($('top-table').tBodies[0], tree, KINDS[state.kind].format, pickFunction);
}

/** A click in a table searches the flamegraph for that function. */
function pickFunction(name) {
  const term = '^' + name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&') + '$';
  $('flame-search').value = term;
  flame.search(term);
  if (state.view !== 'flame') openView('flame');
}

// ---- findings -----------------------------------------------------------------------------

function findingKey(f) {
  return `${f.pattern}@${site(f.site)}`;
}

function renderFindings(findings) {
  const badge = $('findings-count');
  badge.textContent = String(findings.length);
  badge.classList.toggle('hot', findings.length > 0);
  const sig = JSON.stringify(findings);
  if (sig === state.findingsSig) return;
  state.findingsSig = sig;
  const first = state.seenFindings === null;
  const seen = state.seenFindings || new Set();
  const box = $('findings');
  if (!findings.length) {
    box.replaceChildren(el('p', { class: 'empty' }, 'No finding so far.'));
  } else {
    box.replaceChildren(...findings.map((f) => {
      const key = findingKey(f);
      const fresh = !first && !seen.has(key);
      seen.add(key);
      const card = el('article', { class: 'finding' + (fresh ? ' new' : ''), 'data-key': key, 'data-pattern': f.pattern },
        el('div', {}, el('span', { class: 'pattern' }, f.pattern), ' at ', el('span', { class: 'mono site' }, site(f.site))),
        evidence(f.evidence),
        f.hint ? el('p', { class: 'hint' }, 'hint: ', f.hint) : null,
        f.stack && f.stack.length ? keptOpen(el('details', {}, el('summary', {}, `stack (${f.stack.length} frames)`), frameList(f.stack)), 'finding ' + key) : null);
      if (fresh) setTimeout(() => card.classList.remove('new'), NEW_FINDING_MS);
      return card;
    }));
  }
  state.seenFindings = seen;
}

function evidence(ev) {
  if (!ev || typeof ev !== 'object') return null;
  const fmt = (k, v) => {
    if (v === null || v === undefined) return '–';
    if (typeof v === 'number' && /bytes/.test(k)) return bytes(v);
    if (typeof v === 'number' && /_s$/.test(k)) return duration(v);
    if (typeof v === 'object') return site(v.function ? v : null) !== '–' ? site(v) : JSON.stringify(v);
    return String(v);
  };
  return el('div', { class: 'evidence mono' }, ...Object.entries(ev).map(([k, v]) => el('span', {}, `${k}=${fmt(k, v)}`)));
}

/** A <details> whose open state survives the next tick's re-render. */
function keptOpen(details, key) {
  if (state.openStacks.has(key)) details.open = true;
  details.addEventListener('toggle', () => {
    if (details.open) state.openStacks.add(key);
    else state.openStacks.delete(key);
  });
  return details;
}

// ---- goroutine groups ---------------------------------------------------------------------

function groupText(g) {
  const frames = (g.frames || []).map((f) => `${f.function} ${f.file}:${f.line}`);
  const by = g.created_by ? `${g.created_by.function} ${g.created_by.file}:${g.created_by.line}` : '';
  return [g.state, ...frames, by].join('\n').toLowerCase();
}

function renderGroups() {
  const groups = state.data && state.data.groups;
  const tbody = $('groups').tBodies[0];
  const empty = $('groups-empty');
  const filter = $('groups-filter').value.trim().toLowerCase();
  const sig = JSON.stringify([groups, filter]);
  if (sig === state.groupsSig) return;
  state.groupsSig = sig;
  if (!groups) {
    tbody.replaceChildren();
    empty.hidden = false;
    empty.textContent = state.inline ? 'No goroutine groups in this report.' : 'loading…';
    $('groups-summary').textContent = '';
    return;
  }
  const words = filter.split(/\s+/).filter(Boolean);
  const shown = groups
    .filter((g) => { const t = groupText(g); return words.every((w) => t.includes(w)); })
    .sort((a, b) => b.count - a.count);
  const total = groups.reduce((s, g) => s + g.count, 0);
  const shownTotal = shown.reduce((s, g) => s + g.count, 0);
  $('groups-summary').textContent = `${shown.length} of ${groups.length} groups, ${count(shownTotal)} of ${count(total)} goroutines`;
  empty.hidden = shown.length > 0;
  empty.textContent = groups.length ? 'No group matches the filter.' : 'No goroutines.';
  const groupKey = (g) => ['group', g.state, ...(g.frames || []).map((f) => `${f.function}:${f.line}`),
    g.created_by ? `${g.created_by.function}:${g.created_by.line}` : ''].join(' ');
  patchRows(tbody, shown, groupKey, (g) => {
    const frames = g.frames || [];
    const key = groupKey(g);
    const top = frames.slice(0, 3);
    const stack = el('td', {}, frameList(top),
      frames.length > top.length
        ? keptOpen(el('details', {}, el('summary', {}, `all ${frames.length} frames`), frameList(frames)), key)
        : null);
    const by = g.created_by
      ? el('td', { class: 'mono' }, site(g.created_by), g.created_by.parent_goid ? ` in goroutine ${g.created_by.parent_goid}` : '')
      : el('td', {}, '–');
    return el('tr', { class: 'group', 'data-state': g.state },
      el('td', { class: 'num' }, count(g.count)),
      el('td', {}, g.state),
      el('td', { class: 'num' }, g.max_waiting_s ? duration(g.max_waiting_s) : '–'),
      stack, by);
  });
}

// ---- diff ---------------------------------------------------------------------------------

function renderDiff() {
  const d = state.data;
  const sel = $('diff-base');
  const bases = d.diff_bases || [];
  const opts = bases.length ? bases : d.diff ? [{ id: d.diff.base, label: d.diff.label || d.diff.base }] : [];
  if (!state.diffBase && opts.length) state.diffBase = opts[0].id;
  if (sel.dataset.sig !== JSON.stringify(opts)) {
    sel.dataset.sig = JSON.stringify(opts);
    sel.replaceChildren(...opts.map((b) => el('option', { value: b.id }, b.label)));
  }
  sel.value = state.diffBase;
  sel.disabled = state.inline || opts.length < 2;
  const tree = (d.diff && d.diff.base === state.diffBase && d.diff.inuse_space) || null;
  const empty = $('diff-empty');
  empty.hidden = !!tree;
  if (!tree) {
    empty.textContent = !opts.length ? 'No base to compare with yet.'
      : state.inline ? 'No diff in this report.' : 'loading…';
  }
  diffFlame.render(tree);
  $('diff-label').textContent = tree ? `${d.diff.label}: ${signed(tree.delta || 0, bytes)} (now ${bytes(tree.value)})` : '';
  fillDiffTable($('diff-table').tBodies[0], tree, bytes, (name) => {
    const term = '^' + name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&') + '$';
    diffFlame.search(term);
  });
}

// ---- the agent's targets ------------------------------------------------------------------

function renderTargets(targets) {
  $('targets-empty').hidden = targets.length > 0;
  patchRows($('targets').tBodies[0], targets, (t) => t.id, (t) => {
    const labels = Object.entries(t.labels || {}).sort(([a], [b]) => a.localeCompare(b));
    const name = (t.labels && (t.labels.service_name || t.labels.exe)) || t.id;
    return el('tr', { class: 'target', 'data-id': t.id },
      el('td', {}, el('a', { href: t.url }, name), el('div', { class: 'mono details' }, t.id)),
      el('td', { class: 'labels mono' }, ...labels.map(([k, v]) => el('span', {}, `${k}=${v}`))),
      el('td', { class: 'num' }, bytes(t.heap_inuse_bytes)),
      el('td', { class: 'num' }, count(t.goroutines)),
      el('td', {}, (t.findings || []).length
        ? el('ul', { class: 'frame-list' }, ...t.findings.map((f) => el('li', {}, el('b', {}, f.pattern), ' at ', site(f.site))))
        : '–'));
  });
}

// ---- navigation ---------------------------------------------------------------------------

function initialView(agent) {
  const h = location.hash.replace(/^#/, '');
  if (VIEWS.includes(h) && (h === 'targets') === agent) return h;
  return agent ? 'targets' : 'flame';
}

function openView(view, refetch = true) {
  const before = apiUrl();
  state.view = view;
  for (const b of document.querySelectorAll('nav [data-view]')) b.setAttribute('aria-selected', String(b.dataset.view === view));
  for (const s of document.querySelectorAll('section.view')) s.hidden = s.dataset.view !== view;
  if (location.hash.slice(1) !== view) history.replaceState(null, '', '#' + view);
  if (view === 'flame') flame.shown();
  if (view === 'diff') diffFlame.shown();
  if (view === 'timelines') timelines.shown();
  if (state.data && state.data.mode !== 'agent') {
    if (view === 'flame') renderFlame();
    if (view === 'groups') renderGroups();
    if (view === 'diff') renderDiff();
  }
  if (refetch && apiUrl() !== before) poll();
}

function wire() {
  for (const b of document.querySelectorAll('nav [data-view]')) b.addEventListener('click', () => openView(b.dataset.view));
  for (const b of document.querySelectorAll('[data-kind]')) {
    b.addEventListener('click', () => {
      if (state.kind === b.dataset.kind) return;
      const before = apiUrl();
      state.kind = b.dataset.kind;
      flame.zoomPath = [];
      if (state.data) renderFlame();
      if (apiUrl() !== before) poll();
    });
  }
  $('flame-search').addEventListener('input', (e) => flame.search(e.target.value.trim()));
  $('flame-reset').addEventListener('click', () => flame.resetZoom());
  $('groups-filter').addEventListener('input', () => state.data && renderGroups());
  $('diff-base').addEventListener('change', (e) => {
    state.diffBase = e.target.value;
    if (state.data) renderDiff();
    poll();
  });
  let resizing = null;
  window.addEventListener('resize', () => {
    clearTimeout(resizing);
    resizing = setTimeout(() => { flame.resize(); diffFlame.resize(); timelines.resize(); }, 150);
  });
}

start();
