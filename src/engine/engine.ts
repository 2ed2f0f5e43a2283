// The pointer-matching engine: pure and synchronous. Folds events (or kernel snapshots) into a PointerTable and
// per-site counters, keyed on the trace's own clock, and answers report() at whatever pace a view wants.

import type { AllocatorName, KernelSnapshot, KmemEvent, ParseSink, RecordedRun } from '../event.js';
import { siteFunction } from '../parse/kmem-fields.js';
import type { Notice, Report, SampleReport, SiteReport, SourceInfo, StackReport, Totals } from '../report/model.js';
import { compileFilter, isEmptyFilter, type EventFilter } from './filter.js';
import { Interner } from './interner.js';
import { PointerTable, ptrFromKey, ptrKey, type PtrKey } from './pointer-table.js';
import { Series } from './series.js';
import { trimTracingFrames } from './stacks.js';
import { DEFAULT_THRESHOLDS, growthPerMinute, verdictOf, type VerdictThresholds } from './verdict.js';

export interface EngineOptions {
  filter?: EventFilter;
  /** Outstanding objects tracked at most (ENGINE_MAX_TRACKED by default); tests set fewer. */
  maxTracked?: number;
  /** The tracer applied the filter already (live): report it, do not apply it again. */
  filteredAtSource?: boolean;
  /**
   * The source traces frees (a live run attaches to the free tracepoints): a run without a matched free is one
   * where nothing traced was freed, which a pure leak is, not an allocation-only capture. Replays of kleak's own
   * live recordings know it from their header.
   */
  freesTraced?: boolean;
  /**
   * Sources whose events can arrive out of timestamp order (bpftrace's per-CPU buffers) set this: unknown frees
   * are remembered this long, so an allocation that arrives after its own free still pairs. Ordered sources
   * (trace-cmd report, trace_pipe) leave it 0 and skip the bookkeeping.
   */
  reorderWindowSec?: number;
  /** Sample step of the outstanding-over-time series, trace seconds. */
  seriesStepSec?: number;
  thresholds?: VerdictThresholds;
  /** Processes whose allocations are ignored (kleak and its tracer see themselves); may grow while running. */
  excludePids?: ReadonlySet<number>;
  /**
   * Names a raw hex address ("ffffffff813c8fd6" → "kmem_cache_create+0x1c6"), for old traces' call sites and stack
   * frames (replay --kallsyms FILE); undefined when it has no symbol.
   */
  symbolize?: (hex: string) => string | undefined;
}

export interface ReportOptions {
  minAgeSec?: number;
  top?: number;
  samplesPerSite?: number;
  stacksPerSite?: number;
}

interface Site {
  fn: string;
  allocs: number;
  frees: number;
  outstanding: number;
  outstandingBytes: number;
  missedFrees: number;
  /** The allocator, when not slab (from kernel snapshots). */
  allocator?: AllocatorName;
  /** Its objects seen freed from the RCU machinery (kvfree_rcu_list, rcu_do_batch…): the rest of its kfree_rcu frees are batched and unseen. */
  rcuFrees: number;
  /** Outstanding objects found free in their slab at the end (reconcile): their frees were not traced. */
  foundFree: number;
  /** Kernel-side totals (bpftrace pairs mode) override the counts above when present. */
  kernel?: { allocs: number; frees: number; missedFrees: number; outstanding: number; outstandingBytes: number };
}

/** Two generations of a key→value memory: entries live between one and two windows of trace time. */
class RecentMap<V> {
  private cur = new Map<PtrKey, V>();
  private prev = new Map<PtrKey, V>();
  private rotateAt = -Infinity;
  constructor(private readonly window: number) {}
  set(k: PtrKey, v: V, ts: number): void {
    if (ts >= this.rotateAt) {
      this.prev = this.cur;
      this.cur = new Map();
      this.rotateAt = ts + this.window;
    }
    this.cur.set(k, v);
  }
  take(k: PtrKey): V | undefined {
    let v = this.cur.get(k);
    if (v !== undefined) this.cur.delete(k);
    else {
      v = this.prev.get(k);
      if (v !== undefined) this.prev.delete(k);
    }
    return v;
  }
}

const MAX_BAD_SAMPLES = 20;

/** Marks, in the pointer table's stack id, a stack sampled at random (it stands for stackSampleWeight objects). */
const RANDOM_SAMPLE = 0x20000000;

/** Cache labels that name an allocator, not a slab cache (vmalloc areas, pages, percpu chunks). */
const NOT_SLAB_CACHES: ReadonlySet<string> = new Set(['vmalloc', 'page', 'percpu', 'slob']);

/**
 * Outstanding objects the engine tracks at most (about 100 bytes each in the pointer table and its index: ~200 MB at
 * the bound). A leak report of more is a lower bound, said (docs/safety.md, "Bounded input").
 */
export const ENGINE_MAX_TRACKED = 2_000_000;

export class Engine implements ParseSink {
  readonly totals: Totals = {
    lines: 0, events: 0, allocs: 0, frees: 0, matchedFrees: 0, unknownFrees: 0, missedFrees: 0,
    lostEvents: 0, badLines: 0, outstanding: 0, outstandingBytes: 0,
  };
  private readonly table = new PointerTable();
  private readonly callSites = new Interner();
  /** callSite id → site id (sites group call sites by function). */
  private readonly callSiteToSite: number[] = [];
  private readonly siteIds = new Map<string, number>();
  private readonly sites: Site[] = [];
  private siteOutstanding = new Float64Array(64);
  private readonly comms = new Interner(true);
  private readonly cgroups = new Interner(true);
  private readonly caches = new Interner();
  private readonly stacks = new Interner();
  private readonly series: Series;
  private readonly accept: ((e: KmemEvent) => boolean) | undefined;
  private readonly reorderWindow: number;
  private readonly recentUnknownFrees: RecentMap<number> | undefined;
  /** Pointers whose allocation was replaced by a new one (missed free), in case the free shows up late. */
  private readonly replaced = new RecentMap<number>(2);
  private lastSlotByCpu: number[] = [];
  private lastSerialByCpu: number[] = [];
  private firstTs = NaN;
  private lastTs = NaN;
  private lastLossTs = -Infinity;
  private filteredOut = 0;
  private kernelUntracked = 0;
  /** What a stack sampled at random stands for (--stacks on the kernel backend; 1 until one is seen). */
  private stackSampleWeight = 1;
  /** Allocations not tracked because the engine's own table was full (ENGINE_MAX_TRACKED). */
  private engineUntracked = 0;
  private snapshotMode = false;
  readonly badSamples: { line: number; reason: string }[] = [];
  private recordedRun: RecordedRun | undefined;
  readonly thresholds: VerdictThresholds;
  readonly filter: EventFilter;

