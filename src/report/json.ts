// The stable JSON report (docs/design.md "The JSON report"); other tools and kleak's tests read it.

import type { Report } from './model.js';

export interface JsonReport {
  kleak: 1;
  source: Report['source'];
  filter: Report['filter'];
  minAgeSec: number;
  span: Report['span'];
  totals: Report['totals'];
  sites: Report['sites'];
  modules: Report['modules'];
  cgroups?: Report['cgroups'];
  siteCount: number;
  notices: Report['notices'];
  badLines: Report['badLineSamples'];
  series: Report['series'];
}

export function toJsonReport(r: Report): JsonReport {
  return {
    kleak: 1,
    source: r.source,
    filter: r.filter,
    minAgeSec: r.minAgeSec,
    span: r.span,
    totals: r.totals,
    sites: r.sites,
    modules: r.modules,
    ...(r.cgroups ? { cgroups: r.cgroups } : {}),
    siteCount: r.siteCount,
    notices: r.notices,
    badLines: r.badLineSamples,
    series: r.series,
  };
}

export function renderJson(r: Report): string {
  return JSON.stringify(toJsonReport(r), null, 2) + '\n';
}
