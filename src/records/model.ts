// Records the kernel keeps (kmemleak reports, /proc/allocinfo, slabinfo dumps), read as gauges: each reading gives
// per-site counts at a time; the same series and verdict code as traced sites judges them (docs/design.md "Three kinds
// of evidence"). Pure: readings in, a report out.

import { kmallocCacheSize, kmemBucketSize } from '../engine/filter.js';
import { DEFAULT_THRESHOLDS, gaugeVerdict, growthPerMinute, type Verdict, type VerdictThresholds } from '../engine/verdict.js';

/** One site in one reading. */
export interface SiteCount {
  /** What identifies the site across readings (a backtrace, a file:line, a cache name). */
  key: string;
  /** What to call it: a function, a cache. */
  label: string;
  module?: string;
  /** Where, when the record says (file:line, or the backtrace's frames). */
  where?: string;
  count: number;
  bytes: number;
}

export interface Reading {
  /** Seconds (epoch or any origin), when the record says when it was taken. */
  ts?: number;
  sites: SiteCount[];
  /** Sites of this reading counted together as OTHER_SITES (past MAX_RECORD_SITES). */
  merged?: number;
}

export interface RecordSiteReport {
  label: string;
  module?: string;
  where?: string;
  count: number;
  bytes: number;
  countPerMin: number;
  bytesPerMin: number;
  verdict: Verdict;
  /** Count at each reading. */
  series: number[];
  /** For a growing site, the live run that names who holds it (as kleak watch suggests for the same gauge). */
  next?: string;
}

export interface ModuleSummary {
  /** "the kernel itself" for sites in no module. */
  module: string;
  count: number;
  bytes: number;
  bytesPerMin: number;
  growingSites: number;
}

export interface RecordsReport {
  kleak: 1;
  kind: 'records';
  format: string;
  readings: number;
  /** Seconds between readings kleak assumed where the records say no time (--every). */
  assumedEverySec?: number;
  span: { firstTs: number; lastTs: number };
  sites: RecordSiteReport[];
  modules: ModuleSummary[];
  badLines: { file: string; line: number; reason: string }[];
  notices: string[];
}

export const KERNEL_ITSELF = 'the kernel itself';

/**
 * Distinct sites a model follows (allocinfo has ~5,000 on a large kernel; kmemleak a few hundred backtraces): past
 * this, new sites are counted together as OTHER_SITES, so a hostile or broken input of millions of distinct sites
 * keeps memory bounded (2 M allocinfo sites took 2.7 GB), and the report says how many were merged.
 */
export const MAX_RECORD_SITES = 50_000;
export const OTHER_SITES = '(other sites)';

/**
 * The sites of one reading as a reader finds them, bounded: a key seen again in the reading adds up; past
 * MAX_RECORD_SITES keys, the rest are added to one OTHER_SITES row (and counted), so that a reading of millions of
 * distinct sites holds 50,000 rows, not millions.
 */
export class SiteTally {
  private readonly rows = new Map<string, SiteCount>();
  private merged = 0;

  get size(): number {
    return this.rows.size;
  }

  has(key: string): boolean {
    return this.rows.has(key);
  }

  add(s: SiteCount): void {
    const row = this.rows.get(s.key);
    if (row) {
      row.count += s.count;
      row.bytes += s.bytes;
      return;
    }
    if (this.rows.size < MAX_RECORD_SITES) {
      this.rows.set(s.key, { ...s });
      return;
    }
    this.merged++;
    const other = this.rows.get(OTHER_SITES);
    if (other) {
      other.count += s.count;
      other.bytes += s.bytes;
    } else this.rows.set(OTHER_SITES, { key: OTHER_SITES, label: OTHER_SITES, count: s.count, bytes: s.bytes });
  }

  reading(ts: number | undefined): Reading {
    return { ...(ts !== undefined ? { ts } : {}), sites: [...this.rows.values()], ...(this.merged > 0 ? { merged: this.merged } : {}) };
  }
}

export class RecordsModel {
  private readonly times: number[] = [];
  private readonly sites = new Map<string, { last: SiteCount; counts: number[]; bytes: number[] }>();

  constructor(private readonly thresholds: VerdictThresholds = DEFAULT_THRESHOLDS) {}

  /** Most sites of one reading counted together as OTHER_SITES (see MAX_RECORD_SITES). */
  private mergedMost = 0;
  /** Sites new to the model that came after it followed MAX_RECORD_SITES: counted as OTHER_SITES too. */
  private mergedLater = 0;

  get sitesMerged(): number {
    return this.mergedMost + this.mergedLater;
  }

