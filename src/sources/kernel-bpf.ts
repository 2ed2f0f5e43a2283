// The `kernel` backend: kleak's own BPF program (bpf/kleak.bpf.c, built by `npm run build:bpf` and shipped as
// bpf/kleak.bpf.o) loaded through libbpf, no bpftrace. It pairs in the kernel; every interval kleak reads the
// per-site totals and, while few enough, the outstanding pointers (batch lookups, which tolerate entries freed
// while they are read), and hands the engine a KernelSnapshot: the same path as bpftrace's pairs mode.

import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { kmallocCacheSize, type EventFilter } from '../engine/filter.js';
import { EnvironmentError } from '../errors.js';
import type { KernelSnapshot, OutstandingRecord, ParseSink, SiteTotalsRecord } from '../event.js';
import { ALLOC, CACHE_LEN, COMM_LEN, COUNTER, COUNTERS, F_ACCOUNTED, SITE_COUNTS, SITE_KEY, STACK_DEPTH, cString, encodeConfig, type BpfConfig } from '../kernel/bpf-layout.js';
import { Btf } from '../kernel/btf.js';
import { Kallsyms } from '../kernel/kallsyms.js';
import { libbpf, type Libbpf } from '../kernel/libbpf.js';
import { kmallocCache } from '../parse/kmem-fields.js';
import { packagePath } from '../paths.js';
import type { LiveEnd, LiveSource } from './live.js';

export const BPF_OBJECT = packagePath('bpf', 'kleak.bpf.o');

export interface KernelBpfOptions {
  filter: EventFilter;
  stacks: boolean;
  snapshotSec: number;
  /** Most pointers the kernel table holds; allocations past it are counted as untracked. */
  maxPointers: number;
  /** Snapshots list every pointer while at most this many are outstanding; above, per-site totals only. */
  listMax: number;
}

/** Stack ids the stack map can hold with --stacks (STACK_DEPTH frames of 8 bytes each: 5 MiB, preallocated). */
const STACK_IDS = 32_768;

type ProgramName = 'kmalloc' | 'kmem_cache_alloc' | 'kfree' | 'kmem_cache_free' | 'kvfree_call_rcu' | 'kmem_cache_free_bulk' | 'workqueue_execute_start';

export interface KernelBpfPlan {
  config: BpfConfig;
  programs: ProgramName[];
  /** fentry programs (kvfree_call_rcu, kmem_cache_free_bulk): tried first, dropped if the kernel refuses fentry. */
  optional: ProgramName[];
  maxEntries: { ptrs: number; stacks: number };
  notes: string[];
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
  const programs: ProgramName[] = [...(namedCache ? [] : ['kmalloc' as const]), ...(sized ? [] : ['kmem_cache_alloc' as const]), 'kfree', ...(sized ? [] : ['kmem_cache_free' as const])];
  const notes: string[] = [];
  const monitor = syms?.address('kfree_rcu_monitor');
  const work = syms?.address('kfree_rcu_work');
  if (monitor && work && btf.tracepointArgs('workqueue_execute_start') === 1) programs.push('workqueue_execute_start');
  else notes.push('frees through kfree_rcu batches are not seen on this kernel (no kfree_rcu_monitor/kfree_rcu_work to watch): objects freed that way stay outstanding.');
  const optional = (['kvfree_call_rcu', 'kmem_cache_free_bulk'] as const).filter((fn) => btf.hasFunction(fn));
  const account = btf.enumValue('___GFP_ACCOUNT_BIT');
  return {
    config: {
      minBytes: BigInt(min), maxBytes: BigInt(max), pid: f.pid ?? 0, selfTgid: process.pid, comm: f.comm,
      cache: namedCache ? f.cache : undefined, stacks: o.stacks,
      gfpAccount: account !== undefined ? 2 ** account : 0,
      rcuMonitorFn: programs.includes('workqueue_execute_start') ? monitor! : 0n,
      rcuWorkFn: programs.includes('workqueue_execute_start') ? work! : 0n,
    },
    programs,
    optional: [...optional],
    maxEntries: { ptrs: o.maxPointers, stacks: o.stacks ? STACK_IDS : 1 },
    notes,
  };
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
    `  stacks=${c.stacks ? 1 : 0} gfp_account=0x${c.gfpAccount.toString(16)} rcu_monitor_fn=0x${c.rcuMonitorFn.toString(16)} rcu_work_fn=0x${c.rcuWorkFn.toString(16)}`,
    `maps: ptrs max_entries=${p.maxEntries.ptrs} (not preallocated: kernel memory follows what is held), stacks max_entries=${p.maxEntries.stacks}`,
    `programs: ${p.programs.map((n) => (n === 'workqueue_execute_start' ? 'tp_btf/workqueue_execute_start (kfree_rcu batches)' : `tp_btf/${n}`)).join(' ')}`,
    `  and, where the kernel permits fentry: ${p.optional.map((n) => `fentry/${n}`).join(' ') || '(none: not in BTF)'}`,
    ...p.notes.map((n) => `note: ${n}`),
  ].join('\n');
}