  constructor(private readonly opts: EngineOptions = {}) {
    this.filter = opts.filter ?? {};
    this.accept = opts.filteredAtSource ? undefined : compileFilter(this.filter);
    this.reorderWindow = opts.reorderWindowSec ?? 0;
    if (this.reorderWindow > 0) this.recentUnknownFrees = new RecentMap(this.reorderWindow);
    this.series = new Series(opts.seriesStepSec ?? 0.1);
    this.thresholds = opts.thresholds ?? DEFAULT_THRESHOLDS;
  }

  // ---- ParseSink ----

  event(e: KmemEvent): void {
    const ts = e.ts;
    if (!(ts <= this.lastTs)) {
      if (Number.isNaN(this.firstTs)) this.firstTs = ts;
      this.lastTs = ts;
      if (this.series.due(ts)) this.series.sample(ts, this.siteOutstanding.subarray(0, this.sites.length));
    }
    this.totals.events++;
    if (e.kind === 'alloc') this.alloc(e);
    else this.free(e);
  }

  stack(cpu: number, frames: string[]): void {
    const slot = this.lastSlotByCpu[cpu];
    if (slot === undefined || slot < 0) return;
    if (this.table.serial[slot] !== this.lastSerialByCpu[cpu] || !this.table.isLive(slot)) return;
    this.table.stack[slot] = this.stacks.id(trimTracingFrames(this.namedFrames(frames)).join('\n'));
    this.lastSlotByCpu[cpu] = -1;
  }

  lost(count: number): void {
    this.totals.lostEvents += count;
    // Allocations up to now may have lost their free; a loss before any event makes nothing a possible phantom.
    this.lastLossTs = Number.isNaN(this.lastTs) ? -Infinity : this.lastTs;
  }

  /** A recording's header: its filter was applied when it was made, so the report shows it. */
  recorded(info: RecordedRun): void {
    this.recordedRun = info;
  }

  private readonly inputNotices = new Set<string>();

  notice(text: string): void {
    if (this.inputNotices.size < 20) this.inputNotices.add(text);
  }

  bad(lineNo: number, reason: string): void {
    this.totals.badLines++;
    if (this.badSamples.length < MAX_BAD_SAMPLES) this.badSamples.push({ line: lineNo, reason });
  }

  /**
   * A kernel-side pairing table's view (bpftrace pairs mode) becomes the new truth: its outstanding list replaces
   * the pointer table, and its per-site counters replace the engine's.
   */
  snapshot(s: KernelSnapshot): void {
    this.snapshotMode = true;
    if (Number.isNaN(this.firstTs)) this.firstTs = s.ts;
    if (!(s.ts <= this.lastTs)) this.lastTs = s.ts;
    this.kernelUntracked = s.untracked;
    if (s.outstanding) {
      this.table.clear();
      for (const site of this.sites) {
        site.outstanding = 0;
        site.outstandingBytes = 0;
      }
      for (const r of s.outstanding) {
        // A replay's filter (--comm, --cgroup…) applies to the listed objects; the per-site totals cannot be split.
        if (this.accept !== undefined && !this.accept({ kind: 'alloc', tracepoint: 'kmalloc', ...r })) continue;
        const cs = this.callSites.id(r.callSite);
        const site = this.siteOf(cs);
        if (r.allocator && r.allocator !== 'slab') this.sites[site]!.allocator = r.allocator;
        this.store({ kind: 'alloc', tracepoint: 'kmalloc', ...r }, ptrKey(r.ptr), site, cs);
      }
    }
    for (const site of this.sites) site.kernel = { allocs: 0, frees: 0, missedFrees: 0, outstanding: 0, outstandingBytes: 0 };
    this.siteOutstanding.fill(0);
    let allocs = 0;
    let frees = 0;
    let missed = 0;
    let outstanding = 0;
    let bytes = 0;
    for (const t of s.sites) {
      const id = this.siteOf(this.callSites.id(t.callSite));
      if (t.allocator && t.allocator !== 'slab') this.sites[id]!.allocator = t.allocator;
      // The kernel counts per call site (cumulative since the start); several call sites of a function add up.
      const k = (this.sites[id]!.kernel ??= { allocs: 0, frees: 0, missedFrees: 0, outstanding: 0, outstandingBytes: 0 });
      k.allocs += t.allocs;
      k.frees += t.frees;
      k.missedFrees += t.missedFrees ?? 0;
      missed += t.missedFrees ?? 0;
      k.outstanding += t.outstanding;
      k.outstandingBytes += t.outstandingBytes;
      this.siteOutstanding[id] = k.outstanding;
      allocs += t.allocs;
      frees += t.frees;
      outstanding += t.outstanding;
      bytes += t.outstandingBytes;
    }
    this.totals.events = allocs + frees;
    this.totals.allocs = allocs;
    this.totals.frees = frees;
    this.totals.matchedFrees = frees;
    this.totals.missedFrees = missed;
    this.totals.outstanding = outstanding;
    this.totals.outstandingBytes = bytes;
    this.series.sample(s.ts, this.siteOutstanding.subarray(0, this.sites.length));
  }

