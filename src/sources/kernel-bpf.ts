// The `kernel` backend: kleak's own BPF program (bpf/kleak.bpf.c, built by `npm run build:bpf` and shipped as
// bpf/kleak.bpf.o) loaded through libbpf, no bpftrace. It pairs in the kernel; every interval kleak reads the
// per-site totals and, while few enough, the outstanding pointers (batch lookups, which tolerate entries freed
// while they are read), and hands the engine a KernelSnapshot: the same path as bpftrace's pairs mode.

import { CgroupNames, type MemoryHierarchy, memoryHierarchy, resolveCgroup } from '../linux/cgroups.js';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { kmallocCacheSize, type EventFilter } from '../engine/filter.js';
import { ALLOCATOR_MACHINERY } from '../engine/stacks.js';
import { EnvironmentError, InputError } from '../errors.js';
import { ALLOCATOR_TRACEPOINTS, type AllocatorName, type KernelSnapshot, type KmemEvent, type OutstandingRecord, type ParseSink, type SiteTotalsRecord } from '../event.js';
import { ALLOC, ALLOCATOR_SHIFT, ALLOCATORS, CACHE_LEN, COMM_LEN, COUNTER, COUNTERS, EVENT, F_ACCOUNTED, SITE_COUNTS, SITE_KEY, STACK_DEPTH, cString, encodeConfig, type BpfConfig } from '../kernel/bpf-layout.js';
import { Btf } from '../kernel/btf.js';
import { Kallsyms } from '../kernel/kallsyms.js';
import { libbpf, type Libbpf } from '../kernel/libbpf.js';
import { mapMemory } from '../kernel/map-memory.js';
import { pageSize } from '../kernel/page-size.js';
import { kmallocCache, kmallocLabels } from '../parse/kmem-fields.js';
import { hostSlabAllocator } from '../kernel/slabinfo.js';
import { packagePath } from '../paths.js';
import type { LiveEnd, LiveSource } from './live.js';

export const BPF_OBJECT = packagePath('bpf', 'kleak.bpf.o');

export interface KernelBpfOptions {
  filter: EventFilter;
  /** Which allocators to pair (default: slab). */
  allocators: ReadonlySet<AllocatorName>;
  stacks: boolean;
  /** With stacks: 1 every allocation; N > 1, each site's first allocations, then one in N (DEFAULT_STACK_EVERY). */
  stackEvery?: number;
  snapshotSec: number;
  /** Most pointers the kernel table holds; allocations past it are counted as untracked. */
  maxPointers: number;
  /** Snapshots list every pointer while at most this many are outstanding; above, per-site totals only. */
  listMax: number;
  /** Stream every tracked allocation and its free (the engine pairs them) instead of sending snapshots. */
  events?: boolean;
}

/**
 * --stacks samples by default: each site's first 16 allocations (KLEAK_STACK_FIRST), then one in 8. The stack walk
 * was 83% of the kmalloc program's time with stacks; a sample keeps its cost near the program's own (measured in
 * scripts/bench-live-overhead.ts, group stacks), while counts and bytes stay exact and each stack's share of a site
 * is estimated from the sample (docs/design.md "Stacks"). --stack-every 1 captures every allocation's stack.
 */
export const DEFAULT_STACK_EVERY = 8;

/** The kernel's recursion_misses of these programs (fdinfo: Linux 5.12+), summed; 0 where it is not shown. */
export function recursionMisses(fds: readonly number[]): number {
  let n = 0;
  for (const fd of fds) {
    try {
      const m = /^recursion_misses:\s+(\d+)/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'));
      if (m) n += Number(m[1]);
    } catch {
      // closed, or no fdinfo: nothing to add
    }
  }
  return n;
}

/**
 * Records read from the ring at most in one drain (every 200 ms): about 0.3 s of kleak's time. Under a storm the
 * producer refills the ring as fast as it is read, and one unbounded read ran for seconds: timers (--duration, the
 * report) starved and memory rose (1.84 GiB, a 30 s run ended at 52 s). Past the budget, what does not fit the ring
 * is lost in the kernel, counted and said.
 */
const RING_BUDGET = 25_000;

/** The ring buffer's size with --events: 16 MiB holds ~200k events between two reads. */
const RING_BYTES = 16 << 20;

/** Stack ids the stack map can hold with --stacks (STACK_DEPTH frames of 8 bytes each: 5 MiB, preallocated). */
const STACK_IDS = 32_768;