interface Loaded {
  obj: object;
  links: object[];
  fds: { ptrs: number; sites: number; cacheNames: number; counters: number; stacks: number; bss: number };
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
    for (const [name, prog] of lib.programs(obj)) {
      if (!wanted.has(name)) continue;
      try {
        links.push(lib.attach(prog));
      } catch (err) {
        for (const l of links) lib.destroyLink(l);
        throw new EnvironmentError(`kleak could not attach its BPF program to ${name} (errno ${(err as { errno?: number }).errno}).`, 'Use --backend bpftrace or --backend tracefs.');
      }
    }
    ok = true;
    return {
      obj, links, fentry: withFentry,
      fds: {
        ptrs: lib.mapFd(map('ptrs')), sites: lib.mapFd(map('sites')), cacheNames: lib.mapFd(map('cache_names')),
        counters: lib.mapFd(map('counters')), stacks: lib.mapFd(map('stacks')), bss: lib.mapFd(map('kleak.bss')),
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

  constructor(
    private readonly lib: Libbpf,
    private readonly l: Loaded,
    private readonly syms: Kallsyms,
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

  private label(cacheId: bigint, bytesAlloc: number, flags: number): string {
    return (cacheId !== 0n ? this.cacheName(cacheId) : undefined) ?? kmallocCache(bytesAlloc, (flags & F_ACCOUNTED) !== 0);
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
      sites.push({
        callSite: this.syms.format(k.readBigUInt64LE(ko + SITE_KEY.callSite)),
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
      readHash(this.lib, this.l.fds.ptrs, 8, ALLOC.size, (k, ko, v, vo) => {
        const bytesAlloc = v.readUInt32LE(vo + ALLOC.bytesAlloc);
        records.push({
          ptr: k.readBigUInt64LE(ko).toString(16).padStart(16, '0'),
          ts: Number(v.readBigUInt64LE(vo + ALLOC.tsNs)) / 1e9,
          callSite: this.syms.format(v.readBigUInt64LE(vo + ALLOC.callSite)),
          bytesReq: v.readUInt32LE(vo + ALLOC.bytesReq),
          bytesAlloc,
          cache: this.label(v.readBigUInt64LE(vo + ALLOC.cacheId), bytesAlloc, v.readUInt32LE(vo + ALLOC.flags)),
          pid: v.readUInt32LE(vo + ALLOC.pid),
          comm: cString(v, vo + ALLOC.comm, COMM_LEN),
        });
        stackIds.push(v.readInt32LE(vo + ALLOC.stackId));
      });
      const stacks = new Map<number, string[]>();
      const key = Buffer.alloc(4);
      const frames = Buffer.alloc(STACK_DEPTH * 8);
      records.forEach((r, i) => {
        const id = stackIds[i]!;
        if (id < 0) return;
        let st = stacks.get(id);
        if (!st) {
          key.writeInt32LE(id);
          st = [];
          if (this.lib.lookup(this.l.fds.stacks, key, frames) === 0) {
            for (let f = 0; f < STACK_DEPTH; f++) {
              const a = frames.readBigUInt64LE(f * 8);
              if (a === 0n) break;
              const s = this.syms.lookup(a);
              st.push(s ? s.name : a.toString(16));
            }
          }
          stacks.set(id, st);
        }
        if (st.length > 0) r.stack = st;
      });
      snap.outstanding = records;
    }
    return snap;
  }

  /** Kernel memory the maps hold now (memlock of each map's fdinfo), bytes. */
  mapMemory(): number {
    let total = 0;
    for (const fd of Object.values(this.l.fds)) {
      try {
        const m = /^memlock:\s+(\d+)/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'));
        if (m) total += Number(m[1]);
      } catch {
        // fdinfo unreadable: the figure is a lower bound
      }
    }
    return total;
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
  const reader = new Reader(lib, loaded, syms);
  let stopping = false;
  let closed = false;
  let finish: (e: LiveEnd) => void = () => {};
  const ended = new Promise<LiveEnd>((r) => (finish = r));
  const close = () => {
    if (closed) return;
    closed = true;
    for (const l of loaded.links) lib.destroyLink(l);
    lib.close(loaded.obj);
  };
  let snapshots = 0;
  const tick = () => {
    try {
      snapshots++;
      sink.snapshot?.(reader.snapshot(reader.tracked() <= o.listMax));
    } catch (err) {
      clearInterval(timer);
      close();
      finish({ how: 'died', why: `reading kleak's BPF maps failed: ${(err as Error).message}` });
    }
  };
  const timer = setInterval(tick, Math.max(100, o.snapshotSec * 1000));
  return {
    info: { kind: 'live', backend: 'kernel', mode: 'pairs' },
    notes,
    pids: [],
    lines: () => snapshots,
    ended,
    async stop() {
      if (stopping || closed) return void (await ended);
      stopping = true;
      clearInterval(timer);
      try {
        // The final snapshot lists every outstanding pointer, read before the programs detach.
        const last = reader.snapshot(true);
        const c = reader.counters();
        const mem = reader.mapMemory();
        if (c[COUNTER.stackLost]! > 0) notes.push(`${c[COUNTER.stackLost]} allocations have no stack (the stack map was full or two stacks collided).`);
        if (c[COUNTER.rcuFrees]! + c[COUNTER.bulkFrees]! > 0) notes.push(`${c[COUNTER.rcuFrees]} frees were seen through kfree_rcu batches and ${c[COUNTER.bulkFrees]} through bulk frees (no kmem tracepoint shows them).`);
        if (c[COUNTER.rcuCut]! + c[COUNTER.bulkCut]! > 0) notes.push(`${c[COUNTER.rcuCut]! + c[COUNTER.bulkCut]!} RCU or bulk free batches were longer than kleak walks: some of their frees were not seen.`);
        notes.push(`kernel memory held by kleak's BPF maps at the end: ${(mem / 1048576).toFixed(1)} MiB.`);
        close();
        sink.snapshot?.(last);
        finish({ how: 'stopped' });
      } catch (err) {
        close();
        finish({ how: 'died', why: `reading kleak's BPF maps failed: ${(err as Error).message}` });
      }
      await ended;
    },
  };
}