  // ---- folding ----

  private readonly symbolNames = new Map<string, string>();
  /** Functions beyond MAX_SITES, counted (up to a bound) for the notice. */
  private readonly foldedSites = new Set<string>();

  /** A call site or frame as shown: a raw hex address named when --kallsyms gave symbols for it. */
  private named(text: string): string {
    const sym = this.opts.symbolize;
    if (sym === undefined || !/^(?:0x)?[0-9a-f]{8,16}$/.test(text)) return text;
    let n = this.symbolNames.get(text);
    if (n === undefined) {
      n = sym(text.replace(/^0x/, '')) ?? text;
      this.symbolNames.set(text, n);
    }
    return n;
  }

  /** A stack's frames, named where they are raw addresses (before the tracer's own frames are trimmed by name). */
  private namedFrames(frames: readonly string[]): readonly string[] {
    return this.opts.symbolize === undefined ? frames : frames.map((x) => siteFunction(this.named(x)));
  }

  private frames(id: number): string[] {
    return this.stacks.values[id]!.split('\n');
  }

  /** The site (function) of an interned call site. */
  private siteOf(cs: number): number {
    const known = this.callSiteToSite[cs];
    if (known !== undefined) return known;
    let fn = siteFunction(this.named(this.callSites.values[cs]!));
    let site = this.siteIds.get(fn);
    if (site === undefined && this.sites.length >= MAX_SITES) {
      // A trace of more distinct functions than any leak hunt reads (fuzzed or synthetic input): the rest share one
      // site, so memory stays bounded (each site keeps a series), and the report says how many were folded.
      if (this.foldedSites.size < 100_000) this.foldedSites.add(fn);
      fn = OTHER_SITES;
      site = this.siteIds.get(fn);
    }
    if (site === undefined) {
      site = this.sites.length;
      this.sites.push({ fn, allocs: 0, frees: 0, outstanding: 0, outstandingBytes: 0, missedFrees: 0, rcuFrees: 0, foundFree: 0 });
      this.siteIds.set(fn, site);
      if (site >= this.siteOutstanding.length) {
        const grown = new Float64Array(this.siteOutstanding.length * 2);
        grown.set(this.siteOutstanding);
        this.siteOutstanding = grown;
      }
    }
    this.callSiteToSite[cs] = site;
    return site;
  }

  private alloc(e: KmemEvent): void {
    if (this.accept !== undefined && !this.accept(e)) {
      this.filteredOut++;
      return;
    }
    if (this.opts.excludePids !== undefined && e.pid !== undefined && this.opts.excludePids.has(e.pid)) return;
    const t = this.totals;
    t.allocs++;
    const key = e.key ?? ptrKey(e.ptr);
    const callSiteId = this.callSites.id(e.callSite);
    const siteId = this.siteOf(callSiteId);
    const site = this.sites[siteId]!;
    site.allocs++;
    if (e.allocator !== undefined && e.allocator !== 'slab') site.allocator = e.allocator;

    if (this.recentUnknownFrees !== undefined) {
      const freeTs = this.recentUnknownFrees.take(key);
      if (freeTs !== undefined && freeTs >= e.ts) {
        // Its free was already seen (another CPU's buffer got there first): a matched pair, not an unknown free.
        t.unknownFrees--;
        t.matchedFrees++;
        site.frees++;
        return;
      }
    }

    const old = this.table.find(key);
    if (old >= 0) {
      // Allocated again while still tracked: the free was missed (lost, or freed through a path with no tracepoint).
      const oldSite = this.callSiteToSite[this.table.callSite[old]!]!;
      t.missedFrees++;
      this.sites[oldSite]!.missedFrees++;
      this.release(old, oldSite);
      this.table.remove(key, old);
      this.replaced.set(key, oldSite, e.ts);
    }
    if (this.table.size >= (this.opts.maxTracked ?? ENGINE_MAX_TRACKED)) {
      // Bounded memory: past this many outstanding objects, new ones are counted, not tracked, and every count is
      // then a lower bound (said in the report, marked ≥): 2.4 M distinct pointers over ssh took 758 MB.
      this.engineUntracked++;
      return;
    }
    this.store(e, key, siteId, callSiteId);
  }

  private store(e: KmemEvent, key: PtrKey, siteId: number, callSiteId: number): void {
    const tb = this.table;
    const slot = tb.insert(key);
    const bytes = e.bytesAlloc ?? 0;
    tb.ts[slot] = e.ts;
    tb.callSite[slot] = callSiteId;
    tb.cache[slot] = e.cache === undefined ? -1 : this.caches.id(e.cache);
    tb.bytesAlloc[slot] = bytes;
    tb.bytesReq[slot] = e.bytesReq ?? -1;
    tb.pid[slot] = e.pid ?? -1;
    tb.comm[slot] = e.comm === undefined ? -1 : this.comms.id(e.comm);
    tb.cgroup[slot] = e.cgroup === undefined ? -1 : this.cgroups.id(e.cgroup);
    if (e.stack !== undefined && e.stack.length > 0) {
      // A stack sampled at random stands for stackWeight allocations: marked, and the weight kept (one per run).
      const sampled = e.stackWeight !== undefined && e.stackWeight > 1;
      if (sampled) this.stackSampleWeight = e.stackWeight!;
      tb.stack[slot] = this.stacks.id(trimTracingFrames(this.namedFrames(e.stack)).join('\n')) | (sampled ? RANDOM_SAMPLE : 0);
    }
    const site = this.sites[siteId]!;
    site.outstanding++;
    site.outstandingBytes += bytes;
    this.siteOutstanding[siteId] = site.outstanding;
    this.totals.outstanding++;
    this.totals.outstandingBytes += bytes;
    if (e.cpu !== undefined) {
      this.lastSlotByCpu[e.cpu] = slot;
      this.lastSerialByCpu[e.cpu] = tb.serial[slot]!;
    }
  }

