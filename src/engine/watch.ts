// kleak watch, the step before tracing: which slab cache grows, and is it a kmalloc size class kleak live can filter
// on. Pure: samples in, a report out; the verdict is the one the engine gives call sites (verdict.ts).

import { kmallocCacheSize, kmemBucketSize } from './filter.js';
import { DEFAULT_THRESHOLDS, gaugeVerdict, growthPerMinute, type Verdict, type VerdictThresholds } from './verdict.js';
import { KERNEL_MEMINFO, unaccountedKb, type SlabSample } from '../kernel/slabinfo.js';
import type { VmallocGroup } from '../kernel/vmallocinfo.js';
import { containerOf, type MemcgSample } from '../kernel/memcg.js';

export interface WatchSample {
  /** Seconds (monotonic, any origin). */
  ts: number;
  meminfo: Record<string, number>;
  slabs: SlabSample[];
  /** /proc/vmallocinfo grouped by caller, when it was readable. */
  vmalloc?: VmallocGroup[];
  /** Each memory cgroup's kernel memory (kernel/memcg.ts), when a memory hierarchy was readable. */
  memcgs?: MemcgSample[];
  /** Dying memory cgroups, when the kernel says. */
  dyingMemcgs?: number;
}

/** A memory cgroup's kernel memory over the samples. */
export interface MemcgReport {
  path: string;
  /** What a container runtime's path is (pod, container, service), when it is one. */
  container?: string;
  bytes: number;
  bytesPerMin: number;
  verdict: Verdict;
  series: number[];
  /** The live run that names what its tasks hold. */
  next: string;
}

const count = (v: unknown) => typeof v === 'number' && Number.isFinite(v) && v >= 0;
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * A recorded watch sample whose every field has the type the model counts on: a damaged or hostile line (a slab of
 * `null`, a count that is a string) is a bad line, counted and named, never an internal error.
 */
export function isWatchSample(r: unknown): r is WatchSample {
  if (!isObject(r) || typeof r.ts !== 'number' || !Number.isFinite(r.ts) || !isObject(r.meminfo) || !Array.isArray(r.slabs)) return false;
  if (!Object.values(r.meminfo).every(count)) return false;
  const slab = (s: unknown) => isObject(s) && typeof s.name === 'string' && count(s.activeObjs) && count(s.numObjs) && count(s.objSize) && (s.objPerSlab === undefined || count(s.objPerSlab));
  const vmalloc = (v: unknown) => isObject(v) && typeof v.caller === 'string' && typeof v.type === 'string' && (v.module === undefined || typeof v.module === 'string') && count(v.areas) && count(v.bytes) && count(v.pages);
  const memcg = (m: unknown) => isObject(m) && typeof m.path === 'string' && count(m.bytes);
  return r.slabs.every(slab) && (r.vmalloc === undefined || (Array.isArray(r.vmalloc) && r.vmalloc.every(vmalloc))) &&
    (r.memcgs === undefined || (Array.isArray(r.memcgs) && r.memcgs.every(memcg))) && (r.dyingMemcgs === undefined || count(r.dyingMemcgs));
}

/** A vmalloc caller over the samples: its last reading, with a rate and a verdict. */
export interface VmallocCallerReport extends VmallocGroup {
  areasPerMin: number;
  bytesPerMin: number;
  verdict: Verdict;
  /** Areas at each sample. */
  series: number[];
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
  /**
   * Set when the count rose by whole slabs and stayed, but too little to be called growing (one slab's step looks
   * like a CPU taking a fresh slab): the census that counts the cache's objects exactly, to tell (docs/verdicts.md).
   */
  stepped?: { objects: number; census: string };
}

export interface WatchReport {
  kleak: 1;
  kind: 'watch';
  span: { firstTs: number; lastTs: number; samples: number };
  /** NEXT: the live command that finds who holds a growing line's memory (VmallocUsed, Percpu, the unexplained). */
  meminfo: { name: string; kb: number; kbPerMin: number; verdict: Verdict; next?: string }[];
  caches: CacheReport[];
  /** vmalloc areas by caller, module and type (absent when /proc/vmallocinfo was never read). */
  vmallocCallers?: VmallocCallerReport[];
  /** Whether caches may be merged (no slab_nomerge on the kernel command line): a kmalloc-N may hold others. */
  mergedCaches: boolean | undefined;
  /** Memory cgroups (not the root, which is the whole host), growing first (absent when none was readable). */
  memcgs?: MemcgReport[];
  /** Dying memory cgroups: removed, still pinned by memory charged to them. */
  dyingMemcgs?: { count: number; perMin: number; verdict: Verdict; series: number[] };
  /** Readings that failed (a file that could not be read at that moment): gaps in every series, not zeros. */
  missedReadings?: { count: number; why: string };
}

