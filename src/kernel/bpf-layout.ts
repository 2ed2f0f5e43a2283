// The byte layouts of bpf/kleak.h on the kernel side, for the reader: the config kleak writes before load and the
// records it reads back. test/bpf/layout.test.ts compiles kleak.h and checks every offset here against it.

export const COMM_LEN = 16;
export const CACHE_LEN = 32;
export const STACK_DEPTH = 20;

export const CONFIG = {
  size: 152,
  minBytes: 0, maxBytes: 8, pid: 16, selfTgid: 20, commOn: 24, cacheOn: 28, stacks: 32, gfpAccount: 36,
  rcuMonitorFn: 40, rcuWorkFn: 48, comm: 56, cache: 72, pageSize: 104, events: 108, ownLo: 112, ownHi: 120,
  cgroups: 128, cgroupLevel: 132, cgroupId: 136, possibleCpus: 144, stackEvery: 148,
} as const;

export const ALLOC = {
  size: 72,
  tsNs: 0, callSite: 8, cacheId: 16, bytesReq: 24, bytesAlloc: 28, pid: 32, stackId: 36, flags: 40, stackWeight: 44, comm: 48, cgroup: 64,
} as const;

export const SITE_KEY = { size: 24, callSite: 0, cacheId: 8, bytesAlloc: 16, flags: 20 } as const;
export const SITE_COUNTS = { size: 48, allocs: 0, frees: 8, missed: 16, allocBytes: 24, freeBytes: 32, missedBytes: 40 } as const;

export const F_ACCOUNTED = 1;
export const ALLOCATOR_SHIFT = 8;
/** enum kleak_allocator, by value. */
export const ALLOCATORS = ['slab', 'vmalloc', 'page', 'percpu'] as const;
export type Allocator = (typeof ALLOCATORS)[number];

/** Indexes of the per-CPU counters (enum kleak_counter). */
export const COUNTER = { untracked: 0, stackLost: 1, rcuFrees: 2, bulkFrees: 3, bulkCut: 4, rcuBatches: 5, rcuCut: 6, rbLost: 7 } as const;
export const COUNTERS = 8;

/** struct kleak_event: kind (0 alloc, 1 free), the pointer, and the allocation's record. */
export const EVENT = { size: 88, kind: 0, ptr: 8, alloc: 16 } as const;

export interface BpfConfig {
  minBytes: bigint;
  maxBytes: bigint;
  pid: number;
  selfTgid: number;
  comm: string | undefined;
  cache: string | undefined;
  stacks: boolean;
  gfpAccount: number;
  rcuMonitorFn: bigint;
  rcuWorkFn: bigint;
  pageSize: number;
  events: boolean;
  /** Call sites kleak's own map causes (the BPF memory allocator's refill): [lo, hi), 0/0 for none. */
  ownLo: bigint;
  ownHi: bigint;
  /** Record each allocation's memory cgroup; and with cgroupId, keep only that cgroup (at cgroupLevel) and below. */
  cgroups: boolean;
  cgroupLevel: number;
  cgroupId: bigint;
  /** Possible CPUs: a percpu allocation's bytes are its size times this (0: the tracepoint's bytes_alloc). */
  possibleCpus: number;
  /** With stacks: 1 captures every allocation's stack; N > 1, each site's first ones and then one in N. */
  stackEvery: number;
}

/** A name as the kernel holds it: at most n-1 bytes and a NUL (a longer name could never match, so it is refused upstream). */
function putName(buf: Buffer, off: number, n: number, s: string | undefined): void {
  if (s !== undefined) buf.write(s, off, n - 1, 'utf8');
}

export function encodeConfig(c: BpfConfig): Buffer {
  const b = Buffer.alloc(CONFIG.size);
  b.writeBigUInt64LE(c.minBytes, CONFIG.minBytes);
  b.writeBigUInt64LE(c.maxBytes, CONFIG.maxBytes);
  b.writeUInt32LE(c.pid, CONFIG.pid);
  b.writeUInt32LE(c.selfTgid, CONFIG.selfTgid);
  b.writeUInt32LE(c.comm !== undefined ? 1 : 0, CONFIG.commOn);
  b.writeUInt32LE(c.cache !== undefined ? 1 : 0, CONFIG.cacheOn);
  b.writeUInt32LE(c.stacks ? 1 : 0, CONFIG.stacks);
  b.writeUInt32LE(c.gfpAccount >>> 0, CONFIG.gfpAccount);
  b.writeBigUInt64LE(c.rcuMonitorFn, CONFIG.rcuMonitorFn);
  b.writeBigUInt64LE(c.rcuWorkFn, CONFIG.rcuWorkFn);
  b.writeUInt32LE(c.pageSize, CONFIG.pageSize);
  b.writeUInt32LE(c.events ? 1 : 0, CONFIG.events);
  b.writeBigUInt64LE(c.ownLo, CONFIG.ownLo);
  b.writeBigUInt64LE(c.ownHi, CONFIG.ownHi);
  b.writeUInt32LE(c.cgroups ? 1 : 0, CONFIG.cgroups);
  b.writeUInt32LE(c.cgroupLevel, CONFIG.cgroupLevel);
  b.writeBigUInt64LE(c.cgroupId, CONFIG.cgroupId);
  b.writeUInt32LE(c.possibleCpus, CONFIG.possibleCpus);
  b.writeUInt32LE(c.stackEvery, CONFIG.stackEvery);
  putName(b, CONFIG.comm, COMM_LEN, c.comm);
  putName(b, CONFIG.cache, CACHE_LEN, c.cache);
  return b;
}

/** A NUL-terminated name in a fixed-size field. */
export function cString(b: Buffer, off: number, n: number): string {
  const end = b.indexOf(0, off);
  return b.toString('utf8', off, end < 0 || end > off + n ? off + n : end);
}