type ProgramName =
  | 'kmalloc' | 'kmem_cache_alloc' | 'kfree' | 'kmem_cache_free' | 'kvfree_call_rcu' | 'kmem_cache_free_bulk' | 'workqueue_execute_start'
  | 'alloc_vmap_area' | 'free_vmap_area_noflush' | 'mm_page_alloc' | 'mm_page_free' | 'mm_page_free_batched'
  | 'percpu_alloc_percpu' | 'percpu_free_percpu';


export interface KernelBpfPlan {
  config: BpfConfig;
  programs: ProgramName[];
  /** fentry programs (kvfree_call_rcu, kmem_cache_free_bulk): tried first, dropped if the kernel refuses fentry. */
  optional: ProgramName[];
  maxEntries: { ptrs: number; stacks: number; events: number };
  notes: string[];
  /** The memory cgroup hierarchy each allocation's cgroup id is named in; undefined: no memory controller. */
  cgroups: MemoryHierarchy | undefined;
}

/** What the program needs from this kernel, worked out before anything is loaded (also for --dry-run). */
export function kernelBpfPlan(o: KernelBpfOptions, btf: Btf, syms: Kallsyms | undefined): KernelBpfPlan {
  if (btf.tracepointArgs('kmalloc') !== 6 || btf.tracepointArgs('kmem_cache_alloc') !== 5) {
    throw new EnvironmentError(
      "this kernel's kmem tracepoints are not the Linux 6.1+ kind the kernel backend is built for.",
      'Use --backend bpftrace or --backend tracefs, which read the older tracepoints.',
    );
  }
  const f = o.filter;
  const kmallocSize = f.cache !== undefined ? kmallocCacheSize(f.cache) : undefined;
  const namedCache = f.cache !== undefined && kmallocSize === undefined;
  const sized = f.bytes !== undefined || f.minBytes !== undefined || f.maxBytes !== undefined || kmallocSize !== undefined;
  const min = f.bytes ?? kmallocSize ?? f.minBytes ?? 0;
  const max = f.bytes ?? kmallocSize ?? f.maxBytes ?? 2 ** 40;
  // Sizes and kmalloc-N name kmalloc's caches (as bpftrace and tracefs read them); a name, a kmem_cache; nothing,
  // both. kmalloc'ed objects leave through kfree only, so a size filter needs no kmem_cache_free program (every
  // program attached costs each event it sees, tracked or not).
  const slab = o.allocators.has('slab');
  const programs: ProgramName[] = slab ? [...(namedCache ? [] : ['kmalloc' as const]), ...(sized ? [] : ['kmem_cache_alloc' as const]), 'kfree', ...(sized ? [] : ['kmem_cache_free' as const])] : [];
  // The object has a program of the same name for each allocator tracepoint (raw, BTF).
  for (const [allocator, { group, alloc, frees }] of Object.entries(ALLOCATOR_TRACEPOINTS)) {
    if (!o.allocators.has(allocator as AllocatorName)) continue;
    const progs: ProgramName[] = [alloc, ...frees];
    const missing = progs.filter((p) => btf.tracepointArgs(p) === undefined);
    if (missing.length > 0) {
      throw new EnvironmentError(`this kernel has no ${missing.map((m) => `${group}:${m}`).join(' / ')} tracepoint, which --alloc ${allocator} needs.`, `ls /sys/kernel/tracing/events/${group} shows what it has; --alloc slab still works.`);
    }
    programs.push(...progs);
  }
  const notes: string[] = [];
  const monitor = syms?.address('kfree_rcu_monitor');
  const work = syms?.address('kfree_rcu_work');
  if (!slab) {
    // kfree_rcu frees slab objects only.
  } else if (monitor && work && btf.tracepointArgs('workqueue_execute_start') === 1) programs.push('workqueue_execute_start');
  else notes.push('frees through kfree_rcu batches are not seen on this kernel (no kfree_rcu_monitor/kfree_rcu_work to watch): objects freed that way stay outstanding.');
  const optional = slab ? (['kvfree_call_rcu', 'kmem_cache_free_bulk'] as const).filter((fn) => btf.hasFunction(fn)) : [];
  // vmalloc areas and pages have no call site: their stack names who allocated them.
  const byStack = o.allocators.has('vmalloc') || o.allocators.has('page');
  const account = btf.enumValue('___GFP_ACCOUNT_BIT');
  // The pointer table is a hash map that is not preallocated: its inserts take elements the BPF memory allocator
  // refills with kmalloc from alloc_bulk, in whichever task runs then. Tracked, those would need inserts of their
  // own, and so on until the table is full (seen: 262,144 "allocations" at alloc_bulk in 3 s, --comm python3).
  const own = syms?.range('alloc_bulk');
  // Whose: the task's memory cgroup, recorded per allocation (docs/cgroups.md). --cgroup filters in the kernel.
  // KLEAK_CGROUPS=0 leaves it out (what it costs: scripts/bench-live-overhead.ts --only cgroups).
  const off = process.env.KLEAK_CGROUPS === '0';
  const cgroups = off ? undefined : memoryHierarchy();
  if (f.cgroup !== undefined && off) throw new InputError('--cgroup needs the cgroup of each allocation, which KLEAK_CGROUPS=0 turns off.');
  if (f.cgroup !== undefined && !cgroups) throw new EnvironmentError('--cgroup: this host has no memory cgroup hierarchy mounted (no cgroup v1 "memory" mount, no memory controller on cgroup2).');
  const only = f.cgroup !== undefined && cgroups ? resolveCgroup(cgroups, f.cgroup) : undefined;
  if (!cgroups && !off) notes.push('no memory cgroup hierarchy is mounted here: allocations carry no cgroup.');
  return {
    config: {
      minBytes: BigInt(min), maxBytes: BigInt(max), pid: f.pid ?? 0, selfTgid: process.pid, comm: f.comm,
      cache: namedCache ? f.cache : undefined, stacks: o.stacks,
      gfpAccount: account !== undefined ? 2 ** account : 0,
      rcuMonitorFn: programs.includes('workqueue_execute_start') ? monitor! : 0n,
      rcuWorkFn: programs.includes('workqueue_execute_start') ? work! : 0n,
      pageSize: pageSize(),
      events: o.events === true,
      ownLo: own?.start ?? 0n,
      ownHi: own?.end ?? 0n,
      cgroups: cgroups !== undefined,
      cgroupLevel: only?.level ?? 0,
      cgroupId: only?.id ?? 0n,
      possibleCpus: possibleCpuCount(),
      stackEvery: o.stackEvery ?? DEFAULT_STACK_EVERY,
    },
    cgroups,
    programs,
    optional: [...optional],
    maxEntries: { ptrs: o.maxPointers, stacks: o.stacks || byStack ? STACK_IDS : 1, events: o.events ? RING_BYTES : 4096 },
    notes,
  };
}