export class WatchModel {
  private times: number[] = [];
  private objs = new Map<string, { size: number; perSlab: number | undefined; series: number[] }>();
  private mem = new Map<string, number[]>();
  private vmalloc = new Map<string, { group: VmallocGroup; areas: number[]; bytes: number[] }>();
  private vmallocSeen = false;
  private memcg = new Map<string, number[]>();
  private memcgSeen = false;
  private dying: number[] = [];
  private missed: { count: number; why: string } | undefined;

  constructor(private readonly thresholds: VerdictThresholds = DEFAULT_THRESHOLDS) {}

  /** A reading that could not be taken: counted and said in the report; the series go on from the next one. */
  miss(why: string): void {
    this.missed = { count: (this.missed?.count ?? 0) + 1, why };
  }

  add(s: WatchSample): void {
    const i = this.times.length;
    this.times.push(s.ts);
    for (const slab of s.slabs) {
      let c = this.objs.get(slab.name);
      if (!c) this.objs.set(slab.name, (c = { size: slab.objSize, perSlab: slab.objPerSlab, series: new Array<number>(i).fill(0) }));
      c.series.push(slab.activeObjs);
    }
    for (const c of this.objs.values()) if (c.series.length < i + 1) c.series.push(0); // a cache that went away
    if (s.vmalloc) {
      this.vmallocSeen = true;
      for (const g of s.vmalloc) {
        const key = `${g.caller}\0${g.module ?? ''}\0${g.type}`;
        let v = this.vmalloc.get(key);
        if (!v) this.vmalloc.set(key, (v = { group: g, areas: new Array<number>(i).fill(0), bytes: new Array<number>(i).fill(0) }));
        v.group = g;
        v.areas.push(g.areas);
        v.bytes.push(g.bytes);
      }
    }
    for (const v of this.vmalloc.values()) {
      if (v.areas.length < i + 1) {
        v.areas.push(0);
        v.bytes.push(0);
      }
    }
    if (s.memcgs) {
      this.memcgSeen = true;
      for (const m of s.memcgs) {
        let row = this.memcg.get(m.path);
        if (!row) this.memcg.set(m.path, (row = new Array<number>(i).fill(0)));
        row.push(m.bytes);
      }
    }
    for (const row of this.memcg.values()) if (row.length < i + 1) row.push(0); // a cgroup removed
    if (s.dyingMemcgs !== undefined) {
      while (this.dying.length < i) this.dying.push(s.dyingMemcgs);
      this.dying.push(s.dyingMemcgs);
    }
    const mem = { ...Object.fromEntries(KERNEL_MEMINFO.map((k) => [k, s.meminfo[k] ?? 0])), Unaccounted: unaccountedKb(s.meminfo) };
    for (const [k, v] of Object.entries(mem)) {
      const row = this.mem.get(k) ?? [];
      row.push(v);
      this.mem.set(k, row);
    }
  }

  private memcgReports(top: number | undefined): MemcgReport[] {
    const out: MemcgReport[] = [];
    for (const [path, row] of this.memcg) {
      if (path === '/') continue;
      // Charges move in per-CPU batches: a rise must be a batch or more and 1% of the cgroup's kernel memory, in two
      // rising steps, as for slab counts that move by whole slabs.
      const { verdict, perMin } = gaugeVerdict(this.times, row, this.thresholds, { share: 0.01, floor: MEMCG_MIN_RISE, steps: 2 });
      const container = containerOf(path);
      out.push({
        path, ...(container ? { container } : {}), bytes: row[row.length - 1] ?? 0, bytesPerMin: Math.round(perMin), verdict, series: row,
        next: `sudo kleak live --cgroup ${path} --stacks`,
      });
    }
    out.sort((a, b) => Number(b.verdict === 'growing') - Number(a.verdict === 'growing') || b.bytesPerMin - a.bytesPerMin || b.bytes - a.bytes);
    return top !== undefined ? out.slice(0, top) : out;
  }

  private dyingReport(): NonNullable<WatchReport['dyingMemcgs']> {
    const { verdict, perMin } = gaugeVerdict(this.times.slice(this.times.length - this.dying.length), this.dying, this.thresholds);
    return { count: this.dying[this.dying.length - 1]!, perMin: round1(perMin), verdict, series: this.dying };
  }

