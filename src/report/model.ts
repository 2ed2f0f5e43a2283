import type { AllocatorName } from '../event.js';
// What views read: a snapshot of the engine (docs/design.md "The JSON report", plus what the text and TUI views need).

import type { EventFilter } from '../engine/filter.js';
import type { Verdict } from '../engine/verdict.js';

export interface SourceInfo {
  kind: 'replay' | 'live';
  format?: string;
  path?: string;
  backend?: string;
  /** bpftrace: 'events' (every event streamed) or 'pairs' (pointer table kept in the kernel). */
  mode?: string;
  /** Replay of a kleak recording: the backend (and mode) that made it. */
  recordedWith?: string;
  /** Live over ssh (--ssh): the host traced. */
  host?: string;
  /** The tracer's own version, where it matters to the answer ("bpftrace v0.23.2"). */
  version?: string;
}

export interface Totals {
  lines: number;
  events: number;
  allocs: number;
  frees: number;
  matchedFrees: number;
  unknownFrees: number;
  missedFrees: number;
  lostEvents: number;
  badLines: number;
  outstanding: number;
  outstandingBytes: number;
}

export interface StackReport {
  frames: string[];
  /** Outstanding objects with this stack: exact, or an estimate (rounded) when stacks were sampled. */
  outstanding: number;
  /** When stacks were sampled: the site's sampled objects that have this stack (outstanding is then an estimate). */
  sampled?: number;
}

export interface SampleReport {
  ptr: string;
  ageSec: number;
  pid?: number;
  comm?: string;
  bytesReq?: number;
}

export interface SiteReport {
  function: string;
  /** The module the call site is in (`func+0x10/0x40 [module]`); absent for the kernel itself. */
  module?: string;
  /** The allocator, when not slab (vmalloc, page, percpu). */
  allocator?: AllocatorName;
  callSite: string;
  /** The cache most of its outstanding objects are in (a function allocating several sizes: see `caches`). */
  cache: string;
  /** Every cache its outstanding objects are in, most first, when there is more than one. */
  caches?: { cache: string; outstanding: number }[];
  /** The memory cgroups of the tasks that allocated its outstanding objects, most first (kernel backend). */
  cgroups?: { cgroup: string; outstanding: number }[];
  outstanding: number;
  outstandingBytes: number;
  allocs: number;
  frees: number;
  oldestAgeSec: number;
  growthPerMin: number;
  verdict: Verdict;
  stacks: StackReport[];
  samples: SampleReport[];
  /** Pointers allocated again while still outstanding here: freed through a path with no tracepoint. */
  missedFrees: number;
  /** Outstanding allocations older than the last lost event: their free may have been lost. */
  possiblePhantoms: number;
  /**
   * Set when this site's objects are known to leave by a path the trace does not show one by one: some were seen
   * freed from the RCU machinery ('rcu'), or its pointers came back in new allocations while outstanding
   * ('reused'). Its outstanding count is then "not seen freed", and its verdict is never `growing` from that alone.
   */
  unseenFrees?: 'rcu' | 'reused';
  /**
   * Objects this site still held in the trace that their slab holds free at the end (kleak checked the slab state):
   * freed by a path the backend cannot see (kfree_rcu batches). They are not counted in `outstanding`.
   */
  foundFree?: number;
  /**
   * Set when the count rose but the objects live a bounded time (TCP TIME_WAIT sockets live 60 s): every object
   * allocated before this many seconds ago was freed, and the count since then is not rising. The verdict is then
   * `churn`; text says "bounded (objects live about N s)".
   */
  boundedLifetimeSec?: number;
  /** When only some of its objects' stacks were recorded (sampled stacks): how many of `outstanding` had one. */
  stacksSampled?: number;
  /** Outstanding count at each of Report.series.times. */
  series: number[];
  /**
   * The kernel-side pointer table was full while tracing: allocations it could not hold are counted in totals, not
   * at their site, so this site's outstanding count is a lower bound (text: "≥").
   */
  lowerBound?: true;
}

export type NoticeSeverity = 'info' | 'warning' | 'dataLoss';

export interface Notice {
  severity: NoticeSeverity;
  text: string;
}

export interface Report {
  kleak: 1;
  source: SourceInfo;
  filter: EventFilter;
  span: { firstTs: number; lastTs: number };
  totals: Totals;
  sites: SiteReport[];
  /** Outstanding bytes and growth by module, "the kernel itself" as one row (all sites, before --top). */
  modules: { module: string; outstanding: number; outstandingBytes: number; growthPerMin: number; growingSites: number }[];
  /** Outstanding objects and bytes by the allocating task's memory cgroup, most bytes first (kernel backend). */
  cgroups?: { cgroup: string; outstanding: number; outstandingBytes: number }[];
  /** Sites with outstanding allocations, before --top cut the list. */
  siteCount: number;
  minAgeSec: number;
  notices: Notice[];
  /** The first malformed lines, with why. */
  badLineSamples: { line: number; reason: string }[];
  series: { stepSec: number; times: number[] };
}