  add(ts: number, r: Reading): void {
    const i = this.times.length;
    this.times.push(ts);
    this.mergedMost = Math.max(this.mergedMost, r.merged ?? 0);
    for (const site of r.sites) {
      let s = site;
      if (!this.sites.has(s.key) && this.sites.size >= MAX_RECORD_SITES && s.key !== OTHER_SITES) {
        // Readings that each hold other sites: the model follows a bounded number of series too.
        this.mergedLater++;
        s = { key: OTHER_SITES, label: OTHER_SITES, count: s.count, bytes: s.bytes };
      }
      let row = this.sites.get(s.key);
      if (!row) this.sites.set(s.key, (row = { last: s, counts: new Array<number>(i).fill(0), bytes: new Array<number>(i).fill(0) }));
      if (row.counts.length > i) {
        // The same key twice in one reading (two call sites print alike): add up.
        row.counts[i]! += s.count;
        row.bytes[i]! += s.bytes;
        continue;
      }
      row.last = s;
      row.counts.push(s.count);
      row.bytes.push(s.bytes);
    }
    for (const row of this.sites.values()) {
      if (row.counts.length < i + 1) {
        row.counts.push(0); // not in this reading: none held
        row.bytes.push(0);
      }
    }
  }

  get readings(): number {
    return this.times.length;
  }

  report(format: string, extra: Pick<RecordsReport, 'badLines' | 'notices'> & { assumedEverySec?: number; top?: number }): RecordsReport {
    const sites: RecordSiteReport[] = [];
    for (const row of this.sites.values()) {
      const n = row.counts.length;
      // A site's count sits on a base (a cache of thousands moving by tens): judged above its lowest point, and a
      // rise must be a share of its size as well as a number of objects (as kleak watch judges caches).
      const { verdict, perMin } = gaugeVerdict(this.times, row.counts, this.thresholds, { share: 0.005 });
      sites.push({
        label: row.last.label,
        ...(row.last.module ? { module: row.last.module } : {}),
        ...(row.last.where ? { where: row.last.where } : {}),
        count: row.counts[n - 1] ?? 0,
        bytes: row.bytes[n - 1] ?? 0,
        countPerMin: round1(perMin),
        bytesPerMin: Math.round(growthPerMinute(this.times, row.bytes)),
        verdict,
        series: row.counts,
      });
      const last = sites[sites.length - 1]!;
      const next = last.verdict === 'growing' ? nextCommand(format, last.label) : undefined;
      if (next) last.next = next;
    }
    sites.sort((a, b) => Number(b.verdict === 'growing') - Number(a.verdict === 'growing') || b.bytesPerMin - a.bytesPerMin || b.bytes - a.bytes);
    const modules = new Map<string, ModuleSummary>();
    for (const s of sites) {
      const name = s.module ?? KERNEL_ITSELF;
      const m = modules.get(name) ?? { module: name, count: 0, bytes: 0, bytesPerMin: 0, growingSites: 0 };
      m.count += s.count;
      m.bytes += s.bytes;
      m.bytesPerMin += s.bytesPerMin;
      if (s.verdict === 'growing') m.growingSites++;
      modules.set(name, m);
    }
    return {
      kleak: 1,
      kind: 'records',
      format,
      readings: this.times.length,
      ...(extra.assumedEverySec !== undefined ? { assumedEverySec: extra.assumedEverySec } : {}),
      span: { firstTs: this.times[0] ?? 0, lastTs: this.times[this.times.length - 1] ?? 0 },
      sites: extra.top !== undefined ? sites.slice(0, extra.top) : sites,
      modules: [...modules.values()].sort((a, b) => b.growingSites - a.growingSites || b.bytesPerMin - a.bytesPerMin || b.bytes - a.bytes),
      badLines: extra.badLines,
      notices: extra.notices,
    };
  }
}

const round1 = (x: number) => Math.round(x * 10) / 10;

/**
 * The live run a growing gauge of a kernel record calls for, as kleak watch words it: a kmalloc size class by its
 * size, a named cache by name, a vmalloc caller by its stacks. Records that name call sites (kmemleak, allocinfo,
 * alloc_traces) already say where.
 */
export function nextCommand(format: string, label: string): string | undefined {
  if (format === 'slabinfo') {
    const size = kmallocCacheSize(label) ?? kmemBucketSize(label);
    return size !== undefined ? `sudo kleak live --bytes ${size}` : `sudo kleak live --cache ${label}`;
  }
  if (format === 'vmallocinfo') return 'sudo kleak live --alloc vmalloc --stacks';
  return undefined;
}
