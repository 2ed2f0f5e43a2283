// Reading a tracefs instance's per-CPU ring buffers in the kernel's own binary layout (per_cpu/cpuN/trace_pipe_raw)
// instead of trace_pipe's text. Under a busy kernel most of the reader's time went to the kernel formatting each
// event as text for it (%pS call sites looked up in kallsyms, %p pointers, decimal sizes): 62% of a CPU (4.95 s of
// kernel time in 8 s), measured with the pipe workload. Raw pages cost the kernel a page copy; kleak reads the fields at the offsets each event's
// format file gives and names call sites itself, once per address.
//
// A sub-buffer (events/header_page): u64 timestamp, a long "commit" (bytes of data, flags in bits 30-31), then
// events. Each event starts with a 32-bit word (events/header_event): type_len (5 bits) and time_delta (27 bits).
// type_len 1-28: the record is type_len * 4 bytes; 0: its length follows in the next word (including that word);
// 29 padding (a discarded event: its length follows; with no delta, the rest of the page), 30 a time extend
// (delta += next word << 27), 31 an absolute time stamp. A record starts with the common fields (common_type, the
// event's ID, at 0; common_pid at 4).
//
// Each CPU's buffer is in time order; across CPUs kleak merges by time. The instance's clock is set to "mono" so
// that events can be compared with the reader's own clock: once a round has read every CPU dry, every event
// committed before the round began has been read, and those are handed on in time order (RawMerger).

import { readFileSync, readdirSync } from 'node:fs';
import type { AllocatorName, KmemEvent, ParseSink, SlabAllocator } from '../event.js';
import { allocatorCaller } from '../engine/stacks.js';
import type { Kallsyms } from '../kernel/kallsyms.js';
import { ALLOCATOR_EVENTS, noStackSite } from '../parse/allocator-fields.js';
import { kmallocCache, kmallocLabels, type KmallocLabels } from '../parse/kmem-fields.js';
import { NULL_PTR_KEY, ptrFromKey } from '../engine/pointer-table.js';

export interface EventField {
  offset: number;
  size: number;
}

export interface EventFormat {
  id: number;
  name: string;
  fields: ReadonlyMap<string, EventField>;
}

/** An event's format file (events/<group>/<name>/format): its ID and each field's offset and size. */
export function parseEventFormat(text: string): EventFormat | undefined {
  const name = /^name: (\S+)$/m.exec(text)?.[1];
  const id = Number(/^ID: (\d+)$/m.exec(text)?.[1]);
  if (name === undefined || !Number.isInteger(id)) return undefined;
  const fields = new Map<string, EventField>();
  for (const m of text.matchAll(/^\s*field:([^;]*);\s*offset:(\d+);\s*size:(\d+);/gm)) {
    // "unsigned long call_site", "__data_loc char[] name", "unsigned long caller[8]": the name is the last word.
    const decl = m[1]!.trim().replace(/\[\d*\]$/, '');
    const field = /(\w+)$/.exec(decl)?.[1];
    if (field !== undefined) fields.set(field, { offset: Number(m[2]), size: Number(m[3]) });
  }
  return { id, name, fields };
}

/** A field of a record (bounds-checked: a short record gives NaN). */
function u64(b: Buffer, at: number, size: number, f: EventField): number {
  return f.offset + 8 <= size ? b.readUInt32LE(at + f.offset + 4) * 2 ** 32 + b.readUInt32LE(at + f.offset) : NaN;
}
function u32(b: Buffer, at: number, size: number, f: EventField): number {
  return f.offset + 4 <= size ? b.readUInt32LE(at + f.offset) : NaN;
}

const TYPE_PADDING = 29;
const TYPE_TIME_EXTEND = 30;
const TYPE_TIME_STAMP = 31;
const PAGE_DATA = 16;

/** A kmem event read from a ring buffer: the pointer's text is made only if asked (recordings), as the engine keys by number. */
class RawKmemEvent implements KmemEvent {
  stack?: string[];
  readonly ts: number;
  constructor(
    readonly kind: 'alloc' | 'free',
    private readonly ns: number,
    readonly key: number | undefined,
    private readonly hex: string | undefined,
    public callSite: string,
    readonly tracepoint: string,
    readonly pid: number,
    readonly cpu: number,
    readonly comm: string | undefined,
    readonly bytesReq: number | undefined,
    readonly bytesAlloc: number | undefined,
    readonly cache: string | undefined,
    readonly allocator: AllocatorName | undefined,
  ) {
    this.ts = ns / 1e9;
  }