  private release(slot: number, siteId: number): void {
    const bytes = this.table.bytesAlloc[slot]!;
    const site = this.sites[siteId]!;
    site.outstanding--;
    site.outstandingBytes -= bytes;
    this.siteOutstanding[siteId] = site.outstanding;
    this.totals.outstanding--;
    this.totals.outstandingBytes -= bytes;
  }

  private free(e: KmemEvent): void {
    const t = this.totals;
    t.frees++;
    if (e.cpu !== undefined) this.lastSlotByCpu[e.cpu] = -1;
    const key = e.key ?? ptrKey(e.ptr);
    const slot = this.table.find(key);
    if (slot >= 0 && e.ts >= this.table.ts[slot]!) {
      const siteId = this.callSiteToSite[this.table.callSite[slot]!]!;
      t.matchedFrees++;
      this.sites[siteId]!.frees++;
      if (e.callSite !== '' && isRcuFreePath(e.callSite)) this.sites[siteId]!.rcuFrees++;
      this.release(slot, siteId);
      this.table.remove(key, slot);
      return;
    }
    if (slot >= 0) {
      // The free is older than the tracked allocation: it frees the allocation that one replaced.
      const oldSite = this.replaced.take(key);
      if (oldSite !== undefined) {
        t.missedFrees--;
        this.sites[oldSite]!.missedFrees--;
        this.sites[oldSite]!.frees++;
        t.matchedFrees++;
        return;
      }
    }
    t.unknownFrees++;
    this.recentUnknownFrees?.set(key, e.ts, e.ts);
  }

  // ---- queries ----

  get span(): { firstTs: number; lastTs: number } {
    return { firstTs: Number.isNaN(this.firstTs) ? 0 : this.firstTs, lastTs: Number.isNaN(this.lastTs) ? 0 : this.lastTs };
  }

  /**
   * Outstanding bytes and objects by stack, root first (the allocation site last), for flame graphs: every
   * outstanding allocation counts once, under its stack, or under its site's function when it has none.
   */
  stackWeights(o: { minAgeSec?: number } = {}): { frames: string[]; bytes: number; objects: number; allocator?: AllocatorName }[] {
    const tb = this.table;
    const now = this.span.lastTs;
    const minAge = o.minAgeSec ?? 0;
    type Weight = { frames: string[]; bytes: number; objects: number; allocator?: AllocatorName; site: number };
    const byKey = new Map<string, Weight>();
    /** Per site: all its objects, and those with a stack (sampled stacks leave some without). */
    const all = new Map<number, { bytes: number; objects: number; withStackBytes: number; withStackObjects: number }>();
    for (let slot = 0; slot < tb.slotLimit; slot++) {
      if (!tb.isLive(slot) || now - tb.ts[slot]! < minAge) continue;
      const siteId = this.callSiteToSite[tb.callSite[slot]!]!;
      const site = this.sites[siteId]!;
      const [st, weight] = this.stackAt(slot);
      const t = all.get(siteId) ?? { bytes: 0, objects: 0, withStackBytes: 0, withStackObjects: 0 };
      all.set(siteId, t);
      t.bytes += tb.bytesAlloc[slot]!;
      t.objects++;
      if (st >= 0) {
        t.withStackBytes += tb.bytesAlloc[slot]! * weight;
        t.withStackObjects += weight;
      }
      const key = st >= 0 ? `s${st}@${siteId}` : `f${site.fn}`;
      let w = byKey.get(key);
      if (!w) {
        const frames = st >= 0 ? this.frames(st).reverse() : [site.fn];
        byKey.set(key, (w = { frames, bytes: 0, objects: 0, site: siteId, ...(site.allocator ? { allocator: site.allocator } : {}) }));
      }
      w.bytes += tb.bytesAlloc[slot]! * (st >= 0 ? weight : 1);
      w.objects += st >= 0 ? weight : 1;
    }
    // Sampled stacks: a site's objects without a stack are shared among its sampled stacks in their proportions.
    const out: Omit<Weight, 'site'>[] = [];
    for (const [key, w] of byKey) {
      const t = all.get(w.site)!;
      const sampled = t.withStackObjects > 0 && t.withStackObjects !== t.objects;
      if (!key.startsWith('s')) {
        if (t.withStackObjects === 0) out.push({ frames: w.frames, bytes: w.bytes, objects: w.objects, ...(w.allocator ? { allocator: w.allocator } : {}) });
        continue;
      }
      const bytes = sampled ? Math.round((w.bytes * t.bytes) / t.withStackBytes) : w.bytes;
      const objects = sampled ? Math.round((w.objects * t.objects) / t.withStackObjects) : w.objects;
      out.push({ frames: w.frames, bytes, objects, ...(w.allocator ? { allocator: w.allocator } : {}) });
    }
    return out.sort((a, b) => b.bytes - a.bytes);
  }

  /** The interned stack of a slot (-1: none) and the allocations it stands for (more than 1: sampled at random). */
  private stackAt(slot: number): [stack: number, weight: number] {
    const raw = this.table.stack[slot]!;
    if (raw < 0) return [-1, 1];
    return raw & RANDOM_SAMPLE ? [raw & ~RANDOM_SAMPLE, this.stackSampleWeight] : [raw, 1];
  }

  /**
   * A site's top stacks. With sampled stacks (not every object has one, or some stand for several), each stack's
   * count is its weighted share of the sample times the site's exact count, rounded, and says its sample.
   */
  private stacksOf(weights: Map<number, number> | undefined, objects: Map<number, number> | undefined, outstanding: number, n: number): { stacks: StackReport[]; stacksSampled?: number } {
    if (!weights || !objects) return { stacks: [] };
    let weight = 0;
    let withStack = 0;
    for (const w of weights.values()) weight += w;
    for (const c of objects.values()) withStack += c;
    const sampled = weight !== withStack || withStack < outstanding;
    const stacks = topN(weights, n).map(([id, w]) => ({
      frames: this.frames(id),
      outstanding: sampled ? Math.round((w * outstanding) / weight) : w,
      ...(sampled ? { sampled: objects.get(id)! } : {}),
    }));
    return sampled ? { stacks, stacksSampled: withStack } : { stacks };
  }

