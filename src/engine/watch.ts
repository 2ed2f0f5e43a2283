// kleak watch, the step before tracing: which slab cache grows, and is it a kmalloc size class kleak live can filter
// on. Pure: samples in, a report out; the verdict is the one the engine gives call sites (verdict.ts).

import { kmallocCacheSize } from './filter.js';
import { DEFAULT_THRESHOLDS, growthPerMinute, verdictOf, type Verdict, type VerdictThresholds } from './verdict.js';
import { KERNEL_MEMINFO, unaccountedKb, type SlabSample } from '../kernel/slabinfo.js';

export interface WatchSample {
  /** Seconds (monotonic, any origin). */
  ts: number;
  meminfo: Record<string, number>;
  slabs: SlabSample[];
}

export interface CacheReport {
  name: string;
  objSize: number;
  activeObjs: number;
  activeBytes: number;
  objsPerMin: number;
  bytesPerMin: number;
  verdict: Verdict;
  series: number[];
  /** `kleak live` filter for a kmalloc size class ("--bytes 4096"), when the cache is one. */
  liveFilter?: string;
  /** Other caches merged into this one (/sys/kernel/slab/<cache>/aliases), when known and non-zero. */
  aliases?: number;
}

export interface WatchReport {
  kleak: 1;
  kind: 'watch';
  span: { firstTs: number; lastTs: number; samples: number };
  meminfo: { name: string; kb: number; kbPerMin: number }[];
  caches: CacheReport[];
  /** Whether caches may be merged (no slab_nomerge on the kernel command line): a kmalloc-N may hold others. */
  mergedCaches: boolean | undefined;
}

export class WatchModel {
  private times: number[] = [];
  private objs = new Map<string, { size: number; series: number[] }>();
  private mem = new Map<string, number[]>();

  constructor(private readonly thresholds: VerdictThresholds = DEFAULT_THRESHOLDS) {}

  add(s: WatchSample): void {
    const i = this.times.length;
    this.times.push(s.ts);
    for (const slab of s.slabs) {
      let c = this.objs.get(slab.name);
      if (!c) this.objs.set(slab.name, (c = { size: slab.objSize, series: new Array<number>(i).fill(0) }));
      c.series.push(slab.activeObjs);
    }
    for (const c of this.objs.values()) if (c.series.length < i + 1) c.series.push(0); // a cache that went away
    const mem = { ...Object.fromEntries(KERNEL_MEMINFO.map((k) => [k, s.meminfo[k] ?? 0])), Unaccounted: unaccountedKb(s.meminfo) };
    for (const [k, v] of Object.entries(mem)) {
      const row = this.mem.get(k) ?? [];
      row.push(v);
      this.mem.set(k, row);
    }
  }

  report(o: { top?: number; aliases?: (cache: string) => number | undefined; merged?: boolean } = {}): WatchReport {
    const span = this.times.length ? this.times[this.times.length - 1]! - this.times[0]! : 0;
    const caches: CacheReport[] = [];
    for (const [name, c] of this.objs) {
      const last = c.series[c.series.length - 1] ?? 0;
      const perMin = growthPerMinute(this.times, c.series);
      // A cache's allocations and frees are not known here: the verdict is growth or not. Its count sits on a large
      // base (thousands of objects moving by tens): judged above its lowest point, and a rise must be a share of
      // its size as well as a number of objects.
      const min = Math.min(...c.series);
      const mean = c.series.reduce((a, b) => a + b, 0) / Math.max(1, c.series.length);
      const th = { ...this.thresholds, minRise: Math.max(this.thresholds.minRise, mean * 0.005) };
      const verdict = verdictOf(c.series.map((v) => v - min), span, 0, 0, th);
      const size = kmallocCacheSize(name);
      const r: CacheReport = {
        name, objSize: c.size, activeObjs: last, activeBytes: last * c.size, objsPerMin: round1(perMin), bytesPerMin: Math.round(perMin * c.size), verdict, series: c.series,
      };
      if (size !== undefined) r.liveFilter = `--bytes ${size}`;
      const a = o.aliases?.(name);
      if (a) r.aliases = a;
      caches.push(r);
    }
    // Growing caches first, then by how fast their bytes rise.
    caches.sort((a, b) => Number(b.verdict === 'growing') - Number(a.verdict === 'growing') || b.bytesPerMin - a.bytesPerMin || b.activeBytes - a.activeBytes);
    return {
      kleak: 1,
      kind: 'watch',
      span: { firstTs: this.times[0] ?? 0, lastTs: this.times[this.times.length - 1] ?? 0, samples: this.times.length },
      meminfo: [...this.mem].map(([name, row]) => ({ name, kb: row[row.length - 1]!, kbPerMin: round1(growthPerMinute(this.times, row)) })),
      caches: o.top !== undefined ? caches.slice(0, o.top) : caches,
      mergedCaches: o.merged,
    };
  }
}

const round1 = (x: number) => Math.round(x * 10) / 10;
