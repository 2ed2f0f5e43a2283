// kleak diff A B: two captures of kernel memory (a healthy host and a sick one, or before and after) → what differs,
// ranked by the bytes each difference explains: slab caches, vmalloc callers, meminfo lines (watch captures), call
// sites and modules (live recordings and reports). Each side may be a watch recording (--record), a live recording
// (NDJSON), or a --json report of either.

import { CaptureTooLarge, readCaptureText } from '../sources/input.js';
import { isWatchSample, WatchModel, type WatchReport } from '../engine/watch.js';
import { InputError } from '../errors.js';
import type { JsonReport } from '../report/json.js';
import type { CensusReport } from '../census/model.js';
import { isCensusText, readCensus } from './census.js';
import { fit, fmtBytes, fmtCount } from '../report/format.js';

export interface DiffRow {
  kind: 'cache' | 'vmalloc' | 'meminfo' | 'site' | 'module' | 'group' | 'cgroup';
  name: string;
  a: number;
  b: number;
  /** b − a: bytes; objects for census groups. */
  delta: number;
  /** Share of the total difference of its kind this row explains, 0..1. */
  share: number;
}

export interface DiffReport {
  kleak: 1;
  kind: 'diff';
  a: string;
  b: string;
  rows: DiffRow[];
}

type Side = { watch?: WatchReport; live?: JsonReport; census?: CensusReport };

async function load(path: string): Promise<Side> {
  let text: string;
  try {
    text = readCaptureText(path);
  } catch (err) {
    // Too large to be a capture: a trace, streamed through replay (bounded), or one sentence saying what it is not.
    if (!(err instanceof CaptureTooLarge)) throw err;
    return replaySide(path);
  }
  // A census (recording or report): its last round's groups.
  if (isCensusText(text)) return { census: readCensus(path, text).report };
  const trimmed = text.trimStart();
  // A --json report: one JSON document.
  if (trimmed.startsWith('{') && !trimmed.slice(0, trimmed.indexOf('\n') >= 0 ? trimmed.indexOf('\n') : undefined).trim().endsWith('}')) {
    try {
      const doc = JSON.parse(text) as { kind?: string; sites?: unknown; caches?: unknown };
      if (doc.kind === 'watch' && Array.isArray(doc.caches)) return { watch: doc as WatchReport };
      if (Array.isArray(doc.sites)) return { live: doc as JsonReport };
    } catch {
      // not one document: a recording, below
    }
  }
  const first = trimmed.split('\n', 1)[0] ?? '';
  if (/"what":"watch"|"kind":"watch-sample"/.test(first) || /"kind":"watch-sample"/.test(text.slice(0, 65536))) {
    const model = new WatchModel();
    for (const line of text.split('\n')) {
      if (!line.includes('"watch-sample"')) continue;
      try {
        const s = JSON.parse(line) as unknown;
        if (isWatchSample(s)) model.add(s);
      } catch {
        // a line a kill cut short: the samples before it stand
      }
    }
    return { watch: model.report({}) };
  }
  return replaySide(path);
}

async function replaySide(path: string): Promise<Side> {
  try {
    const { replayToReport } = await import('./replay.js');
    const { toJsonReport } = await import('../report/json.js');
    return { live: toJsonReport((await replayToReport({ path, format: 'auto', filter: {}, report: {} })).report) };
  } catch (err) {
    throw new InputError(`${path} is neither a kleak watch capture nor a trace or recording kleak reads: ${(err as Error).message}`);
  }
}

function rank(kind: DiffRow['kind'], a: Map<string, number>, b: Map<string, number>): DiffRow[] {
  const rows: DiffRow[] = [];
  for (const name of new Set([...a.keys(), ...b.keys()])) {
    const x = a.get(name) ?? 0;
    const y = b.get(name) ?? 0;
    if (x !== y) rows.push({ kind, name, a: x, b: y, delta: y - x, share: 0 });
  }
  const total = rows.reduce((n, r) => n + Math.abs(r.delta), 0);
  for (const r of rows) r.share = total > 0 ? Math.abs(r.delta) / total : 0;
  return rows.sort((p, q) => Math.abs(q.delta) - Math.abs(p.delta));
}

