// --flamegraph FILE.html: one self-contained page (no network) drawing outstanding bytes by stack with d3-flame-graph
// and the d3 modules it needs, inlined: zoom by clicking, search by name, hover for bytes and objects.

import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { StackWeights } from './stack-exports.js';

const require = createRequire(import.meta.url);

/** d3-flame-graph's UMD build reads these from the global d3, in this order (each extends d3 with what follows needs). */
const D3_MODULES = ['d3-array', 'd3-color', 'd3-interpolate', 'd3-format', 'd3-time', 'd3-time-format', 'd3-scale', 'd3-dispatch', 'd3-timer', 'd3-selection', 'd3-ease', 'd3-transition', 'd3-hierarchy'];

/** A file of an installed package (its "exports" hide package.json: walk up from its entry to the package root). */
function moduleFile(pkg: string, file: string): string {
  let dir = dirname(require.resolve(pkg));
  while (!existsSync(join(dir, 'package.json')) || !dir.endsWith(pkg)) {
    const up = dirname(dir);
    if (up === dir) throw new Error(`cannot find the ${pkg} package`);
    dir = up;
  }
  return readFileSync(join(dir, file), 'utf8');
}

interface FlameNode {
  name: string;
  value: number;
  objects: number;
  children: FlameNode[];
}

/** The stacks as the nested {name, value, children} d3-flame-graph draws; value is a node's total bytes. */
export function flameTree(w: StackWeights): FlameNode {
  const root: FlameNode = { name: 'all outstanding', value: 0, objects: 0, children: [] };
  for (const s of w) {
    let node = root;
    node.value += s.bytes;
    node.objects += s.objects;
    for (const f of s.frames) {
      let child = node.children.find((c) => c.name === f);
      if (!child) node.children.push((child = { name: f, value: 0, objects: 0, children: [] }));
      child.value += s.bytes;
      child.objects += s.objects;
      node = child;
    }
  }
  return root;
}

/** A script's text inside <script>: no "</script" can end it early. */
const inline = (js: string) => js.replace(/<\/script/gi, '<\\/script');

export function flamegraphHtml(w: StackWeights, title: string): string {
  const d3 = D3_MODULES.map((m) => inline(moduleFile(m, `dist/${m}.min.js`))).join('\n');
  const fg = inline(moduleFile('d3-flame-graph', 'dist/d3-flamegraph.umd.min.js'));
  const css = moduleFile('d3-flame-graph', 'dist/d3-flamegraph.css');
  const data = JSON.stringify(flameTree(w)).replace(/</g, '\\u003c');
  const esc = (s: string) => s.replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title>
<style>${css}
body { font-family: Verdana, sans-serif; margin: 16px; } #bar { margin-bottom: 8px; } #details { min-height: 1.4em; color: #444; margin-top: 8px; }</style>
</head><body>
<h3>${esc(title)}</h3>
<div id="bar"><input id="term" placeholder="search a function" size="32"> <button id="search">search</button> <button id="reset">reset zoom</button></div>
<div id="chart"></div><div id="details"></div>
<script>${d3}</script>
<script>${fg}</script>
<script>
const data = ${data};
const fmt = (n) => n >= 1048576 ? (n / 1048576).toFixed(1) + ' MiB' : n >= 1024 ? (n / 1024).toFixed(1) + ' KiB' : n + ' B';
const describe = (d) => d.data.name + ': ' + fmt(d.value) + ' outstanding in ' + d.data.objects + ' objects (' + (100 * d.value / data.value).toFixed(1) + '%)';
const tip = flamegraph.tooltip.defaultFlamegraphTooltip().html((d) => describe(d));
const chart = flamegraph.default().width(Math.max(600, window.innerWidth - 40)).cellHeight(18).minFrameSize(2).transitionDuration(0)
  .setLabelHandler(describe).setDetailsElement(document.getElementById('details')).tooltip(tip);
d3.select('#chart').datum(data).call(chart);
document.getElementById('search').onclick = () => chart.search(document.getElementById('term').value);
document.getElementById('term').onkeydown = (e) => { if (e.key === 'Enter') chart.search(e.target.value); };
document.getElementById('reset').onclick = () => chart.resetZoom();
</script>
</body></html>
`;
}