/** /sys/devices/system/cpu/possible ("0-1", "0-3,8-11") as a count; 0 when unreadable (kleak then keeps bytes_alloc). */
export function possibleCpuCount(text?: string): number {
  let t = text;
  try {
    t ??= readFileSync('/sys/devices/system/cpu/possible', 'utf8');
  } catch {
    return 0;
  }
  let n = 0;
  for (const r of t.trim().split(',')) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(r);
    if (!m) return 0;
    n += (m[2] !== undefined ? Number(m[2]) : Number(m[1])) - Number(m[1]) + 1;
  }
  return n;
}

function preflight(): { btf: Btf; lib: Libbpf; object: Buffer } {
  if (process.getuid?.() !== 0) throw new EnvironmentError('kleak live needs root: loading BPF programs is privileged.', 'Run it with sudo.');
  if (!existsSync('/sys/kernel/btf/vmlinux')) {
    throw new EnvironmentError('this kernel has no BTF (/sys/kernel/btf/vmlinux), which the kernel backend needs.', 'Use --backend bpftrace or --backend tracefs (kernels built without CONFIG_DEBUG_INFO_BTF).');
  }
  if (!existsSync(BPF_OBJECT)) throw new EnvironmentError(`kleak's BPF object is missing (${BPF_OBJECT}).`, 'Reinstall kleak, or build it with npm run build:bpf.');
  return { btf: Btf.vmlinux(), lib: libbpf(), object: readFileSync(BPF_OBJECT) };
}

