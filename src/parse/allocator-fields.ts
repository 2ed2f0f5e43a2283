// Fields of the vmalloc, page and percpu tracepoints (docs/allocators.md), as trace_pipe and trace-cmd print
// them. These events are fewer than kmem's (pages excepted), so they are read from the body's text.
//
//   alloc_vmap_area: va_start: 18446683600570023936 size=1052672 align=4096 vstart=0x… vend=0x… failed=0
//   free_vmap_area_noflush: va_start=0xffffc90000c5d000 nr_lazy=0 nr_lazy_max=32768
//   mm_page_alloc: page=0xffffea0004a1b2c0 pfn=0x1286cb order=0 migratetype=0 gfp_flags=GFP_KERNEL_ACCOUNT
//   mm_page_free: page=0xffffea0004a1b2c0 pfn=0x1286cb order=0          (mm_page_free_batched: order=0 implied)
//   percpu_alloc_percpu: call_site=bpf_map_alloc_percpu+0x5a/0xd0 reserved=0 is_atomic=0 size=8 align=8
//                        base_addr=0x… off=12345 ptr=0x… bytes_alloc=16 gfp_flags=GFP_KERNEL_ACCOUNT
//   percpu_free_percpu: base_addr=0x… off=12345 ptr=0x…

import { ALLOCATOR_TRACEPOINTS, type AllocatorName, type KmemEvent } from '../event.js';
import { normaliseCallSite, normalisePtr } from './kmem-fields.js';

type OtherAllocator = Exclude<AllocatorName, 'slab'>;

type EventRole = { allocator: OtherAllocator; kind: 'alloc' | 'free' };

/** The allocator of each event kleak pairs outside the slab, and whether it allocates. */
export const ALLOCATOR_EVENTS: ReadonlyMap<string, EventRole> = new Map<string, EventRole>([
  ...(Object.entries(ALLOCATOR_TRACEPOINTS) as [OtherAllocator, (typeof ALLOCATOR_TRACEPOINTS)[OtherAllocator]][]).flatMap(([allocator, tp]) => [
    [tp.alloc, { allocator, kind: 'alloc' }] as [string, EventRole],
    ...tp.frees.map((f): [string, EventRole] => [f, { allocator, kind: 'free' }]),
  ]),
  // 3.x kernels' names for the page frees
  ['mm_page_free_direct', { allocator: 'page', kind: 'free' }],
  ['mm_pagevec_free', { allocator: 'page', kind: 'free' }],
]);

/** The call site given to vmalloc areas and pages until their stack names the caller (parse/ftrace-text.ts). */
export function noStackSite(allocator: AllocatorName): string {
  return `(${allocator}: no stack)`;
}

/** The value of `name=` in a body ("size=1052672 …"), or undefined. */
function field(body: string, name: string): string | undefined {
  let at = body.indexOf(name);
  while (at > 0 && body.charCodeAt(at - 1) !== 32) at = body.indexOf(name, at + 1);
  if (at < 0) return undefined;
  const s = at + name.length;
  const e = body.indexOf(' ', s);
  return body.slice(s, e < 0 ? body.length : e);
}

function decimalField(body: string, name: string): number | undefined | 'bad' {
  const v = field(body, name);
  if (v === undefined) return undefined;
  return /^\d+$/.test(v) ? Number(v) : 'bad';
}

/** An unsigned 64-bit value printed in decimal (vmalloc's va_start) as 16 hex digits, as its free prints it. */
function decimalToHex(v: string): string | undefined {
  if (!/^\d{1,20}$/.test(v)) return undefined;
  const n = BigInt(v);
  return n === 0n || n >= 1n << 64n ? undefined : n.toString(16).padStart(16, '0');
}

export interface AllocatorLine {
  ts: number;
  pid: number;
  comm: string;
  cpu: number;
}

/**
 * The event of an allocator tracepoint line: 'null' for one that allocated nothing (a failed allocation, a null
 * pointer: not an event, not an error), or why its fields are malformed.
 */
export function readAllocatorEvent(name: string, body: string, at: AllocatorLine, pageSize: number): KmemEvent | 'null' | string {
  const known = ALLOCATOR_EVENTS.get(name);
  if (known === undefined) return `${name} is not an allocator event`;
  const { allocator, kind } = known;
  const b = body.trim();
  // The cache column names the allocator, as the kernel backend's reports do.
  const base = { kind, ts: at.ts, tracepoint: name, pid: at.pid, cpu: at.cpu, allocator, ...(kind === 'alloc' ? { comm: at.comm, cache: allocator } : {}) };
  if (allocator === 'vmalloc') {
    if (kind === 'alloc') {
      const m = /^va_start: (\d+) /.exec(b);
      if (!m) return 'no va_start: field';
      if (field(b, 'failed=') !== undefined && field(b, 'failed=') !== '0') return 'null';
      const ptr = decimalToHex(m[1]!);
      if (ptr === undefined) return m[1] === '0' ? 'null' : `va_start: ${m[1]} is not an address`;
      const size = decimalField(b, 'size=');
      if (size === undefined || size === 'bad') return size === 'bad' ? `size=${field(b, 'size=')} is not a number` : 'no size= field';
      return { ...base, ptr, callSite: noStackSite('vmalloc'), bytesAlloc: size };
    }
    const raw = field(b, 'va_start=');
    if (raw === undefined) return 'no va_start= field';
    const ptr = normalisePtr(raw);
    if (ptr === undefined) return `va_start=${raw} is not an address`;
    if (ptr === null) return 'null';
    return { ...base, ptr: ptr.padStart(16, '0'), callSite: '' };
  }
  if (allocator === 'page') {
    // struct page's address is the key: it prints alike in the alloc and every free event of every kernel version
    // (the pfn is hex on some and decimal on others).
    const raw = field(b, 'page=');
    if (raw === undefined) return 'no page= field';
    const ptr = normalisePtr(raw);
    if (ptr === undefined) return `page=${raw} is not a pointer`;
    if (ptr === null) return 'null';
    if (kind === 'free') return { ...base, ptr, callSite: '' };
    const order = decimalField(b, 'order=');
    if (order === undefined || order === 'bad' || order > 20) return order === undefined ? 'no order= field' : `order=${field(b, 'order=')} is not a page order`;
    return { ...base, ptr, callSite: noStackSite('page'), bytesAlloc: pageSize * 2 ** order };
  }
  // percpu
  const raw = field(b, 'ptr=');
  if (raw === undefined) return 'no ptr= field';
  const ptr = normalisePtr(raw);
  if (ptr === undefined) return `ptr=${raw} is not a pointer`;
  if (ptr === null) return 'null';
  if (kind === 'free') return { ...base, ptr, callSite: '' };
  const cs = field(b, 'call_site=');
  const rest = cs === undefined ? '' : b.slice(b.indexOf('call_site=') + 10 + cs.length);
  // Kernels before 5.17 print no call site and no bytes_alloc (size is per CPU then).
  const bytes = decimalField(b, 'bytes_alloc=') ?? decimalField(b, 'size=');
  if (bytes === undefined || bytes === 'bad') return bytes === undefined ? 'no size= field' : 'size or bytes_alloc is not a number';
  return { ...base, ptr, callSite: cs === undefined ? '(percpu: no call site)' : normaliseCallSite(cs, rest), bytesAlloc: bytes };
}
