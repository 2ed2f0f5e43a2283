// The contract between parse/ and engine/ (docs/design.md "The event"). Parsers push into a ParseSink; the engine is one.

/** Kernel allocators kleak pairs (docs/design.md "Three kinds of evidence"). Slab unless said otherwise. */
export type AllocatorName = 'slab' | 'vmalloc' | 'page' | 'percpu';

/**
 * The tracepoints of each allocator other than slab (docs/allocators.md): their tracefs group, the allocation, then its
 * frees. Every backend and the text parser read them from here.
 */
export const ALLOCATOR_TRACEPOINTS = {
  vmalloc: { group: 'vmalloc', alloc: 'alloc_vmap_area', frees: ['free_vmap_area_noflush'] },
  page: { group: 'kmem', alloc: 'mm_page_alloc', frees: ['mm_page_free', 'mm_page_free_batched'] },
  percpu: { group: 'percpu', alloc: 'percpu_alloc_percpu', frees: ['percpu_free_percpu'] },
} as const satisfies Record<Exclude<AllocatorName, 'slab'>, { group: string; alloc: string; frees: readonly string[] }>;

/** The kmem tracepoints kleak reads. */
export const TRACEPOINTS = ['kmalloc', 'kfree', 'kmem_cache_alloc', 'kmem_cache_free', 'kmalloc_node', 'kmem_cache_alloc_node'] as const;
export type Tracepoint = (typeof TRACEPOINTS)[number];

export interface KmemEvent {
  kind: 'alloc' | 'free';
  /** Seconds on the trace clock. */
  ts: number;
  /** The same in whole ns, where the source has it so (binary ring buffers): recordings write it without a float. */
  readonly tsNs?: number;
  /** Lower-case hex without 0x, as printed (hashed pointers are fine). */
  ptr: string;
  /** 'user_preparse+0x2a', or raw hex when the trace has no symbols. */
  callSite: string;
  bytesReq?: number;
  bytesAlloc?: number;
  /** kmem_cache name, or 'kmalloc-<n>' derived from bytesAlloc. */
  cache?: string;
  tracepoint: Tracepoint | string;
  pid?: number;
  comm?: string;
  /** The allocating task's memory cgroup, by path ("/kubepods/pod…"); kernel backend only (docs/cgroups.md). */
  cgroup?: string;
  cpu?: number;
  /** Innermost frame first. */
  stack?: string[];
  /** Sampled stacks (kernel backend): the allocations this one's stack stands for, when more than itself. */
  stackWeight?: number;
  /** The allocator, when not slab (vmalloc areas, pages, percpu). */
  allocator?: AllocatorName;
  /**
   * The engine's key for ptr (engine/pointer-table.ts PtrKey), when the parser computed it from the bytes; the
   * engine then neither needs nor makes the text.
   */
  readonly key?: number;
}

/**
 * One outstanding allocation as a kernel-side pairing table reports it (bpftrace pairs mode). A snapshot of
 * these replaces what the engine knew about outstanding pointers.
 */
export interface OutstandingRecord {
  ptr: string;
  ts: number;
  callSite: string;
  bytesReq?: number;
  bytesAlloc?: number;
  cache?: string;
  pid?: number;
  comm?: string;
  cgroup?: string;
  stack?: string[];
  /** As KmemEvent.stackWeight. */
  stackWeight?: number;
  allocator?: AllocatorName;
}

/** Per call site counters kept by a kernel-side pairing table. */
export interface SiteTotalsRecord {
  callSite: string;
  allocator?: AllocatorName;
  allocs: number;
  frees: number;
  /** Allocations replaced while tracked (their free was missed). */
  missedFrees?: number;
  outstanding: number;
  outstandingBytes: number;
}

export interface KernelSnapshot {
  ts: number;
  /** Absent when the snapshot carries only per-site totals (too many pointers to list every interval). */
  outstanding?: OutstandingRecord[];
  sites: SiteTotalsRecord[];
  /** Allocations the kernel table could not hold (map full). */
  untracked: number;
}

export interface ParseSink {
  event(e: KmemEvent): void;
  /** A stack that belongs to the last event seen on that CPU (trace-cmd -T, tracefs stacktrace). */
  stack(cpu: number, frames: string[]): void;
  lost(count: number, cpu?: number): void;
  bad(lineNo: number, reason: string): void;
  snapshot?(s: KernelSnapshot): void;
  /** Something about the input the report must say (once per text): events read without a time, for example. */
  notice?(text: string): void;
  /** What a kleak recording says of the run that made it (its header line). */
  recorded?(info: RecordedRun): void;
}

export interface RecordedRun {
  source?: { kind?: string; backend?: string; mode?: string };
  filter?: Record<string, unknown>;
  started?: string;
  /** The recording has no end record: kleak was killed (or its disk filled) before it finished. */
  cutShort?: boolean;
}

export interface LineParser {
  line(text: string, lineNo: number): void;
  /**
   * The same for the line in bytes [start, end) of `buf` (no newline), from sources that read bytes (replay):
   * parsers of the large formats read it without making a string (parse/ftrace-text.ts).
   */
  bytes?(buf: Buffer, start: number, end: number, lineNo: number): void;
  end(): void;
}

/** The slab allocator a kernel was built with: SLUB only since 6.8 (SLOB was removed in 6.4, SLAB in 6.8). */
export type SlabAllocator = 'slub' | 'slab' | 'slob';
export const SLAB_ALLOCATORS: readonly SlabAllocator[] = ['slub', 'slab', 'slob'];

/** What a parser is told of the traced machine. */
export interface ParserOptions {
  /** Bytes per page (4096 unless said: --page-size): page orders, and where kmalloc-N caches end (two pages). */
  pageSize?: number;
  /** The traced kernel's slab allocator (SLUB unless said: --slab-allocator): which kmalloc sizes have caches. */
  slab?: SlabAllocator;
}

export type FormatName = 'trace-cmd' | 'trace-pipe' | 'bpftrace' | 'ndjson';

export interface TraceFormat {
  name: FormatName;
  /** Used in "unknown format; kleak reads: …". */
  describe: string;
  sniff(head: readonly string[]): boolean;
  createParser(sink: ParseSink, o?: ParserOptions): LineParser;
}