  get ptr(): string {
    // The engine's keys (engine/pointer-table.ts): 0xfff… pointers by their low 52 bits, 0x000… ones as -v - 1.
    return this.hex ?? ptrFromKey(this.key!);
  }

  /** The time in ns, as the ring buffer has it: a recording writes it exactly, without formatting a float. */
  get tsNs(): number {
    return this.ns;
  }

  toJSON(): KmemEvent {
    const { kind, ts, ptr, callSite, bytesReq, bytesAlloc, cache, tracepoint, pid, comm, cpu, stack, allocator } = this;
    return { kind, ts, ptr, callSite, bytesReq, bytesAlloc, cache, tracepoint, pid, comm, cpu, ...(stack ? { stack } : {}), ...(allocator ? { allocator } : {}) };
  }
}

type Role =
  | { kind: 'slab-alloc'; name: string; callSite: EventField; ptr: EventField; req: EventField; alloc: EventField; cacheName?: EventField; accounted?: EventField; gfp?: EventField }
  | { kind: 'slab-free'; name: string; callSite: EventField; ptr: EventField }
  // The other allocators' records, each keyed by `key` (a vmalloc area's address, a page's pfn, a percpu pointer),
  // with their allocator and direction from the table every backend reads (parse/allocator-fields.ts).
  | (OtherAllocator & (
      | { kind: 'vmalloc-alloc'; key: EventField; size: EventField; failed?: EventField }
      | { kind: 'vmalloc-free'; key: EventField }
      | { kind: 'page-alloc'; key: EventField; order: EventField }
      | { kind: 'page-free'; key: EventField }
      | { kind: 'percpu-alloc'; key: EventField; callSite: EventField; bytes: EventField }
      | { kind: 'percpu-free'; key: EventField }
    ))
  | { kind: 'stack'; size: EventField; caller: EventField };

type OtherAllocator = { name: string; allocator: 'vmalloc' | 'page' | 'percpu'; alloc: boolean };

/** The allocator of a vmalloc, page or percpu event, and whether it allocates. */
function otherAllocator(name: string): OtherAllocator {
  const role = ALLOCATOR_EVENTS.get(name)!;
  return { name, allocator: role.allocator, alloc: role.kind === 'alloc' };
}

/** What kleak reads from each event it enabled; undefined when the format lacks a field kleak needs. */
function roleOf(f: EventFormat): Role | undefined {
  const F = (n: string) => f.fields.get(n);
  const need = <T extends Record<string, EventField | undefined>>(o: T): { [K in keyof T]: EventField } | undefined => (Object.values(o).every((v) => v !== undefined) ? (o as { [K in keyof T]: EventField }) : undefined);
  const name = f.name;
  switch (name) {
    case 'kmalloc':
    case 'kmalloc_node':
    case 'kmem_cache_alloc':
    case 'kmem_cache_alloc_node': {
      const r = need({ callSite: F('call_site'), ptr: F('ptr'), req: F('bytes_req'), alloc: F('bytes_alloc') });
      const cacheName = F('name');
      // kmem_cache_alloc records "accounted"; kmalloc's text derives it from gfp_flags (__GFP_ACCOUNT), as kleak does.
      const accounted = F('accounted');
      const gfp = F('gfp_flags');
      return r && { kind: 'slab-alloc', name, ...r, ...(cacheName ? { cacheName } : {}), ...(accounted ? { accounted } : {}), ...(gfp ? { gfp } : {}) };
    }
    case 'kfree':
    case 'kmem_cache_free': {
      const r = need({ callSite: F('call_site'), ptr: F('ptr') });
      return r && { kind: 'slab-free', name, ...r };
    }
    case 'alloc_vmap_area': {
      const r = need({ key: F('addr'), size: F('size') });
      const failed = F('failed');
      return r && { kind: 'vmalloc-alloc', ...otherAllocator(name), ...r, ...(failed ? { failed } : {}) };
    }
    case 'free_vmap_area_noflush': {
      const r = need({ key: F('va_start') });
      return r && { kind: 'vmalloc-free', ...otherAllocator(name), ...r };
    }
    case 'mm_page_alloc': {
      const r = need({ key: F('pfn'), order: F('order') });
      return r && { kind: 'page-alloc', ...otherAllocator(name), ...r };
    }
    case 'mm_page_free':
    case 'mm_page_free_batched': {
      const r = need({ key: F('pfn') });
      return r && { kind: 'page-free', ...otherAllocator(name), ...r };
    }
    case 'percpu_alloc_percpu': {
      const r = need({ callSite: F('call_site'), key: F('ptr'), bytes: F('bytes_alloc') });
      return r && { kind: 'percpu-alloc', ...otherAllocator(name), ...r };
    }
    case 'percpu_free_percpu': {
      const r = need({ key: F('ptr') });
      return r && { kind: 'percpu-free', ...otherAllocator(name), ...r };
    }
    case 'kernel_stack': {
      const r = need({ size: F('size'), caller: F('caller') });
      return r && { kind: 'stack', ...r };
    }
  }
  return undefined;
}

