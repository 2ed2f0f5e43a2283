// The census report as text for people: per cache, its counts, what was not walked, and its groups ranked; with
// several rounds, each group's change and verdict. Names are escaped (visible): they come from the kernel.

import type { CensusReport, CensusSite } from './model.js';
import { runs } from './shapes.js';
import { fit, fmtBytes, fmtCount, visible } from '../report/format.js';

export function renderCensus(r: CensusReport, top: number): string {
  const out: string[] = [];
  const several = r.rounds > 1;
  for (const c of r.caches) {
    out.push(`kleak census — ${visible(c.cache)} on ${visible(r.source.host)} at ${r.time}: ${fmtCount(c.allocated)} allocated, ${fmtCount(c.free)} free of ${fmtCount(c.total)} objects in ${fmtCount(c.slabs)} slabs (${c.objectSize} B each), walked in ${c.seconds.toFixed(2)} s`);
    if (several) out.push(`${r.rounds} censuses over ${r.spanSec} s; each group's verdict is read from its count at each`);
    const u = c.unwalked;
    const gaps = [
      u.tornSlabs ? `${u.tornSlabs} slabs changed under the walk` : '',
      u.unreadableSlabs ? `${u.unreadableSlabs} slabs could not be read` : '',
      u.bigSlabs ? `${u.bigSlabs} slabs of more than 1024 objects not walked` : '',
      u.cpuSlabsUnmatched ? `${u.cpuSlabsUnmatched} CPU slabs whose CPU was not found (their free objects count as allocated)` : '',
      u.objectsNotCopied ? `${u.objectsNotCopied} objects counted but not grouped` : '',
      u.sheaves ? 'objects in per-CPU sheaves and the barn count as allocated (not walked yet)' : '',
    ].filter((g) => g !== '');
    if (gaps.length) out.push(`not walked: ${gaps.join('; ')}`);
    out.push('a best-effort snapshot: the walk takes no locks, so objects allocated or freed meanwhile may be counted either way');
    out.push('');
    const sites = r.sites.filter((s) => s.cache === c.cache);
    const head = `${'GROUP'.padEnd(48)} ${'OBJECTS'.padStart(9)} ${'BYTES'.padStart(10)} ${'SHARE'.padStart(6)}`;
    out.push(several ? `${head} ${'CHANGE'.padStart(9)} ${'/MIN'.padStart(8)}  VERDICT` : head);
    for (const s of sites.slice(0, top)) {
      const row = `${fit(s.label, 48).padEnd(48)} ${fmtCount(s.outstanding).padStart(9)} ${fmtBytes(s.outstandingBytes).padStart(10)} ${`${((100 * s.outstanding) / Math.max(1, c.allocated)).toFixed(1)}%`.padStart(6)}`;
      out.push(several ? `${row} ${signed(s.outstanding - s.series[0]!).padStart(9)} ${signed(s.growthPerMin).padStart(8)}  ${s.verdict}` : row);
    }
    if (sites.length > top) out.push(`… ${sites.length - top} more groups (--top N shows N; --json has them)`);
    for (const s of sites.slice(0, 3)) out.push('', ...detail(s));
    out.push('');
  }
  const k = r.cost;
  out.push(`census cost: ${k.seconds.toFixed(2)} s (slab scan ${k.slabScanSeconds.toFixed(2)} s), ${k.programRuns} program runs, the longest ${k.longestRunMs.toFixed(1)} ms, ${k.maxRssMiB} MiB${several ? ' (the last census)' : ''}`);
  if (r.groupsNotFollowed > 0) out.push(`${fmtCount(r.groupsNotFollowed)} groups past the bound of groups followed per cache have no series`);
  return out.join('\n') + '\n';
}

function detail(s: CensusSite): string[] {
  return [
    `${visible(s.label)}: ${fmtCount(s.outstanding)} objects${s.series.length > 1 ? ` (${points(s.series)})` : ''}`,
    `  shape: ${visible(runs(s.shape))}`,
    `  e.g. objects at ${s.samples.slice(0, 3).map((x) => x.ptr).join(' ')}`,
  ];
}

/** A series in a few numbers: all of a short one, the first and the last five of a long one. */
const points = (xs: readonly number[]) => (xs.length <= 8 ? xs.map(fmtCount).join(' → ') : `${fmtCount(xs[0]!)} → … → ${xs.slice(-5).map(fmtCount).join(' → ')}`);

const signed = (n: number) => (n > 0 ? `+${fmtCount(n)}` : n < 0 ? `-${fmtCount(-n)}` : '0');