/** --dry-run: what would be loaded, with which values. Needs neither root nor libbpf. */
export function kernelBpfDescription(o: KernelBpfOptions): string {
  const btf = existsSync('/sys/kernel/btf/vmlinux') ? Btf.vmlinux() : undefined;
  if (!btf) return 'kernel backend: this kernel has no BTF (/sys/kernel/btf/vmlinux); kleak would fall back to bpftrace.';
  let syms: Kallsyms | undefined;
  try {
    syms = Kallsyms.load();
  } catch {
    syms = undefined;
  }
  const p = kernelBpfPlan(o, btf, syms);
  const c = p.config;
  const sha = existsSync(BPF_OBJECT) ? createHash('sha256').update(readFileSync(BPF_OBJECT)).digest('hex').slice(0, 16) : 'missing';
  return [
    `kernel backend: load ${BPF_OBJECT} (sha256 ${sha}…) through libbpf, with read-only config:`,
    `  min_bytes=${c.minBytes} max_bytes=${c.maxBytes} pid=${c.pid || 'any'} self_tgid=${c.selfTgid} comm=${c.comm === undefined ? '(any)' : JSON.stringify(c.comm)} cache=${c.cache === undefined ? '(any)' : JSON.stringify(c.cache)}`,
    `  cgroups=${c.cgroups ? `1 (memory cgroup v${p.cgroups!.version} at ${p.cgroups!.mount})` : 0} cgroup=${c.cgroupId ? `id ${c.cgroupId} at level ${c.cgroupLevel}` : '(any)'}`,
    `  stacks=${c.stacks ? 1 : 0} stack_every=${c.stackEvery} gfp_account=0x${c.gfpAccount.toString(16)} rcu_monitor_fn=0x${c.rcuMonitorFn.toString(16)} rcu_work_fn=0x${c.rcuWorkFn.toString(16)}`,
    `maps: ptrs max_entries=${p.maxEntries.ptrs} (not preallocated: kernel memory follows what is held), stacks max_entries=${p.maxEntries.stacks}${c.events ? `, events ring ${p.maxEntries.events >> 20} MiB (read every 200 ms, no wakeups)` : ''}`,
    `programs: ${p.programs.map((n) => (n === 'workqueue_execute_start' ? 'tp_btf/workqueue_execute_start (kfree_rcu batches)' : `tp_btf/${n}`)).join(' ')}`,
    `  and, where the kernel permits fentry: ${p.optional.map((n) => `fentry/${n}`).join(' ') || '(none: not in BTF)'}`,
    ...p.notes.map((n) => `note: ${n}`),
  ].join('\n');
}

interface Loaded {
  obj: object;
  links: object[];
  /** The attached programs' fds: their fdinfo counts recursion_misses. */
  programFds: number[];
  fds: { ptrs: number; sites: number; cacheNames: number; counters: number; stacks: number; bss: number; events: number };
  fentry: boolean;
}

function loadProgram(lib: Libbpf, image: Buffer, plan: KernelBpfPlan, withFentry: boolean): Loaded {
  const obj = lib.openMem(image, 'kleak');
  let ok = false;
  try {
    const maps = lib.maps(obj);
    const map = (name: string) => {
      const m = maps.get(name);
      if (!m) throw new EnvironmentError(`kleak's BPF object has no map "${name}".`, 'Rebuild it with npm run build:bpf.');
      return m;
    };
    const rodata = map('kleak.rodata');
    const config = encodeConfig(plan.config);
    if (lib.initialValueSize(rodata) !== config.length) throw new EnvironmentError("kleak's BPF object and its reader disagree on the config's size.", 'Rebuild it with npm run build:bpf.');
    lib.setInitialValue(rodata, config);
    lib.setMaxEntries(map('ptrs'), plan.maxEntries.ptrs);
    lib.setMaxEntries(map('stacks'), plan.maxEntries.stacks);
    lib.setMaxEntries(map('events'), plan.maxEntries.events);
    const wanted = new Set<string>([...plan.programs, ...(withFentry ? plan.optional : [])]);
    const logs = new Map<string, Buffer>();
    for (const [name, prog] of lib.programs(obj)) {
      lib.setAutoload(prog, wanted.has(name));
      if (wanted.has(name)) {
        const log = Buffer.alloc(256 * 1024);
        lib.setLogBuf(prog, log);
        logs.set(name, log);
      }
    }
    const r = lib.load(obj);
    if (r !== 0) {
      const failed = [...logs].find(([, b]) => b[0] !== 0);
      const last = failed ? cString(failed[1], 0, failed[1].length).trim().split('\n').slice(-3).join(' / ') : '';
      const why = -r === 1 ? 'the kernel refused (EPERM: lockdown, or a security policy)' : `error ${-r}`;
      throw Object.assign(
        new EnvironmentError(`the kernel did not load kleak's BPF program${failed ? ` "${failed[0]}"` : ''}: ${why}${last ? `; the verifier said: ${last}` : ''}.`, 'Use --backend bpftrace or --backend tracefs.'),
        { code: -r },
      );
    }
    const links: object[] = [];
    const programFds: number[] = [];
    for (const [name, prog] of lib.programs(obj)) {
      if (!wanted.has(name)) continue;
      programFds.push(lib.programFd(prog));
      try {
        links.push(lib.attach(prog));
      } catch (err) {
        for (const l of links) lib.destroyLink(l);
        throw new EnvironmentError(`kleak could not attach its BPF program to ${name} (errno ${(err as { errno?: number }).errno}).`, 'Use --backend bpftrace or --backend tracefs.');
      }
    }
    ok = true;
    return {
      obj, links, programFds, fentry: withFentry,
      fds: {
        ptrs: lib.mapFd(map('ptrs')), sites: lib.mapFd(map('sites')), cacheNames: lib.mapFd(map('cache_names')),
        counters: lib.mapFd(map('counters')), stacks: lib.mapFd(map('stacks')), bss: lib.mapFd(map('kleak.bss')),
        events: lib.mapFd(map('events')),
      },
    };
  } finally {
    if (!ok) lib.close(obj);
  }
}

