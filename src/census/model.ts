// Census rounds → the census report: each group of objects is a site whose outstanding count is the group's size,
// with one point per round in its series and the verdict every other site gets (src/engine/verdict.ts): a group of
// a slow leak grows from round to round; a churning group holds level. One round gives counts and no verdict
// beyond "steady". Pure: no I/O. See docs/census.md.

import { DEFAULT_THRESHOLDS, growthPerMinute, type Verdict, verdictOf, type VerdictThresholds } from '../engine/verdict.js';
import type { CensusCache, CensusCost, CensusRound } from './session.js';

/** A group as a site of the common report shape (`outstanding` is its count now, `label` its names). */
export interface CensusSite {
  cache: string;
  /** Stable from round to round (see CensusGroup.key). */
  key: string;
  label: string;
  /** The same as label: the field name other reports use for what a site is. */
  function: string;
  outstanding: number;
  outstandingBytes: number;
  shape: string[];
  samples: { ptr: string }[];
  /** The group's count at each round (0 where it was not seen). */
  series: number[];
  verdict: Verdict;
  /** Objects a minute, least squares over the rounds. */
  growthPerMin: number;
}

export interface CensusReport {
  kleak: 1;
  evidence: 'census';
  source: { kind: 'census'; host: string };
  /** When the last round was taken. */
  time: string;
  rounds: number;
  /** Seconds from the first round to the last. */
  spanSec: number;
  /** Each round's time, seconds from the first. */
  times: number[];
  /** The last round, every group. */
  caches: CensusCache[];
  /** Groups of every cache as sites, most bytes first (growing ones first when there are several rounds). */
  sites: CensusSite[];
  /** Groups seen in some round but past the per-cache bound of groups followed (counted in no series). */
  groupsNotFollowed: number;
  cost: CensusCost;
}

/** Groups per cache followed from round to round; a cache of a million distinct shapes must not grow kleak without end. */
export const MAX_FOLLOWED_GROUPS = 5000;

interface Followed {
  cache: string;
  key: string;
  series: number[];
}

export class CensusModel {
  private readonly times: number[] = [];
  private readonly followed = new Map<string, Followed>();
  private readonly perCache = new Map<string, number>();
  private last: CensusRound | undefined;
  private notFollowed = 0;
  private t0: number | undefined;

  constructor(private readonly host: string) {}

  get rounds(): number {
    return this.times.length;
  }

  add(round: CensusRound): void {
    const t = Date.parse(round.time) / 1000;
    this.t0 ??= t;
    const index = this.times.length;
    this.times.push(t - this.t0);
    for (const c of round.caches) {
      for (const g of c.groups) {
        const id = `${c.cache}\0${g.key}`;
        let f = this.followed.get(id);
        if (!f) {
          const n = this.perCache.get(c.cache) ?? 0;
          if (n >= MAX_FOLLOWED_GROUPS) {
            this.notFollowed++;
            continue;
          }
          this.perCache.set(c.cache, n + 1);
          this.followed.set(id, (f = { cache: c.cache, key: g.key, series: [] }));
        }
        while (f.series.length < index) f.series.push(0);
        // Two groups of one key in a round (pointers into one function at different offsets) are one group.
        if (f.series.length === index + 1) f.series[index]! += g.count;
        else f.series.push(g.count);
      }
    }
    this.last = round;
  }

  report(top = Number.MAX_SAFE_INTEGER, th: VerdictThresholds = DEFAULT_THRESHOLDS): CensusReport {
    const last = this.last;
    if (!last) throw new Error('census: a report needs at least one round');
    const n = this.times.length;
    const span = n > 0 ? this.times[n - 1]! : 0;
    const sites: CensusSite[] = [];
    for (const c of last.caches) {
      const seen = new Set<string>();
      for (const g of c.groups) {
        if (seen.has(g.key)) continue;
        seen.add(g.key);
        const f = this.followed.get(`${c.cache}\0${g.key}`);
        const series = f ? [...f.series, ...Array<number>(Math.max(0, n - f.series.length)).fill(0)] : [g.count];
        const count = series[series.length - 1]!;
        const times = this.times.slice(n - series.length);
        sites.push({
          cache: c.cache, key: g.key, label: g.label, function: g.label, outstanding: count, outstandingBytes: count * c.objectSize, shape: g.shape,
          samples: g.samples.map((ptr) => ({ ptr })), series, verdict: verdictOf(series, span, 0, 0, th), growthPerMin: Math.round(growthPerMinute(times, series) * 10) / 10,
        });
      }
    }
    const rank = (s: CensusSite) => (s.verdict === 'growing' ? 1 : 0);
    sites.sort((a, b) => rank(b) - rank(a) || b.outstandingBytes - a.outstandingBytes);
    return {
      kleak: 1, evidence: 'census', source: { kind: 'census', host: this.host }, time: last.time, rounds: n, spanSec: Math.round(span * 10) / 10,
      times: this.times.map((t) => Math.round(t * 1000) / 1000), caches: last.caches, sites: sites.slice(0, top), groupsNotFollowed: this.notFollowed, cost: last.cost,
    };
  }
}