  report(o: { top?: number; aliases?: (cache: string) => number | undefined; merged?: boolean } = {}): WatchReport {
    const caches: CacheReport[] = [];
    for (const [name, c] of this.objs) {
      const last = c.series[c.series.length - 1] ?? 0;
      // slabinfo's count moves by whole slabs: a slow leak of small objects (5/s into a 128-per-slab cache) rises
      // once every 25 s. Two rises of two slabs' worth in all is what such a count can show of a steady leak.
      const bySlab = c.perSlab !== undefined && c.perSlab > 1;
      const { verdict, perMin } = gaugeVerdict(this.times, c.series, this.thresholds, { share: 0.005, ...(bySlab ? { floor: 2 * c.perSlab!, steps: 2 } : {}) });
      const size = kmallocCacheSize(name) ?? kmemBucketSize(name);
      const r: CacheReport = {
        name, objSize: c.size, activeObjs: last, activeBytes: last * c.size, objsPerMin: round1(perMin), bytesPerMin: Math.round(perMin * c.size), verdict, series: c.series,
      };
      if (size !== undefined) r.liveFilter = `--bytes ${size}`;
      // A rise of at least one whole slab that is still there at the end (the last reading is the highest).
      const lowest = Math.min(...c.series);
      if (verdict !== 'growing' && bySlab && c.series.length >= this.thresholds.minPoints && last - lowest >= c.perSlab! && last === Math.max(...c.series) && last > c.series[0]!) {
        r.stepped = { objects: last - lowest, census: `sudo kleak census ${name} --interval 10` };
      }
      const a = o.aliases?.(name);
      if (a) r.aliases = a;
      caches.push(r);
    }
    const vmallocCallers: VmallocCallerReport[] = [];
    for (const v of this.vmalloc.values()) {
      const last = v.areas.length - 1;
      // Areas come and go whole: no share of a base, the plain thresholds.
      const { verdict, perMin } = gaugeVerdict(this.times, v.areas, this.thresholds);
      vmallocCallers.push({
        caller: v.group.caller, ...(v.group.module ? { module: v.group.module } : {}), type: v.group.type,
        areas: v.areas[last] ?? 0, bytes: v.bytes[last] ?? 0, pages: v.areas[last] ? v.group.pages : 0,
        areasPerMin: round1(perMin), bytesPerMin: Math.round(growthPerMinute(this.times, v.bytes)),
        verdict,
        series: v.areas,
      });
    }
    vmallocCallers.sort((a, b) => Number(b.verdict === 'growing') - Number(a.verdict === 'growing') || b.bytesPerMin - a.bytesPerMin || b.bytes - a.bytes);
    // Growing caches first, then by how fast their bytes rise.
    caches.sort((a, b) => Number(b.verdict === 'growing') - Number(a.verdict === 'growing') || b.bytesPerMin - a.bytesPerMin || b.activeBytes - a.activeBytes);
    return {
      kleak: 1,
      kind: 'watch',
      span: { firstTs: this.times[0] ?? 0, lastTs: this.times[this.times.length - 1] ?? 0, samples: this.times.length },
      meminfo: [...this.mem].map(([name, row]) => {
        // kB counters move by pages: a rise must be a share of the line, not a handful of kB.
        const { verdict, perMin } = gaugeVerdict(this.times, row, this.thresholds, { share: 0.01, floor: 64 });
        const next = NEXT_FOR_MEMINFO[name];
        return { name, kb: row[row.length - 1]!, kbPerMin: round1(perMin), verdict, ...(next ? { next } : {}) };
      }),
      caches: o.top !== undefined ? caches.slice(0, o.top) : caches,
      ...(this.vmallocSeen ? { vmallocCallers: o.top !== undefined ? vmallocCallers.slice(0, o.top) : vmallocCallers } : {}),
      mergedCaches: o.merged,
      ...(this.memcgSeen ? { memcgs: this.memcgReports(o.top) } : {}),
      ...(this.dying.length > 0 ? { dyingMemcgs: this.dyingReport() } : {}),
      ...(this.missed ? { missedReadings: { ...this.missed } } : {}),
    };
  }
}

const round1 = (x: number) => Math.round(x * 10) / 10;

/** Kernel memory is charged to a memory cgroup in batches (64 pages per CPU): a rise smaller than this is no news. */
const MEMCG_MIN_RISE = 512 * 1024;

/** The live run that names the holder of a meminfo line's memory. */
const NEXT_FOR_MEMINFO: Record<string, string> = {
  VmallocUsed: 'sudo kleak live --alloc vmalloc',
  Percpu: 'sudo kleak live --alloc percpu',
  Unaccounted: 'sudo kleak live --alloc page --stacks',
  SUnreclaim: 'sudo kleak live --alloc slab',
};