/** Every entry of a hash map, in batches; entries freed while it reads are simply not returned. */
function readHash(lib: Libbpf, fd: number, keySize: number, valueSize: number, each: (key: Buffer, kOff: number, value: Buffer, vOff: number) => void): void {
  let chunk = 4096;
  const outBatch = Buffer.alloc(8);
  let inBatch: Buffer | null = null;
  for (;;) {
    const keys = Buffer.alloc(chunk * keySize);
    const values = Buffer.alloc(chunk * valueSize);
    const count = new Uint32Array([chunk]);
    const r = lib.lookupBatch(fd, inBatch, outBatch, keys, values, count);
    if (r !== 0 && r !== -2) {
      if (r === -28 && chunk < 1 << 20) {
        chunk *= 4; // ENOSPC: one hash bucket holds more entries than the batch
        continue;
      }
      throw new Error(`reading a BPF map failed (error ${-r})`);
    }
    for (let i = 0; i < count[0]!; i++) each(keys, i * keySize, values, i * valueSize);
    if (r === -2) return; // ENOENT: that was the last batch
    inBatch = Buffer.from(outBatch);
  }
}

class Reader {
  private readonly cpus: number;
  private readonly cacheNames = new Map<bigint, string>();
  /** Stack id → its frames' addresses (stacks do not change once stored). */
  private readonly stackAddrs = new Map<number, bigint[]>();
  /** How this kernel serves each kmalloc size (slab allocator, page size): kmalloc-N up to two pages on SLUB. */
  private readonly labels = kmallocLabels(hostSlabAllocator(), pageSize());

  constructor(
    private readonly lib: Libbpf,
    private readonly l: Loaded,
    private readonly syms: Kallsyms,
    private readonly cgroups: CgroupNames | undefined,
  ) {
    this.cpus = lib.possibleCpus();
  }

  counters(): number[] {
    const out: number[] = [];
    const key = Buffer.alloc(4);
    const v = Buffer.alloc(8 * this.cpus);
    for (let i = 0; i < COUNTERS; i++) {
      key.writeUInt32LE(i);
      let sum = 0;
      if (this.lib.lookup(this.l.fds.counters, key, v) === 0) for (let c = 0; c < this.cpus; c++) sum += Number(v.readBigUInt64LE(c * 8));
      out.push(sum);
    }
    return out;
  }

  tracked(): number {
    const v = Buffer.alloc(8);
    return this.lib.lookup(this.l.fds.bss, Buffer.alloc(4), v) === 0 ? Number(v.readBigUInt64LE(0)) : 0;
  }

  private cacheName(id: bigint): string | undefined {
    let n = this.cacheNames.get(id);
    if (n === undefined) {
      readHash(this.lib, this.l.fds.cacheNames, 8, CACHE_LEN, (k, ko, v, vo) => this.cacheNames.set(k.readBigUInt64LE(ko), cString(v, vo, CACHE_LEN)));
      n = this.cacheNames.get(id);
    }
    return n;
  }