export interface RawDecoderOptions {
  syms: Kallsyms;
  pageSize: number;
  slab: SlabAllocator;
  /** __GFP_ACCOUNT on the traced kernel (kernel/btf.ts gfpAccount; 0: unknown, nothing is kmalloc-cg-N). */
  gfpAccount: number;
  /** The comm of a pid (a thread id), read once per pid; undefined when it is gone. */
  comm: (pid: number) => string | undefined;
}

/**
 * Decodes sub-buffers read from one instance's trace_pipe_raw files into kmem events. A stack (the stacktrace
 * trigger's kernel_stack record) follows its event on the same CPU: it is attached to it, and names a vmalloc
 * area's or page's caller.
 */
export class RawRingDecoder {
  private readonly roles = new Map<number, Role>();
  private readonly labels: KmallocLabels;
  private readonly siteNames = new Map<number, string>();
  private readonly frameNames = new Map<number, string>();
  /** The last allocation read on each CPU, while a stack may still follow it. */
  private readonly lastAlloc = new Map<number, RawKmemEvent>();
  /** Records whose fields lay outside the record (never seen; counted, never fatal). */
  malformed = 0;
  /** Records of a known event too short for its fields (damaged): counted, never turned into events. */
  badRecords = 0;
  records = 0;

  constructor(
    formats: readonly EventFormat[],
    private readonly o: RawDecoderOptions,
  ) {
    for (const f of formats) {
      const r = roleOf(f);
      if (r !== undefined) this.roles.set(f.id, r);
    }
    this.labels = kmallocLabels(o.slab, o.pageSize);
  }

  /** Which of these formats kleak cannot read (a field it needs is missing): the caller falls back to text. */
  static unreadable(formats: readonly EventFormat[]): string[] {
    return formats.filter((f) => roleOf(f) === undefined).map((f) => f.name);
  }

  /** One sub-buffer of `cpu` (`len` bytes read into `page`): its events go to `out`; returns its last time, ns. */
  page(page: Buffer, len: number, cpu: number, out: KmemEvent[]): number {
    if (len < PAGE_DATA) return -Infinity;
    let ts = Number(page.readBigUInt64LE(0));
    const commit = page.readUInt32LE(8);
    // The data's length; bits 30-31 flag events missed before this page (counted from the CPUs' overrun stats).
    const end = Math.min(len, PAGE_DATA + (commit & 0x7ffffff));
    let at = PAGE_DATA;
    while (at + 4 <= end) {
      const head = page.readUInt32LE(at);
      const typeLen = head & 31;
      const delta = head >>> 5;
      let data: number;
      let size: number;
      if (typeLen === TYPE_PADDING) {
        if (delta === 0 || at + 8 > end) break; // the rest of the page is unused
        ts += delta;
        at += 4 + page.readUInt32LE(at + 4);
        continue;
      } else if (typeLen === TYPE_TIME_EXTEND || typeLen === TYPE_TIME_STAMP) {
        if (at + 8 > end) break;
        const ext = page.readUInt32LE(at + 4) * 2 ** 27 + delta;
        // An absolute stamp keeps only the low 59 bits; the page's stamp gives the rest.
        ts = typeLen === TYPE_TIME_EXTEND ? ts + ext : ts - (ts % 2 ** 59) + ext;
        at += 8;
        continue;
      } else if (typeLen === 0) {
        if (at + 8 > end) break;
        size = page.readUInt32LE(at + 4) - 4;
        data = at + 8;
        at = data + ((size + 3) & ~3);
      } else {
        size = typeLen * 4;
        data = at + 4;
        at = data + size;
      }
      ts += delta;
      if (size < 8 || data + size > end) {
        this.malformed++;
        break;
      }
      this.records++;
      this.record(page, data, size, ts, cpu, out);
    }
    return ts;
  }

