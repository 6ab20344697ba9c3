// A flamegraph (d3-flame-graph) that is given a whole new tree every tick and keeps what the
// user did: the zoomed frame (as the path of names from the root, found again in the new tree)
// and the search term. Beside it, the same tree as a table of functions, so that what the
// flamegraph shows is text in the document too.

import flamegraph, { colorMapper } from 'd3-flame-graph';
import { select } from 'd3-selection';
import { el, patchRows, pct, signed } from './util.js';

const TRANSITION_MS = 300;

export class FlameView {
  /**
   * @param {HTMLElement} container  where the SVG goes
   * @param {object} o  {format(value) -> text, differential, details: element for hover text,
   *                     onSearch(matches, sum, total)}
   */
  constructor(container, o) {
    this.container = container;
    this.o = o;
    this.chart = null;
    this.tree = null;
    this.signature = '';
    this.zoomPath = [];
    this.term = '';
    this.renders = 0;
  }

  /** Shows `tree` (a Node, or null), keeping zoom and search. Nothing is redrawn if the tree
   *  is the one already shown; while the container is hidden the tree waits for `shown()`. */
  render(tree) {
    const signature = tree ? JSON.stringify(tree) : '';
    if (signature === this.signature && this.chart) return;
    this.signature = signature;
    this.tree = tree;
    this.draw();
  }

  /** The container became visible: draw what is pending, at its width now. */
  shown() {
    if (!this.chart) this.draw();
    else this.resize();
  }

  resize() {
    const w = this.width();
    if (this.chart && w && w !== this.chart.width()) {
      this.chart.width(w);
      this.draw();
    }
  }

  width() {
    return Math.floor(this.container.clientWidth);
  }

  draw() {
    const tree = this.tree;
    if (!tree) {
      if (this.chart) this.chart.destroy();
      this.chart = null;
      this.container.replaceChildren();
      this.mark();
      return;
    }
    const w = this.width();
    if (!w) return; // hidden: drawn when shown
    // The tree is drawn from a copy: the chart marks its nodes (hidden, faded) as it zooms.
    const data = structuredClone(tree);
    const found = applyZoom(data, this.zoomPath);
    if (!this.chart) {
      this.chart = this.make(w);
      select(this.container).datum(data).call(this.chart);
    } else {
      this.chart.height(null); // a deeper tree gets a taller chart
      this.chart.update(data);
    }
    if (this.term) this.chart.search(this.term);
    this.renders++;
    this.mark(found);
  }

  make(w) {
    const o = this.o;
    const total = () => (this.tree ? this.tree.value : 0);
    const chart = flamegraph()
      .width(w)
      .cellHeight(18)
      .inverted(true) // the root on top, as pprof draws it: a new tick's deeper stacks grow down
      .transitionDuration(TRANSITION_MS)
      .minFrameSize(0)
      .sort(true)
      .setSearchMatch(searchMatch)
      .setLabelHandler((d) => {
        const v = d.data.value;
        let text = `${d.data.name}: ${o.format(v)} (${pct(v, total())})`;
        if (o.differential) text += `, ${signed(d.data.delta || 0, o.format)} since the base`;
        return text;
      })
      .setSearchHandler((matches, sum, all) => o.onSearch && o.onSearch(matches.length, sum, all))
      .onClick((d) => {
        this.zoomPath = d.ancestors().reverse().map((n) => n.data.name);
        this.mark(this.zoomPath.length);
      });
    if (o.details) chart.setDetailsElement(o.details);
    if (o.differential) chart.setColorMapper(colorMapper.differentialColorMapper);
    return chart;
  }

  search(term) {
    this.term = term;
    if (this.chart) {
      if (term) this.chart.search(term);
      else this.chart.clear();
    }
    this.mark();
  }

  resetZoom() {
    this.zoomPath = [];
    if (this.chart) this.chart.resetZoom();
    this.mark();
  }

  /** State the tests (and a curious user in the inspector) can read off the element. */
  mark(found) {
    const d = this.container.dataset;
    d.renders = String(this.renders);
    d.zoom = this.zoomPath.join(' > ');
    if (found !== undefined) d.zoomFound = String(found);
    d.search = this.term;
  }
}