  private cgroupOf(b: Buffer, at: number): { cgroup?: string } {
    const id = b.readBigUInt64LE(at + ALLOC.cgroup);
    return this.cgroups && id !== 0n ? { cgroup: this.cgroups.name(id) } : {};
  }

  private label(cacheId: bigint, bytesAlloc: number, flags: number): string {
    const allocator = allocatorOf(flags);
    if (allocator !== 'slab') return allocator;
    return (cacheId !== 0n ? this.cacheName(cacheId) : undefined) ?? kmallocCache(bytesAlloc, (flags & F_ACCOUNTED) !== 0, this.labels);
  }

  private stack(id: number): bigint[] {
    let st = this.stackAddrs.get(id);
    if (!st) {
      st = [];
      const key = Buffer.alloc(4);
      key.writeInt32LE(id);
      const frames = Buffer.alloc(STACK_DEPTH * 8);
      if (this.lib.lookup(this.l.fds.stacks, key, frames) === 0) {
        for (let f = 0; f < STACK_DEPTH; f++) {
          const a = frames.readBigUInt64LE(f * 8);
          if (a === 0n) break;
          st.push(a);
        }
      }
      this.stackAddrs.set(id, st);
    }
    return st;
  }

  /** A call site as text: the kernel's for slab and percpu; for vmalloc and pages, the first frame outside them. */
  private callSite(raw: bigint, flags: number): string {
    const allocator = allocatorOf(flags);
    if (allocator !== 'vmalloc' && allocator !== 'page') return this.syms.format(raw);
    if (raw === 0n) return `(${allocator}: no stack)`;
    const addrs = this.stack(Number(raw) - 1);
    const machinery = ALLOCATOR_MACHINERY[allocator];
    // Leading frames with no symbol are kleak's own programs and trampolines (JIT images load after kallsyms was read).
    const first = addrs.find((a) => {
      const sym = this.syms.lookup(a);
      return sym !== undefined && !machinery.test(sym.name);
    });
    return first !== undefined ? this.syms.format(first) : `(${allocator}: no stack)`;
  }

  snapshot(list: boolean): KernelSnapshot {
    const ts = Number(process.hrtime.bigint()) / 1e9; // CLOCK_MONOTONIC, as bpf_ktime_get_ns
    const sites: SiteTotalsRecord[] = [];
    const stride = Math.ceil(SITE_COUNTS.size / 8) * 8;
    readHash(this.lib, this.l.fds.sites, SITE_KEY.size, stride * this.cpus, (k, ko, v, vo) => {
      const sum = (field: number) => {
        let s = 0;
        for (let c = 0; c < this.cpus; c++) s += Number(v.readBigUInt64LE(vo + c * stride + field));
        return s;
      };
      const allocs = sum(SITE_COUNTS.allocs);
      const frees = sum(SITE_COUNTS.frees);
      const missed = sum(SITE_COUNTS.missed);
      const flags = k.readUInt32LE(ko + SITE_KEY.flags);
      sites.push({
        callSite: this.callSite(k.readBigUInt64LE(ko + SITE_KEY.callSite), flags),
        allocator: allocatorOf(flags),
        allocs, frees, missedFrees: missed,
        outstanding: allocs - frees - missed,
        outstandingBytes: sum(SITE_COUNTS.allocBytes) - sum(SITE_COUNTS.freeBytes) - sum(SITE_COUNTS.missedBytes),
      });
    });
    const counters = this.counters();
    const snap: KernelSnapshot = { ts, sites, untracked: counters[COUNTER.untracked]! };
    if (list) {
      const records: OutstandingRecord[] = [];
      const stackIds: number[] = [];
      const weights: number[] = [];
      readHash(this.lib, this.l.fds.ptrs, 8, ALLOC.size, (k, ko, v, vo) => {
        const bytesAlloc = v.readUInt32LE(vo + ALLOC.bytesAlloc);
        const flags = v.readUInt32LE(vo + ALLOC.flags);
        records.push({
          ptr: k.readBigUInt64LE(ko).toString(16).padStart(16, '0'),
          ts: Number(v.readBigUInt64LE(vo + ALLOC.tsNs)) / 1e9,
          callSite: this.callSite(v.readBigUInt64LE(vo + ALLOC.callSite), flags),
          allocator: allocatorOf(flags),
          bytesReq: v.readUInt32LE(vo + ALLOC.bytesReq),
          bytesAlloc,
          cache: this.label(v.readBigUInt64LE(vo + ALLOC.cacheId), bytesAlloc, flags),
          pid: v.readUInt32LE(vo + ALLOC.pid),
          comm: cString(v, vo + ALLOC.comm, COMM_LEN),
          ...this.cgroupOf(v, vo),
        });
        stackIds.push(v.readInt32LE(vo + ALLOC.stackId));
        weights.push(v.readUInt32LE(vo + ALLOC.stackWeight));
      });
      const named = new Map<number, string[]>();
      records.forEach((r, i) => {
        const id = stackIds[i]!;
        if (id < 0) return;
        let st = named.get(id);
        if (!st) {
          st = this.stack(id).map((a) => this.syms.lookup(a)?.name ?? a.toString(16));
          named.set(id, st);
        }
        if (st.length > 0) {
          r.stack = st;
          if (weights[i]! > 1) r.stackWeight = weights[i]!;
        }
      });
      snap.outstanding = records;
    }
    return snap;
  }

