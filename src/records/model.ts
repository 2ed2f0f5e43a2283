// Records the kernel keeps (kmemleak reports, /proc/allocinfo, slabinfo dumps), read as gauges: each reading gives
// per-site counts at a time; the same series and verdict code as traced sites judges them (DESIGN.md "Allocators
// and evidence"). Pure: readings in, a report out.

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

export class RecordsModel {
  private readonly times: number[] = [];
  private readonly sites = new Map<string, { last: SiteCount; counts: number[]; bytes: number[] }>();

  constructor(private readonly thresholds: VerdictThresholds = DEFAULT_THRESHOLDS) {}

  add(ts: number, r: Reading): void {
    const i = this.times.length;
    this.times.push(ts);
    for (const s of r.sites) {
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