  /** Says, once at the end, how many records could not be read (none, unless the kernel's layout surprised kleak). */
  flushNotices(sink: ParseSink): void {
    if (this.malformed > 0) sink.notice?.(`${this.malformed} sub-buffers of the ring buffers held a record kleak could not read; the rest of each was skipped.`);
    if (this.badRecords > 0) sink.notice?.(`${this.badRecords} records were too short for their event's fields (damaged) and were skipped.`);
  }

  private record(b: Buffer, at: number, size: number, tsNs: number, cpu: number, out: KmemEvent[]): void {
    const role = this.roles.get(b.readUInt16LE(at));
    if (role === undefined) return;
    if (role.kind === 'stack') {
      const last = this.lastAlloc.get(cpu);
      this.lastAlloc.delete(cpu);
      if (last === undefined) return;
      const n = b.readInt32LE(at + role.size.offset);
      const frames: string[] = [];
      for (let i = 0; i < n && role.caller.offset + 8 * (i + 1) <= size; i++) {
        const p = at + role.caller.offset + 8 * i;
        const frame = this.frame(b.readUInt32LE(p + 4), b.readUInt32LE(p));
        if (frame !== undefined) frames.push(frame);
      }
      last.stack = frames;
      if (last.allocator === 'vmalloc' || last.allocator === 'page') last.callSite = allocatorCaller(last.allocator, frames) ?? last.callSite;
      return;
    }
    this.lastAlloc.delete(cpu);
    const pid = b.readInt32LE(at + 4);
    const ts = tsNs;
    let e: RawKmemEvent | undefined;
    switch (role.kind) {
      case 'slab-alloc': {
        // A record cut short reads NaN for the fields past its end: damaged, counted, not an event.
        const bytesAlloc = u64(b, at, size, role.alloc);
        if (!Number.isFinite(bytesAlloc) || role.ptr.offset + 8 > size) return void this.badRecords++;
        const key = this.key(b, at, size, role.ptr);
        if (key === NULL_PTR_KEY) return;
        const cache = role.cacheName !== undefined ? this.dataLoc(b, at, size, role.cacheName) : kmallocCache(bytesAlloc, this.accounted(b, at, size, role), this.labels);
        e = new RawKmemEvent('alloc', ts, key, this.keyHex, this.site(b, at, role.callSite), role.name, pid, cpu, this.o.comm(pid), u64(b, at, size, role.req), bytesAlloc, cache, undefined);
        break;
      }
      case 'slab-free': {
        if (role.ptr.offset + 8 > size) return void this.badRecords++;
        const key = this.key(b, at, size, role.ptr);
        if (key === NULL_PTR_KEY) return;
        e = new RawKmemEvent('free', ts, key, this.keyHex, '', role.name, pid, cpu, undefined, undefined, undefined, undefined, undefined);
        break;
      }
      default: {
        // vmalloc areas, pages and percpu chunks: keyed by address, pfn or percpu pointer; the cache column names
        // the allocator, as the text parser's events do. Areas and pages wait for their stack to name the caller.
        const { allocator, alloc } = role;
        if (role.kind === 'vmalloc-alloc' && role.failed !== undefined && u32(b, at, size, role.failed) !== 0) return;
        if (role.key.offset + 8 > size) return void this.badRecords++;
        const key = this.key(b, at, size, role.key);
        if (key === NULL_PTR_KEY) return;
        const bytes =
          role.kind === 'vmalloc-alloc'
            ? u64(b, at, size, role.size)
            : role.kind === 'page-alloc'
              ? this.o.pageSize * 2 ** u32(b, at, size, role.order)
              : role.kind === 'percpu-alloc'
                ? u64(b, at, size, role.bytes)
                : undefined;
        if (bytes !== undefined && !Number.isFinite(bytes)) return void this.badRecords++;
        const site = !alloc ? '' : role.kind === 'percpu-alloc' ? this.site(b, at, role.callSite) : noStackSite(allocator);
        e = new RawKmemEvent(alloc ? 'alloc' : 'free', ts, key, this.keyHex, site, role.name, pid, cpu, alloc ? this.o.comm(pid) : undefined, bytes, bytes, alloc ? allocator : undefined, allocator);
      }
    }
    if (e === undefined) return;
    if (e.kind === 'alloc') this.lastAlloc.set(cpu, e);
    out.push(e);
  }