  /** One ring-buffer record as the engine's event (--events). */
  event(b: Buffer): KmemEvent | undefined {
    if (b.length < EVENT.size) return undefined;
    const ptr = b.readBigUInt64LE(EVENT.ptr).toString(16).padStart(16, '0');
    const a = EVENT.alloc;
    const ts = Number(b.readBigUInt64LE(a + ALLOC.tsNs)) / 1e9;
    const pid = b.readUInt32LE(a + ALLOC.pid);
    if (b.readUInt32LE(EVENT.kind) === 1) return { kind: 'free', ts, ptr, callSite: '', tracepoint: 'kfree', pid };
    const flags = b.readUInt32LE(a + ALLOC.flags);
    const bytesAlloc = b.readUInt32LE(a + ALLOC.bytesAlloc);
    const stackId = b.readInt32LE(a + ALLOC.stackId);
    const e: KmemEvent = {
      kind: 'alloc', ts, ptr, pid, comm: cString(b, a + ALLOC.comm, COMM_LEN),
      callSite: this.callSite(b.readBigUInt64LE(a + ALLOC.callSite), flags),
      tracepoint: allocatorOf(flags) === 'slab' ? 'kmalloc' : allocatorOf(flags),
      bytesReq: b.readUInt32LE(a + ALLOC.bytesReq), bytesAlloc,
      cache: this.label(b.readBigUInt64LE(a + ALLOC.cacheId), bytesAlloc, flags),
      ...this.cgroupOf(b, a),
    };
    if (stackId >= 0) {
      e.stack = this.stack(stackId).map((x) => this.syms.lookup(x)?.name ?? x.toString(16));
      const weight = b.readUInt32LE(a + ALLOC.stackWeight);
      if (weight > 1) e.stackWeight = weight;
    }
    return e;
  }

  /** Drops the stack cache: ids of stacks no longer referenced can be reused by the kernel. */
  forgetStacks(): void {
    this.stackAddrs.clear();
  }

  /** Kernel memory the maps hold now (memlock of each map's fdinfo), bytes. */
  mapMemory(): number {
    return mapMemory('self', Object.values(this.l.fds));
  }
}