  report(source: SourceInfo, o: ReportOptions = {}): Report {
    const minAge = o.minAgeSec ?? 0;
    const nSamples = o.samplesPerSite ?? 5;
    const nStacks = o.stacksPerSite ?? 5;
    const now = this.span.lastTs;
    const tb = this.table;
    const n = this.sites.length;
    const count = new Float64Array(n);
    const bytes = new Float64Array(n);
    const oldest = new Float64Array(n).fill(Infinity);
    const phantoms = new Float64Array(n);
    const csCount: Map<number, number>[] = [];
    const cacheCount: Map<number, number>[] = [];
    const cgroupCount: Map<number, number>[] = [];
    /** Outstanding objects and bytes by memory cgroup (interned id), over every site: whose they are. */
    const whose: { outstanding: number; outstandingBytes: number }[] = [];
    /** Per site and stack: the allocations its objects stand for (sampled stacks weigh more), and the objects. */
    const stackCount: Map<number, number>[] = [];
    const stackSampled: Map<number, number>[] = [];
    const samples: number[][] = [];
    /** Each site's youngest object, and a spread of its objects over all ages (the lowest slot hashes). */
    const newest: number[] = [];
    const spread: number[][] = [];
    const kinds: Map<number, number>[] = [];
    const lossTs = this.lastLossTs;

    for (let slot = 0; slot < tb.slotLimit; slot++) {
      if (!tb.isLive(slot)) continue;
      const ts = tb.ts[slot]!;
      if (now - ts < minAge) continue;
      const cs = tb.callSite[slot]!;
      const s = this.callSiteToSite[cs]!;
      count[s]!++;
      bytes[s]! += tb.bytesAlloc[slot]!;
      if (ts < oldest[s]!) oldest[s] = ts;
      if (ts <= lossTs) phantoms[s]!++;
      bump((csCount[s] ??= new Map()), cs);
      const c = tb.cache[slot]!;
      if (c >= 0) bump((cacheCount[s] ??= new Map()), c);
      const g = tb.cgroup[slot]!;
      if (g >= 0) {
        bump((cgroupCount[s] ??= new Map()), g);
        const w = (whose[g] ??= { outstanding: 0, outstandingBytes: 0 });
        w.outstanding++;
        w.outstandingBytes += tb.bytesAlloc[slot]!;
      }
      const [st, weight] = this.stackAt(slot);
      if (st >= 0) {
        bump((stackCount[s] ??= new Map()), st, weight);
        bump((stackSampled[s] ??= new Map()), st);
      }
      keepOldest((samples[s] ??= []), slot, tb.ts, nSamples);
      if (newest[s] === undefined || ts > tb.ts[newest[s]!]!) newest[s] = slot;
      keepLowestHash((spread[s] ??= []), slot, nSamples);
      // The oldest object of each kind (stack, comm, requested size): a site holding two kinds of object shows both.
      // A number, not a string: this runs for every outstanding object at every report (the TUI redraws often);
      // two kinds that collide in it only mean one sample fewer of one of them.
      const kind = ((st + 1) * 65599 + (tb.comm[slot]! + 1)) * 1048583 + (tb.bytesReq[slot]! + 1);
      const k = (kinds[s] ??= new Map());
      const seen = k.get(kind);
      if (seen === undefined ? k.size < 16 : ts < tb.ts[seen]!) k.set(kind, slot);
    }

    const sites: SiteReport[] = [];
    for (let s = 0; s < n; s++) {
      const site = this.sites[s]!;
      const k = site.kernel;
      const listed = count[s]! > 0;
      // In pairs mode with only per-site totals, the kernel's counts are all there is.
      // Filtered in kleak (a replay with --comm, --cgroup…): only the listed objects passed the filter.
      const outstanding = listed || !k || this.accept !== undefined ? count[s]! : minAge > 0 ? 0 : k.outstanding;
      if (outstanding <= 0) continue;
      const series = [...this.series.row(s), this.siteOutstanding[s]!];
      const times = [...this.series.times, now];
      const allocs = k ? k.allocs : site.allocs;
      const frees = k ? k.frees : site.frees;
      const missedFrees = k ? k.missedFrees : site.missedFrees;
      const unseenFrees = site.rcuFrees > 0 || site.foundFree > 0 ? 'rcu' : missedFrees > 0 ? 'reused' : undefined;
      // A trace with no free events at all (alloc-only captures) cannot tell a leak from churn.
      const noFrees = this.allocationOnly();
      let verdict = verdictOf(series, now - this.series.times[0]!, allocs, frees, this.thresholds);
      const bounded = verdict === 'growing' && listed && frees > 0 ? this.boundedLifetime(series, times, oldest[s]!) : undefined;
      if (bounded !== undefined) verdict = 'churn';
      const callSite = listed && site.fn !== OTHER_SITES ? this.named(this.callSites.values[top(csCount[s]!)]!) : site.fn;
      const module = /\[([\w-]+)\]\s*$/.exec(callSite)?.[1];
      sites.push({
        function: site.fn,
        ...(module ? { module } : {}),
        ...(site.allocator ? { allocator: site.allocator } : {}),
        callSite,
        cache: cacheCount[s] ? this.caches.values[top(cacheCount[s]!)]! : '',
        ...(cacheCount[s] && cacheCount[s]!.size > 1 ? { caches: topN(cacheCount[s]!, 8).map(([id, n]) => ({ cache: this.caches.values[id]!, outstanding: n })) } : {}),
        ...(cgroupCount[s] ? { cgroups: topN(cgroupCount[s]!, 8).map(([id, n]) => ({ cgroup: this.cgroups.values[id]!, outstanding: n })) } : {}),
        outstanding,
        outstandingBytes: listed || !k ? bytes[s]! : k.outstandingBytes,
        allocs,
        frees,
        oldestAgeSec: oldest[s] === Infinity ? 0 : round3(now - oldest[s]!),
        // A slope through a handful of points is noise, not a rate.
        growthPerMin: series.length >= this.thresholds.minPoints && now - (this.series.times[0] ?? now) >= this.thresholds.minSpanSec ? Math.round(growthPerMinute(times, series) * 10) / 10 : 0,
        // Objects that leave unseen make any count rise: that alone is no leak (docs/formats.md, docs/verdicts.md).
        verdict: (unseenFrees !== undefined || noFrees || SLAB_METADATA.test(site.fn)) && verdict === 'growing' ? 'steady' : verdict,
        ...this.stacksOf(stackCount[s], stackSampled[s], count[s]!, nStacks),
        samples: diverseSamples(samples[s] ?? [], kinds[s], tb.ts, nSamples, newest[s], spread[s]).map((slot) => this.sample(slot, now)),
        missedFrees,
        possiblePhantoms: phantoms[s]!,
        ...(unseenFrees ? { unseenFrees } : {}),
        ...(site.foundFree > 0 ? { foundFree: site.foundFree } : {}),
        ...(bounded !== undefined ? { boundedLifetimeSec: Math.round(bounded) } : {}),
        series,
        ...(this.kernelUntracked > 0 || this.engineUntracked > 0 ? { lowerBound: true as const } : {}),
      });
    }
    sites.sort((a, b) => b.outstandingBytes - a.outstandingBytes || b.outstanding - a.outstanding || a.function.localeCompare(b.function));
    const siteCount = sites.length;
    const modules = new Map<string, Report['modules'][number]>();
    for (const site of sites) {
      const name = site.module ?? 'the kernel itself';
      const m = modules.get(name) ?? { module: name, outstanding: 0, outstandingBytes: 0, growthPerMin: 0, growingSites: 0 };
      m.outstanding += site.outstanding;
      m.outstandingBytes += site.outstandingBytes;
      m.growthPerMin = Math.round((m.growthPerMin + site.growthPerMin) * 10) / 10;
      if (site.verdict === 'growing') m.growingSites++;
      modules.set(name, m);
    }
    const rec = this.recordedRun;
    return {
      kleak: 1,
      source: rec?.source?.backend ? { ...source, recordedWith: `${rec.source.backend}${rec.source.mode ? ` ${rec.source.mode}` : ''}` } : source,
      filter: isEmptyFilter(this.filter) && rec?.filter ? (rec.filter as EventFilter) : this.filter,
      span: this.span,
      totals: { ...this.totals },
      sites: o.top !== undefined ? sites.slice(0, o.top) : sites,
      modules: [...modules.values()].sort((a, b) => b.growingSites - a.growingSites || b.outstandingBytes - a.outstandingBytes),
      ...(whose.length > 0
        ? { cgroups: whose.flatMap((w, id) => (w ? [{ cgroup: this.cgroups.values[id]!, ...w }] : [])).sort((a, b) => b.outstandingBytes - a.outstandingBytes || b.outstanding - a.outstanding) }
        : {}),
      siteCount,
      minAgeSec: minAge,
      notices: this.notices(),
      badLineSamples: [...this.badSamples],
      series: { stepSec: this.series.stepSec, times: [...this.series.times, now] },
    };
  }