  /** Whether a kmalloc was accounted to a memory cgroup (kmalloc-cg-N): its own field, else __GFP_ACCOUNT in its flags. */
  private accounted(b: Buffer, at: number, size: number, role: { accounted?: EventField; gfp?: EventField }): boolean {
    if (role.accounted !== undefined) return role.accounted.offset < size && b[at + role.accounted.offset] !== 0;
    const mask = this.o.gfpAccount;
    if (role.gfp === undefined || mask === 0 || role.gfp.offset + 4 > size) return false;
    // gfp_t is 32 bits wide: its low word holds every flag
    return (b.readUInt32LE(at + role.gfp.offset) & mask) !== 0;
  }

  /** The hex text of the last value key() could not make a number of (see key). */
  private keyHex: string | undefined;

  /**
   * The engine's key of a 64-bit value (engine/pointer-table.ts ptrKey), NULL_PTR_KEY for 0 (no object), or
   * undefined with the value's hex text in keyHex. No object per record: this runs for every event.
   */
  private key(b: Buffer, at: number, size: number, f: EventField): number | undefined {
    this.keyHex = undefined;
    if (f.offset + 8 > size) return NULL_PTR_KEY;
    const lo = b.readUInt32LE(at + f.offset);
    const hi = b.readUInt32LE(at + f.offset + 4);
    if (lo === 0 && hi === 0) return NULL_PTR_KEY;
    const top = hi >>> 20;
    const low52 = (hi & 0xfffff) * 2 ** 32 + lo;
    if (top === 0xfff) return low52;
    if (top === 0) return -low52 - 1;
    this.keyHex = hi.toString(16).padStart(8, '0') + lo.toString(16).padStart(8, '0');
    return undefined;
  }

  /** A call site named as %pS prints it (func+0xOFF [module]), once per address. */
  private site(b: Buffer, at: number, f: EventField): string {
    const lo = b.readUInt32LE(at + f.offset);
    const hi = b.readUInt32LE(at + f.offset + 4);
    const k = (hi & 0xfffff) * 2 ** 32 + lo;
    let s = this.siteNames.get(k);
    if (s === undefined) this.siteNames.set(k, (s = this.o.syms.format((BigInt(hi) << 32n) | BigInt(lo))));
    return s;
  }

  /** A stack frame as the text stack prints it (%ps: the function, and its module). */
  private frame(hi: number, lo: number): string | undefined {
    if (hi === 0 && lo === 0) return undefined;
    const k = (hi & 0xfffff) * 2 ** 32 + lo;
    let s = this.frameNames.get(k);
    if (s === undefined) {
      const a = (BigInt(hi) << 32n) | BigInt(lo);
      const sym = this.o.syms.lookup(a);
      s = sym ? `${sym.name}${sym.module ? ` [${sym.module}]` : ''}` : a.toString(16);
      this.frameNames.set(k, s);
    }
    return s;
  }