/** Marks the nodes of `data` as d3-flame-graph's own zoom does (ancestors faded, their other
 *  children hidden) along the path of names; returns how many names of the path were found. */
function applyZoom(data, path) {
  if (path.length < 2 || data.name !== path[0]) return path.length ? 1 : 0;
  let node = data;
  let depth = 1;
  for (; depth < path.length; depth++) {
    const next = (node.children || []).find((c) => c.name === path[depth]);
    if (!next) break;
    node.fade = true;
    for (const sibling of node.children) if (sibling !== next) sibling.hide = true;
    node = next;
  }
  return depth;
}

/** The search box takes a regular expression, case-insensitive; what is not one (`main.(`) is
 *  looked for as plain text instead of throwing. */
function searchMatch(d, term) {
  if (!term) return false;
  const name = d.data.name || '';
  try {
    return new RegExp(term, 'i').test(name);
  } catch {
    return name.toLowerCase().includes(term.toLowerCase());
  }
}

/** Per function name over the whole tree: self (its own value, minus its children's) and
 *  total (counted once per stack even where it recurses), for `value` and, in a differential
 *  tree, `delta`. The root ("total") is not a function. */
export function functionTable(tree) {
  const rows = new Map();
  const onPath = new Map();
  const visit = (n, isRoot) => {
    const kids = n.children || [];
    const childValue = kids.reduce((s, c) => s + (c.value || 0), 0);
    const childDelta = kids.reduce((s, c) => s + (c.delta || 0), 0);
    if (!isRoot) {
      let r = rows.get(n.name);
      if (!r) rows.set(n.name, (r = { name: n.name, self: 0, total: 0, selfDelta: 0, totalDelta: 0 }));
      r.self += Math.max(0, (n.value || 0) - childValue);
      r.selfDelta += (n.delta || 0) - childDelta;
      if (!onPath.get(n.name)) {
        r.total += n.value || 0;
        r.totalDelta += n.delta || 0;
      }
      onPath.set(n.name, (onPath.get(n.name) || 0) + 1);
    }
    for (const c of kids) visit(c, false);
    if (!isRoot) onPath.set(n.name, onPath.get(n.name) - 1);
  };
  if (tree) visit(tree, true);
  return [...rows.values()];
}

/** Fills the top table: the functions with the most self value, then total. */
export function fillTopTable(tbody, tree, format, onPick, limit = 40) {
  const total = tree ? tree.value : 0;
  const rows = functionTable(tree)
    .sort((a, b) => b.self - a.self || b.total - a.total || a.name.localeCompare(b.name))
    .slice(0, limit)
    .map((r) => ({ ...r, of: total, unit: format(1) }));
  patchRows(tbody, rows, (r) => r.name, (r) => el('tr', { onclick: () => onPick(r.name), title: 'search for this function' },
    el('td', { class: 'num' }, format(r.self)),
    el('td', { class: 'num' }, pct(r.self, total)),
    el('td', { class: 'num' }, format(r.total)),
    el('td', { class: 'num' }, pct(r.total, total)),
    el('td', { class: 'mono' }, r.name)));
}

/** Fills the diff table: the functions whose own value grew most (then shrank least). */
export function fillDiffTable(tbody, tree, format, onPick, limit = 40) {
  const rows = functionTable(tree)
    .filter((r) => r.selfDelta !== 0 || r.totalDelta !== 0)
    .sort((a, b) => b.selfDelta - a.selfDelta || b.totalDelta - a.totalDelta || a.name.localeCompare(b.name))
    .slice(0, limit);
  const cls = (v) => (v > 0 ? 'num grow' : v < 0 ? 'num shrink' : 'num');
  patchRows(tbody, rows, (r) => r.name, (r) => el('tr', { onclick: () => onPick(r.name), title: 'search for this function' },
    el('td', { class: cls(r.selfDelta) }, signed(r.selfDelta, format)),
    el('td', { class: cls(r.totalDelta) }, signed(r.totalDelta, format)),
    el('td', { class: 'num' }, format(r.total)),
    el('td', { class: 'mono' }, r.name)));
}