  /**
   * How long a site's objects live, when that is bounded (docs/verdicts.md): its oldest outstanding object is `age`
   * seconds old, so everything it allocated before then was freed, and a population whose objects live that long
   * is full from `age` seconds after the run began. When that full stretch is a good part of the run and the count
   * is not growing in it by the same rule, the earlier rise was the population filling up to its lifetime (TCP
   * TIME_WAIT sockets: 60 s), not a leak. A leak keeps its first objects (its oldest is as old as the run, leaving no
   * full stretch), and a leak that began mid-run rises within the full stretch: both stay growing.
   */
  private boundedLifetime(series: readonly number[], times: readonly number[], oldestTs: number): number | undefined {
    if (!Number.isFinite(oldestTs)) return undefined;
    const start = times[0]!;
    const now = times[times.length - 1]!;
    const age = now - oldestTs;
    if (now - start - age < Math.max(this.thresholds.minSpanSec, (now - start) / 3)) return undefined;
    let from = times.findIndex((t) => t >= start + age);
    if (from < 0) from = times.length - 1;
    // A full population moves up and down with its rate of arrivals: a rise there must be a share of its size.
    const window = series.slice(from);
    const mean = window.reduce((a, b) => a + b, 0) / Math.max(1, window.length);
    const full = verdictOf(window, now - times[from]!, 0, 0, { ...this.thresholds, minRise: Math.max(this.thresholds.minRise, 0.05 * mean) });
    return full === 'growing' ? undefined : age;
  }

  /**
   * The slab caches holding the most outstanding objects (at most `max`), for a check of the slab state at the end
   * (reconcile): the frees a backend cannot see leave objects outstanding that the slab has freed.
   */
  outstandingCaches(max: number): string[] {
    const byCache = new Map<number, number>();
    const tb = this.table;
    for (let slot = 0; slot < tb.slotLimit; slot++) if (tb.isLive(slot) && tb.cache[slot]! >= 0) bump(byCache, tb.cache[slot]!);
    return topN(byCache, max).map(([id]) => this.caches.values[id]!).filter((c) => !NOT_SLAB_CACHES.has(c) && !c.startsWith('pages-'));
  }

