// The plain text report: what a person reads in a terminal log or a ticket.

import { describeFilter } from '../engine/filter.js';
import { fit, visible, fmtAge, fmtBytes, fmtCount, fmtRate, sparkline, table, type Column } from './format.js';
import { textWidth, wrapText } from '../output.js';
import type { Report, SiteReport } from './model.js';

export function describeSource(r: Report): string {
  const s = r.source;
  if (s.kind === 'replay') return `replay ${visible(s.path ?? '-')} (${s.format ?? '?'}${s.recordedWith ? `, recorded live with ${s.recordedWith}` : ''})`;
  return `live${s.host ? ` on ${visible(s.host)} (ssh)` : ''}, ${s.backend ?? '?'}${s.mode ? ` ${s.mode}` : ''}${s.version ? ` (${visible(s.version)})` : ''}`;
}

export function totalsLine(r: Report): string {
  const t = r.totals;
  return [
    `lines ${fmtCount(t.lines)}`,
    `events ${fmtCount(t.events)}`,
    `allocs ${fmtCount(t.allocs)}`,
    `frees ${fmtCount(t.frees)} (matched ${fmtCount(t.matchedFrees)}, unknown ${fmtCount(t.unknownFrees)})`,
    `missed frees ${fmtCount(t.missedFrees)}`,
    `lost ${fmtCount(t.lostEvents)}`,
    `bad lines ${fmtCount(t.badLines)}`,
  ].join('  ');
}

/** The cache column: the main cache, "+N" when the function's objects are in N more (one label per size). */
export function cacheLabel(s: Pick<SiteReport, 'cache' | 'caches'>, width = 16): string {
  const more = (s.caches?.length ?? 1) - 1;
  if (more <= 0) return fit(s.cache || '-', width);
  const tail = ` +${more}`;
  return fit(s.cache, width - tail.length) + tail;
}

/** The site table's columns: a narrow terminal loses the trend, the cache, the age and the rate, in that order. */
function siteColumns(fnWidth: number): Column<SiteReport>[] {
  return [
    { head: 'FUNCTION', width: fnWidth, cell: (s) => fit(s.function, fnWidth) },
    { head: 'CACHE', width: 16, drop: 2, cell: (s) => fit(cacheLabel(s), 16) },
    { head: 'OUTSTAND', width: 9, right: true, cell: (s) => `${s.lowerBound ? '≥' : ''}${fmtCount(s.outstanding)}` },
    { head: 'BYTES', width: 10, right: true, cell: (s) => fmtBytes(s.outstandingBytes) },
    { head: 'OLDEST', width: 8, right: true, drop: 3, cell: (s) => fmtAge(s.oldestAgeSec) },
    { head: 'GROWTH/m', width: 8, right: true, drop: 4, cell: (s) => fmtRate(s.growthPerMin) },
    { head: ' TREND', width: 13, drop: 1, cell: (s) => ' ' + sparkline(s.series, 12) },
    { head: 'VERDICT', width: 8, cell: (s) => (s.boundedLifetimeSec !== undefined ? `bounded (~${fmtAge(s.boundedLifetimeSec)})` : s.verdict) },
  ];
}

/** Rows of the site table in a text report without --top. */
const TEXT_ROWS = 200;

