// The timelines: one uPlot chart per quantity over the session's seconds, given the whole
// series again each tick (uPlot redraws tens of thousands of points in a few ms); the charts
// are made once and keep their size and cursor.

import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { bytes, count, duration, el } from './util.js';

const COLORS = ['#2563eb', '#dc2626', '#16a34a', '#9333ea'];

/** What is charted: a title, the value format, and series computed from a timeline row. */
const CHARTS = [
  { id: 'heap', title: 'Heap in use vs GC goal', fmt: bytes, series: [
    ['in use', (r) => r.heap_inuse], ['GC goal', (r) => r.heap_goal], ['live', (r) => r.heap_live]] },
  { id: 'goroutines', title: 'Goroutines', fmt: count, series: [['goroutines', (r) => r.goroutines]] },
  { id: 'stacks', title: 'Goroutine stack bytes', fmt: bytes, series: [['stacks', (r) => r.stack_bytes]] },
  { id: 'gc', title: 'GC cycles since attach (cumulative)', fmt: count, step: true, series: [
    ['automatic', (r) => (r.gc_cycles === null || r.gc_cycles === undefined ? null : r.gc_cycles - (r.gc_forced || 0))],
    ['forced', (r) => r.gc_forced]] },
];

export class Timelines {
  constructor(container) {
    this.container = container;
    this.plots = new Map();
    this.rows = [];
  }

  render(rows) {
    this.rows = rows || [];
    this.draw();
  }

  shown() {
    this.draw();
    this.resize();
  }

  resize() {
    for (const { plot, box } of this.plots.values()) {
      const w = box.clientWidth;
      if (w && w !== plot.width) plot.setSize({ width: w, height: plot.height });
    }
  }

  draw() {
    if (!this.container.clientWidth) return; // hidden: drawn when shown
    const xs = this.rows.map((r) => r.t_s);
    for (const c of CHARTS) {
      const data = [xs, ...c.series.map(([, f]) => this.rows.map((r) => nullable(f(r))))];
      let p = this.plots.get(c.id);
      if (!p) {
        const box = el('div', { class: 'chart', id: `chart-${c.id}`, 'data-chart': c.id });
        const title = el('h4', {}, c.title);
        this.container.append(el('div', {}, title, box));
        const plot = new uPlot(options(c, box.clientWidth || 500), data, box);
        p = { plot, box };
        this.plots.set(c.id, p);
      } else {
        p.plot.setData(data);
      }
      // The latest values as text (the legend shows those under the cursor).
      p.box.dataset.points = String(xs.length);
    }
  }
}

function nullable(v) {
  return v === undefined || v === null || Number.isNaN(v) ? null : v;
}

function options(c, width) {
  const fmtAxis = (u, vals) => vals.map((v) => c.fmt(v));
  return {
    width,
    height: 190,
    scales: { x: { time: false } },
    legend: { live: true },
    cursor: { drag: { x: true, y: false } },
    axes: [
      { values: (u, vals) => vals.map((v) => duration(v)), stroke: '#888', grid: { stroke: '#8883' } },
      { values: fmtAxis, size: 70, stroke: '#888', grid: { stroke: '#8883' } },
    ],
    series: [
      { label: 'since attach', value: (u, v) => (v === null ? '–' : duration(v)) },
      ...c.series.map(([label], i) => ({
        label,
        stroke: COLORS[i % COLORS.length],
        width: 1.5,
        value: (u, v) => (v === null ? '–' : c.fmt(v)),
        ...(c.step ? { paths: uPlot.paths.stepped({ align: 1 }) } : {}),
      })),
    ],
  };
}