  /**
   * Drops every outstanding object of a checked cache that its slab holds free now (`allocated(cache)` gives the
   * addresses allocated in it, as ptr keys; undefined: not checked). Those objects were freed by a path the trace does
   * not show (kfree_rcu batches, bulk frees): their site is marked (unseenFrees 'rcu', foundFree) and its count is
   * then exact. Returns how many were dropped.
   */
  reconcile(allocated: (cache: string) => ReadonlySet<PtrKey> | undefined): number {
    const tb = this.table;
    const sets = new Map<number, ReadonlySet<PtrKey> | undefined>();
    let dropped = 0;
    for (let slot = 0; slot < tb.slotLimit; slot++) {
      if (!tb.isLive(slot)) continue;
      const c = tb.cache[slot]!;
      if (c < 0) continue;
      if (!sets.has(c)) sets.set(c, allocated(this.caches.values[c]!));
      const set = sets.get(c);
      const key = tb.keyOf(slot);
      if (set === undefined || set.has(key)) continue;
      const siteId = this.callSiteToSite[tb.callSite[slot]!]!;
      this.sites[siteId]!.foundFree++;
      this.release(slot, siteId);
      tb.remove(key, slot);
      dropped++;
    }
    return dropped;
  }

  /** No free seen, from a source that may not have traced frees at all (a capture of allocations only). */
  private allocationOnly(): boolean {
    return !this.snapshotMode && this.totals.frees === 0 && this.opts.freesTraced !== true && this.recordedRun?.source?.kind !== 'live';
  }

  private sample(slot: number, now: number): SampleReport {
    const tb = this.table;
    const r: SampleReport = { ptr: ptrFromKey(tb.keyOf(slot)), ageSec: round3(now - tb.ts[slot]!) };
    if (tb.pid[slot]! >= 0) r.pid = tb.pid[slot]!;
    if (tb.comm[slot]! >= 0) r.comm = this.comms.values[tb.comm[slot]!]!;
    if (tb.bytesReq[slot]! >= 0) r.bytesReq = tb.bytesReq[slot]!;
    return r;
  }

  /** What the source says its figures cannot be trusted for (LiveSource.caveats): a warning in every report. */
  readonly caveats: string[] = [];