export async function diff(pathA: string, pathB: string, top = 10): Promise<DiffReport> {
  const [a, b] = [await load(pathA), await load(pathB)];
  const rows: DiffRow[] = [];
  if (a.watch && b.watch) {
    const caches = (w: WatchReport) => new Map(w.caches.map((c) => [c.name, c.activeBytes]));
    const vmalloc = (w: WatchReport) => new Map((w.vmallocCallers ?? []).map((v) => [`${v.caller}${v.module ? ` [${v.module}]` : ''} (${v.type})`, v.bytes]));
    const mem = (w: WatchReport) => new Map(w.meminfo.map((m) => [m.name, m.kb * 1024]));
    const memcgs = (w: WatchReport) => new Map((w.memcgs ?? []).map((m) => [`${m.path}${m.container ? ` (${m.container})` : ''}`, m.bytes]));
    rows.push(...rank('meminfo', mem(a.watch), mem(b.watch)).slice(0, top), ...rank('cache', caches(a.watch), caches(b.watch)).slice(0, top), ...rank('vmalloc', vmalloc(a.watch), vmalloc(b.watch)).slice(0, top), ...rank('cgroup', memcgs(a.watch), memcgs(b.watch)).slice(0, top));
  } else if (a.live && b.live) {
    const sites = (r: JsonReport) => new Map(r.sites.map((s) => [`${s.function} (${s.allocator ?? 'slab'}, ${s.cache})`, s.outstandingBytes]));
    const modules = (r: JsonReport) => new Map((r.modules ?? []).map((m) => [m.module, m.outstandingBytes]));
    rows.push(...rank('module', modules(a.live), modules(b.live)).slice(0, top), ...rank('site', sites(a.live), sites(b.live)).slice(0, top));
  } else if (a.census && b.census) {
    // Groups are told apart by their key (named pointers and places, or whole shape), counted in objects: a census
    // of the sick host beside its healthy twin, or of one host before and after, ranks what appeared.
    const caches = (r: CensusReport) => new Map(r.caches.map((c) => [c.cache, c.allocated * c.objectSize]));
    const groups = (r: CensusReport) => {
      const m = new Map<string, number>();
      for (const c of r.caches) for (const g of c.groups) m.set(`${g.label} (${c.cache})\0${g.key}`, (m.get(`${g.label} (${c.cache})\0${g.key}`) ?? 0) + g.count);
      return m;
    };
    rows.push(...rank('cache', caches(a.census), caches(b.census)).slice(0, top), ...rank('group', groups(a.census), groups(b.census)).slice(0, top).map((r) => ({ ...r, name: r.name.slice(0, r.name.indexOf('\0')) })));
  } else {
    throw new InputError(`${pathA} and ${pathB} are not the same kind of capture (watch captures, traces or recordings, censuses): kleak diff compares like with like.`);
  }
  return { kleak: 1, kind: 'diff', a: pathA, b: pathB, rows };
}

export function renderDiff(d: DiffReport): string {
  const out = [`kleak diff — ${d.a} → ${d.b}`];
  const kinds: [DiffRow['kind'], string][] = [['meminfo', 'KERNEL MEMORY'], ['cache', 'SLAB CACHE'], ['vmalloc', 'VMALLOC CALLER'], ['module', 'MODULE'], ['site', 'CALL SITE'], ['group', 'CENSUS GROUP (objects)'], ['cgroup', 'MEMORY CGROUP (kernel memory)']];
  for (const [kind, title] of kinds) {
    const rows = d.rows.filter((r) => r.kind === kind);
    if (rows.length === 0) continue;
    out.push('', [title.padEnd(40), 'A'.padStart(10), 'B'.padStart(10), 'B−A'.padStart(11), ' EXPLAINS'].join(' '));
    const fmt = kind === 'group' ? fmtCount : fmtBytes;
    for (const r of rows) {
      out.push([fit(r.name, 40).padEnd(40), fmt(r.a).padStart(10), fmt(r.b).padStart(10), `${r.delta >= 0 ? '+' : '-'}${fmt(Math.abs(r.delta))}`.padStart(11), ` ${(100 * r.share).toFixed(0).padStart(3)}%`].join(' '));
    }
  }
  if (d.rows.length === 0) out.push('', 'No difference.');
  return out.join('\n') + '\n';
}
