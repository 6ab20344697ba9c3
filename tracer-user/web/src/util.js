// Small helpers shared by the views: number formatting and DOM building.

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

/** 1536 -> "1.5 KiB"; null/undefined -> "–". */
export function bytes(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return '–';
  const sign = n < 0 ? '-' : '';
  let v = Math.abs(n);
  let i = 0;
  while (v >= 1024 && i < UNITS.length - 1) { v /= 1024; i++; }
  return sign + (i === 0 ? String(v) : v.toFixed(v < 10 ? 2 : 1)) + ' ' + UNITS[i];
}

/** 12345 -> "12,345". */
export function count(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return '–';
  return Math.round(n).toLocaleString('en-US');
}

/** Seconds as "1h02m", "3m05s", "12.5s". */
export function duration(s) {
  if (s === null || s === undefined || Number.isNaN(s)) return '–';
  if (s < 60) return (s < 10 ? s.toFixed(1) : Math.round(s)) + 's';
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(Math.floor(s % 60)).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

export function pct(part, whole) {
  if (!whole) return '–';
  return (100 * part / whole).toFixed(1) + '%';
}

/** A signed value: "+1.5 KiB" / "-3". */
export function signed(n, fmt) {
  return (n > 0 ? '+' : '') + fmt(n);
}

/** `el('td', {class: 'num'}, 'text', child)`: attributes, then text or nodes. */
export function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

/** A frame as Go prints it: "main.worker (/src/main.go:12)"; a string stays as it is. */
export function site(f) {
  if (!f) return '–';
  if (typeof f === 'string') return f;
  const where = f.file ? ` (${f.file}${f.line ? ':' + f.line : ''})` : '';
  return (f.function || '?') + where;
}

/** A list of frames, one per line: function and file:line. */
export function frameList(frames) {
  return el('ul', { class: 'frame-list' }, ...(frames || []).map((f) => el('li', {},
    typeof f === 'string' ? f : f.function,
    typeof f === 'string' || !f.file ? null : el('span', { class: 'file' }, ` ${f.file}:${f.line}`))));
}

/** Shows one row per item, built by `build(item)`, reusing the row already there for an item
 *  of the same key and content: a tick that changes nothing leaves the table alone, so a link
 *  or row the user is clicking is not replaced under the pointer. */
export function patchRows(tbody, items, keyOf, build) {
  const old = new Map([...tbody.rows].map((r) => [r.dataset.rowKey, r]));
  const rows = items.map((it) => {
    const key = String(keyOf(it));
    const sig = JSON.stringify(it);
    const prev = old.get(key);
    if (prev && prev.dataset.rowSig === sig) return prev;
    const row = build(it);
    row.dataset.rowKey = key;
    row.dataset.rowSig = sig;
    return row;
  });
  const same = rows.length === tbody.rows.length && rows.every((r, i) => tbody.rows[i] === r);
  if (!same) tbody.replaceChildren(...rows);
}