  private notices(): Notice[] {
    const t = this.totals;
    const out: Notice[] = this.caveats.map((text) => ({ severity: 'warning' as const, text }));
    if (t.lostEvents > 0) {
      out.push({
        severity: 'dataLoss',
        text: `${t.lostEvents} events were lost: allocations made before a loss may look outstanding because their free was lost (counted per site as possible phantoms). Record with a bigger buffer or a narrower filter.`,
      });
    }
    if (this.kernelUntracked > 0) {
      out.push({
        severity: 'dataLoss',
        text: `${this.kernelUntracked} allocations were not tracked because the kernel-side pointer table was full: every site's outstanding count is a lower bound (marked ≥); raise --max-pointers or narrow the filter.`,
      });
    }
    if (this.engineUntracked > 0) {
      out.push({
        severity: 'dataLoss',
        text: `${this.engineUntracked.toLocaleString('en-US')} allocations were not tracked because kleak already held ${(this.opts.maxTracked ?? ENGINE_MAX_TRACKED).toLocaleString('en-US')} outstanding objects (its memory bound): every site's outstanding count is a lower bound (marked ≥); narrow the filter (--bytes, --cache, --comm) to follow fewer.`,
      });
    }
    if (t.missedFrees > 0) {
      out.push({
        severity: 'warning',
        text: `${t.missedFrees} pointers were allocated again while still outstanding: their free was not seen (lost, or through kfree_rcu batching or a bulk free, which no kmem tracepoint shows; --backend kernel sees kfree_rcu batches); such sites are not called growing from their count alone.`,
      });
    }
    if (this.allocationOnly() && t.allocs > 0) {
      out.push({ severity: 'warning', text: 'this trace has no free events (an allocation-only capture?): outstanding means "not seen freed", and no site is called growing, since the data cannot tell a leak from churn. Record kfree and kmem_cache_free too.' });
    }
    if (this.recordedRun?.cutShort) {
      out.push({ severity: 'dataLoss', text: 'this recording has no end record: kleak was stopped before it finished (killed, or its disk filled); the report covers what was recorded, and frees after the cut are missing.' });
    }
    for (const { allocator, fns, what } of BOOKKEEPING) {
      if (this.sites.some((x) => x.allocator === allocator)) continue; // traced already: the memory itself is in the report
      const held = this.sites.filter((x) => (x.allocator ?? 'slab') === 'slab' && x.outstanding > 0 && fns.test(siteFunction(x.fn).replace(/ \[.*$/, '')));
      if (held.length === 0) continue;
      out.push({
        severity: 'info',
        text: `${held.map((x) => x.fn).join(', ')} ${held.length > 1 ? 'are' : 'is'} ${allocator}'s own bookkeeping (${what}): the memory those objects describe is in ${allocator} memory, which this run does not pair; kleak live --alloc ${allocator} finds who holds it.`,
      });
    }
    const meta = this.sites.filter((x) => x.outstanding > 0 && SLAB_METADATA.test(x.fn));
    if (meta.length > 0) {
      out.push({ severity: 'info', text: `${meta.map((x) => x.fn).join(', ')}: the slab allocator's own metadata (a vector per slab for memcg accounting), which follows how many slabs the caches hold; never called growing itself (kleak watch shows which cache grows).` });
    }
    const vmallocPages = this.sites.filter((s) => s.allocator === 'page' && s.outstanding > 0 && /^__?v(?:m|z)alloc\w*$/.test(s.fn));
    if (vmallocPages.length > 0 && this.sites.some((s) => s.allocator === 'vmalloc')) {
      const n = vmallocPages.reduce((a, s) => a + s.outstanding, 0);
      out.push({ severity: 'info', text: `${n} outstanding pages are vmalloc's own (at ${vmallocPages.map((s) => s.fn).join(', ')}): they back vmalloc areas counted at their callers too, so their bytes are counted twice.` });
    }
    for (const n of this.inputNotices) out.push({ severity: 'warning', text: n });
    if (this.foldedSites.size > 0) {
      out.push({ severity: 'warning', text: `this trace has more than ${MAX_SITES.toLocaleString('en-US')} allocating functions: ${this.foldedSites.size >= 100_000 ? 'at least 100,000' : this.foldedSites.size.toLocaleString('en-US')} more were counted together as ${OTHER_SITES}.` });
    }
    if (t.badLines > 0) {
      const first = this.badSamples.slice(0, 5).map((b) => b.line).join(', ');
      out.push({ severity: 'warning', text: `${t.badLines} malformed lines were skipped (first: line ${first}).` });
    }
    if (this.filteredOut > 0 && !this.snapshotMode) {
      out.push({ severity: 'info', text: `${this.filteredOut} allocations did not match the filter; frees of them count as unknown frees.` });
    }
    return out;
  }
}

/** Distinct sites kept apart; more fold into OTHER_SITES (each site costs a series of up to 240 points). */
const MAX_SITES = 50_000;
const OTHER_SITES = '(other call sites)';

/** Call sites inside the slab allocator itself: their objects follow the number of slabs, not a caller's objects. */
const SLAB_METADATA = /^alloc_slab_obj_exts$/;

/**
 * Slab call sites that are another allocator's own metadata: a slab run on a vmalloc or percpu leak shows only
 * these (20 BPF maps of 1 MiB: 104 KiB of slab here for 20 MiB of vmalloc), so the report says where to look.
 */
const BOOKKEEPING: readonly { allocator: AllocatorName; fns: RegExp; what: string }[] = [
  { allocator: 'vmalloc', fns: /^(?:__vmalloc_node_range\w*|__vmalloc_area_node|__get_vm_area_node|__get_vm_area\w*|alloc_vmap_area|vm_area_alloc_pages|__bpf_map_area_alloc)$/, what: 'vm_struct, vmap_area and page arrays' },
  { allocator: 'percpu', fns: /^(?:pcpu_mem_zalloc|pcpu_alloc_chunk|pcpu_create_chunk|pcpu_alloc_pages|pcpu_populate_chunk)$/, what: 'percpu chunks and their maps' },
];

/**
 * Functions that free objects for the RCU machinery (6.x: kvfree_rcu_list frees one by one what could not be
 * batched, rcu_do_batch runs call_rcu callbacks). A site with frees from here hands objects to kfree_rcu, and
 * most of those leave through kfree_bulk with no tracepoint (docs/formats.md).
 */
const RCU_FREE_PATHS = /^(?:kvfree_rcu_list|kvfree_rcu_bulk|kfree_rcu_work|kvfree_rcu_drain_ready|kfree_rcu_monitor|rcu_do_batch|rcu_free_sheaf|rcu_core|kfree_rcu_shrink_scan)\b/;
const rcuMemo = new Map<string, boolean>();
function isRcuFreePath(callSite: string): boolean {
  let v = rcuMemo.get(callSite);
  if (v === undefined) {
    v = RCU_FREE_PATHS.test(callSite);
    if (rcuMemo.size < 4096) rcuMemo.set(callSite, v);
  }
  return v;
}

function bump(m: Map<number, number>, k: number, by = 1): void {
  m.set(k, (m.get(k) ?? 0) + by);
}

function top(m: Map<number, number>): number {
  let best = -1;
  let bestN = -1;
  for (const [k, n] of m) if (n > bestN) { best = k; bestN = n; }
  return best;
}

function topN(m: Map<number, number>, n: number): [number, number][] {
  return [...m].sort((a, b) => b[1] - a[1]).slice(0, n);
}

/**
 * A site's samples: the oldest object of each kind (stack, comm, requested size), then its youngest, then objects
 * spread over all its ages, then the oldest: a site whose objects come from two paths that look alike (13 of one,
 * then 6 of another) shows both, where the five oldest showed only the first (issue 22 item 10).
 */
function diverseSamples(oldest: readonly number[], kinds: Map<number, number> | undefined, ts: Float64Array, n: number, newest?: number, spread: readonly number[] = []): number[] {
  const out = kinds && kinds.size > 1 ? [...kinds.values()].sort((a, b) => ts[a]! - ts[b]!).slice(0, n) : [];
  const add = (slot: number | undefined) => {
    if (slot !== undefined && out.length < n && !out.includes(slot)) out.push(slot);
  };
  add(oldest[0]);
  add(newest);
  for (const slot of [...spread].sort((a, b) => ts[a]! - ts[b]!)) if (out.length < n - 1) add(slot);
  for (const slot of oldest) add(slot);
  return out.sort((a, b) => ts[a]! - ts[b]!);
}

/** Keeps the n slots of lowest hash: a deterministic sample spread evenly over a site's objects, whatever their age. */
function keepLowestHash(list: number[], slot: number, n: number): void {
  if (n <= 0) return;
  const h = Math.imul(slot + 1, 0x9e3779b1) >>> 0;
  const hashOf = (x: number) => Math.imul(x + 1, 0x9e3779b1) >>> 0;
  if (list.length < n) {
    list.push(slot);
    return;
  }
  let worst = 0;
  for (let i = 1; i < list.length; i++) if (hashOf(list[i]!) > hashOf(list[worst]!)) worst = i;
  if (h < hashOf(list[worst]!)) list[worst] = slot;
}

/** Keeps `list` as the n slots with the smallest timestamps, oldest first. */
function keepOldest(list: number[], slot: number, ts: Float64Array, n: number): void {
  if (n <= 0) return;
  const t = ts[slot]!;
  if (list.length === n && t >= ts[list[n - 1]!]!) return;
  let i = list.length === n ? n - 1 : list.length;
  if (list.length < n) list.push(slot);
  while (i > 0 && ts[list[i - 1]!]! > t) {
    list[i] = list[i - 1]!;
    i--;
  }
  list[i] = slot;
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}