export async function startKernelBpf(o: KernelBpfOptions, sink: ParseSink): Promise<LiveSource> {
  const { btf, lib, object } = preflight();
  const syms = Kallsyms.load();
  const plan = kernelBpfPlan(o, btf, syms);
  const notes = [...plan.notes];
  let loaded: Loaded;
  if (plan.optional.length > 0) {
    try {
      loaded = loadProgram(lib, object, plan, true);
    } catch (err) {
      // This project's VM, for one, refuses fentry (EPERM) and has no kprobes: the RCU work items still show.
      loaded = loadProgram(lib, object, plan, false);
      const code = (err as { code?: number }).code;
      notes.push(`this kernel refused kleak's fentry programs (${code === 1 ? 'EPERM' : `error ${code ?? '?'}`}): kfree_rcu frees are seen through the RCU work items instead; bulk frees (kmem_cache_free_bulk) of objects allocated one by one are not seen.`);
    }
  } else {
    loaded = loadProgram(lib, object, plan, false);
  }
  const reader = new Reader(lib, loaded, syms, plan.cgroups ? new CgroupNames(plan.cgroups) : undefined);
  // --events: records are read from the ring a few times a second (no per-event wakeup); the engine pairs them.
  let eventsRead = 0;
  let lostSaid = 0;
  /** Records one drain may still read (RING_BUDGET a drain). */
  let budget = 0;
  const ring = o.events
    ? lib.ringBuffer(loaded.fds.events, (b) => {
        const e = reader.event(b);
        if (e) {
          eventsRead++;
          sink.event(e);
        }
        return --budget > 0;
      })
    : undefined;
  const drain = () => {
    if (!ring) return;
    budget = RING_BUDGET;
    ring.consume();
    const lost = reader.counters()[COUNTER.rbLost]!;
    if (lost > lostSaid) {
      sink.lost(lost - lostSaid);
      lostSaid = lost;
    }
  };
  let stopping = false;
  let closed = false;
  let finish: (e: LiveEnd) => void = () => {};
  const ended = new Promise<LiveEnd>((r) => (finish = r));
  const close = () => {
    if (closed) return;
    closed = true;
    ring?.free();
    for (const l of loaded.links) lib.destroyLink(l);
    lib.close(loaded.obj);
  };
  let snapshots = 0;
  const tick = () => {
    try {
      snapshots++;
      if (ring) return drain();
      reader.forgetStacks();
      sink.snapshot?.(reader.snapshot(reader.tracked() <= o.listMax));
    } catch (err) {
      clearInterval(timer);
      close();
      finish({ how: 'died', why: `reading kleak's BPF maps failed: ${(err as Error).message}` });
    }
  };
  const timer = setInterval(tick, ring ? 200 : Math.max(100, o.snapshotSec * 1000));
  return {
    info: { kind: 'live', backend: 'kernel', mode: ring ? 'events' : 'pairs' },
    notes,
    pids: [],
    lines: () => (ring ? eventsRead : snapshots),
    ended,
    async stop() {
      if (stopping || closed) return void (await ended);
      stopping = true;
      clearInterval(timer);
      try {
        // The final snapshot lists every outstanding pointer, read before the programs detach (--events: the
        // ring's last records instead).
        drain();
        const last = ring ? undefined : reader.snapshot(true);
        const c = reader.counters();
        const mem = reader.mapMemory();
        if (c[COUNTER.stackLost]! > 0) notes.push(`${c[COUNTER.stackLost]} allocations have no stack (the stack map was full or two stacks collided).`);
        if (c[COUNTER.rcuFrees]! + c[COUNTER.bulkFrees]! > 0) notes.push(`${c[COUNTER.rcuFrees]} frees were seen through kfree_rcu batches and ${c[COUNTER.bulkFrees]} through bulk frees (no kmem tracepoint shows them).`);
        // A walk also stops early when the kernel moves the pages it reads to another list meanwhile; the pages are
        // walked again when kfree_rcu_work takes them, so only a list longer than 64 pages loses frees.
        if (c[COUNTER.rcuCut]! > 0) notes.push(`${c[COUNTER.rcuCut]} walks of kfree_rcu batches stopped early (a list moved while read, or held more than 64 pages); moved pages are read again when freed.`);
        if (c[COUNTER.bulkCut]! > 0) notes.push(`${c[COUNTER.bulkCut]} bulk frees were longer than kleak walks (8192 pointers): the rest of their frees were not seen.`);
        notes.push(`kernel memory held by kleak's BPF maps at the end: ${(mem / 1048576).toFixed(1)} MiB.`);
        if (c[COUNTER.rbLost]! > 0) notes.push(`${c[COUNTER.rbLost]} events did not fit the ring buffer between two reads and were lost (counted as lost events).`);
        // A program that fires while one of kleak's programs already runs on that CPU (an allocation inside a free,
        // in an interrupt) is skipped by the kernel: an event lost like any other (issue 22 item 9).
        const missed = recursionMisses(loaded.programFds);
        if (missed > 0) {
          sink.lost(missed);
          notes.push(`${missed.toLocaleString('en-US')} allocations and frees were not seen because the kernel skipped kleak's program while another of its programs ran on that CPU (recursion_misses): counted as lost events.`);
        }
        close();
        if (last) sink.snapshot?.(last);
        finish({ how: 'stopped' });
      } catch (err) {
        close();
        finish({ how: 'died', why: `reading kleak's BPF maps failed: ${(err as Error).message}` });
      }
      await ended;
    },
  };
}

function allocatorOf(flags: number): AllocatorName {
  return ALLOCATORS[(flags >>> ALLOCATOR_SHIFT) & 0xff] ?? 'slab';
}