  /** A __data_loc string (offset in the low 16 bits, length in the high 16, from the record's start). */
  private dataLoc(b: Buffer, at: number, size: number, f: EventField): string | undefined {
    const loc = b.readUInt32LE(at + f.offset);
    const off = loc & 0xffff;
    let len = loc >>> 16;
    if (off + len > size) return undefined;
    while (len > 0 && b[at + off + len - 1] === 0) len--;
    return this.texts(b, at + off, len);
  }

  private readonly cacheNames = new Map<string, string>();
  /** Cache names come back as the same string each time. */
  private texts(b: Buffer, at: number, len: number): string {
    const t = b.toString('latin1', at, at + len);
    let s = this.cacheNames.get(t);
    if (s === undefined) this.cacheNames.set(t, (s = t));
    return s;
  }
}

/**
 * Merges the CPUs' events into time order. Each CPU's queue is in time order already (its ring buffer is), so the
 * merge takes the earliest head each step: no sort, no copies. `take` hands on, in order, the events stamped
 * before `horizon` (seconds on the trace clock); the rest wait for the next round.
 */
export class RawMerger {
  private readonly queues: KmemEvent[][] = [];
  private readonly heads: number[] = [];

  /** The queue a CPU's decoded events go to, in the order its buffer holds them. */
  queue(cpu: number): KmemEvent[] {
    while (this.queues.length <= cpu) {
      this.queues.push([]);
      this.heads.push(0);
    }
    return this.queues[cpu]!;
  }

  take(horizon: number, emit: (e: KmemEvent) => void): void {
    const qs = this.queues;
    const heads = this.heads;
    for (;;) {
      let best = -1;
      let bestTs = horizon;
      for (let c = 0; c < qs.length; c++) {
        const h = heads[c]!;
        const q = qs[c]!;
        // On a tie the lower CPU goes first: the order is the same on every run.
        if (h < q.length && q[h]!.ts < bestTs) {
          best = c;
          bestTs = q[h]!.ts;
        }
      }
      if (best < 0) break;
      emit(qs[best]![heads[best]!]!);
      heads[best]!++;
    }
    // Drop what was handed on (in place, so that the decoder's reference to each queue stays good).
    for (let c = 0; c < qs.length; c++) {
      if (heads[c]! > 0) {
        qs[c]!.splice(0, heads[c]!);
        heads[c] = 0;
      }
    }
  }

  get size(): number {
    let n = 0;
    for (let c = 0; c < this.queues.length; c++) n += this.queues[c]!.length - this.heads[c]!;
    return n;
  }
}

/** A pid's comm for raw records, which carry only the pid: /proc first, then the kernel's saved_cmdlines. */
export class CommLookup {
  private readonly known = new Map<number, string | undefined>();
  private saved: Map<number, string> | undefined;

  constructor(private readonly savedCmdlines: string) {}

  comm = (pid: number): string | undefined => {
    if (this.known.has(pid)) return this.known.get(pid);
    let c: string | undefined;
    if (pid === 0) c = '<idle>';
    else {
      try {
        c = readFileSync(`/proc/${pid}/comm`, 'latin1').replace(/\n$/, '');
      } catch {
        this.saved ??= this.readSaved();
        c = this.saved.get(pid);
      }
    }
    this.known.set(pid, c);
    return c;
  };

  /**
   * Forgets what it knows (kleak calls this every second): a pid reused by another process must not keep the old
   * comm, and a host that starts many processes must not grow the table.
   */
  forget(): void {
    this.known.clear();
    this.saved = undefined;
  }

  private readSaved(): Map<number, string> {
    const m = new Map<number, string>();
    try {
      for (const line of readFileSync(this.savedCmdlines, 'latin1').split('\n')) {
        const sp = line.indexOf(' ');
        if (sp > 0) m.set(Number(line.slice(0, sp)), line.slice(sp + 1));
      }
    } catch {
      // no saved_cmdlines: the comm stays unknown
    }
    return m;
  }
}

/** The CPUs an instance has buffers for (per_cpu/cpuN). */
export function instanceCpus(instancePath: string): number[] {
  try {
    return readdirSync(`${instancePath}/per_cpu`).map((d) => /^cpu(\d+)$/.exec(d)?.[1]).filter((x): x is string => x !== undefined).map(Number).sort((a, b) => a - b);
  } catch {
    return [];
  }
}