export function renderText(r: Report, width = textWidth()): string {
  const out: string[] = [];
  const dur = r.span.lastTs - r.span.firstTs;
  out.push(`kleak — ${describeSource(r)}: ${dur.toFixed(2)} s of trace (${r.span.firstTs.toFixed(3)} → ${r.span.lastTs.toFixed(3)})`);
  out.push(`filter: ${describeFilter(r.filter)}${r.minAgeSec > 0 ? `, older than ${r.minAgeSec}s` : ''}`);
  out.push(totalsLine(r));
  out.push(`outstanding: ${fmtCount(r.totals.outstanding)} allocations, ${fmtBytes(r.totals.outstandingBytes)} at ${fmtCount(r.siteCount)} call site${r.siteCount === 1 ? '' : 's'}`);
  for (const n of r.notices) out.push(`${n.severity === 'dataLoss' ? 'LOST DATA' : n.severity === 'warning' ? 'warning' : 'note'}: ${n.text}`);
  out.push('');
  if (r.sites.length === 0) {
    // An all-clear needs data behind it: not when most lines could not be read, nor when nothing was allocated.
    const unreadable = r.totals.badLines > 0 && r.totals.badLines >= r.totals.events;
    out.push(
      unreadable
        ? `No answer: ${fmtCount(r.totals.badLines)} of the lines could not be read and only ${fmtCount(r.totals.events)} events could; check --format (kleak --help lists what it reads).`
        : r.totals.allocs === 0 && r.source.kind === 'replay'
          ? 'No allocations in this trace matched: nothing to pair.'
          : r.minAgeSec > 0
            ? `No outstanding allocations older than ${r.minAgeSec}s.`
            : 'No outstanding allocations: every traced allocation was freed.',
    );
    return wrapText(out.join('\n') + '\n', width);
  }
  // A text report is read by a person: the first TEXT_ROWS sites unless --top says otherwise (JSON keeps all).
  const shown = r.sites.slice(0, TEXT_ROWS);
  const fnWidth = Math.min(32, shown.reduce((w, s) => Math.max(w, s.function.length), 8));
  out.push(...table(siteColumns(fnWidth), shown, width));
  if (r.siteCount > shown.length) out.push(`… ${r.siteCount - shown.length} more call sites (--top N shows N; --json has all)`);
  if (r.modules?.length) out.push('by module: ' + r.modules.map((m) => `${m.module === 'the kernel itself' ? m.module : `[${visible(m.module)}]`} ${fmtBytes(m.outstandingBytes)} in ${fmtCount(m.outstanding)}${m.growingSites ? ` (${m.growingSites} growing)` : ''}`).join(' · '));
  if (r.cgroups?.length) {
    const more = r.cgroups.length > 6 ? ` · … ${r.cgroups.length - 6} more (--json has all)` : '';
    out.push('by memory cgroup: ' + r.cgroups.slice(0, 6).map((c) => `${visible(c.cgroup)} ${fmtBytes(c.outstandingBytes)} in ${fmtCount(c.outstanding)}`).join(' · ') + more);
  }
  for (const s of r.sites.slice(0, 3)) {
    out.push('');
    out.push(`${visible(s.function)} (${visible(s.callSite)}): ${fmtCount(s.outstanding)} outstanding, ${fmtBytes(s.outstandingBytes)}; ${fmtCount(s.allocs)} allocated, ${fmtCount(s.frees)} freed; oldest ${fmtAge(s.oldestAgeSec)}; ${s.verdict}`);
    if (s.boundedLifetimeSec !== undefined) out.push(`  bounded (objects live about ${fmtAge(s.boundedLifetimeSec)}): every object it allocated before that was freed, and its count since is not rising; a population that fills up to its lifetime, not a leak`);
    if (s.foundFree) out.push(`  ${fmtCount(s.foundFree)} more it allocated were found free in their slab at the end (freed through kfree_rcu batches, unseen by this backend): not counted`);
    if (s.unseenFrees === 'rcu') out.push(`  not seen freed (freed by RCU batching): its objects are freed with kfree_rcu, whose batches no kmem tracepoint shows; --backend kernel sees them`);
    else if (s.missedFrees > 0) out.push(`  not seen freed: ${s.missedFrees} of its pointers were allocated again while outstanding, so they were freed by a path the trace does not show (kfree_rcu batching, bulk frees); --backend kernel sees kfree_rcu batches`);
    if (s.possiblePhantoms > 0) out.push(`  ${s.possiblePhantoms} of them predate lost events and may be phantoms`);
    if (s.caches) out.push(`  in ${s.caches.map((c) => `${visible(c.cache)} (${fmtCount(c.outstanding)})`).join(', ')}`);
    if (s.cgroups) out.push(`  allocated by tasks in ${s.cgroups.map((c) => `${visible(c.cgroup)} (${fmtCount(c.outstanding)})`).join(', ')}`);
    if (s.stacksSampled !== undefined) out.push(`  stacks of ${fmtCount(s.stacksSampled)} of its ${fmtCount(s.outstanding)} objects were recorded (sampled): each stack's count is an estimate (≈)`);
    for (const st of s.stacks.slice(0, 3)) out.push(`  ${st.sampled !== undefined ? '≈' : ''}${fmtCount(st.outstanding)} × ${st.frames.slice(0, 8).map(visible).join(' ← ')}${st.sampled !== undefined ? ` (${fmtCount(st.sampled)} sampled)` : ''}`);
    for (const p of s.samples.slice(0, 3)) {
      out.push(`  ${p.ptr}  age ${fmtAge(p.ageSec)}${p.pid !== undefined ? `  pid ${p.pid}` : ''}${p.comm ? ` ${visible(p.comm)}` : ''}${p.bytesReq !== undefined ? `  ${p.bytesReq} bytes requested` : ''}`);
    }
  }
  if (r.badLineSamples.length > 0) {
    out.push('');
    out.push(`malformed lines: ${r.badLineSamples.slice(0, 5).map((b) => `line ${b.line} (${visible(b.reason)})`).join(', ')}${r.totals.badLines > 5 ? ', …' : ''}`);
  }
  return wrapText(out.join('\n') + '\n', width);
}
