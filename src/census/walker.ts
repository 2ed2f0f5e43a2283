// The census program's host: loads bpf/census.bpf.o, finds what the walk needs to know about this kernel (the
// direct map and vmemmap bases, each CPU's per-CPU offset, the caches), and walks one cache's slabs, handing each
// batch of allocated objects to a callback. Nothing is attached: the program runs only when kleak calls it, and
// closing the object (or kleak's death) leaves nothing loaded. See docs/census.md.

import { readFileSync } from 'node:fs';
import { EnvironmentError } from '../errors.js';
import { libbpf } from '../kernel/libbpf.js';
import { X86_64_DEFAULT_BASES } from '../linux/address-space.js';
import { packagePath } from '../paths.js';
import { CACHE_RECORD, CTX_BYTES, type CtxField, ctxOffset, IN, MAX_CPUS, MAX_PFNS, OP, OUT_VALUE_BYTES, SCAN_PFNS } from './layout.js';

export const CENSUS_OBJECT = packagePath('bpf', 'census.bpf.o');

export interface CacheInfo {
  /** struct kmem_cache * as 16 hex digits. */
  ptr: string;
  name: string;
  cpuSlab: bigint;
  size: number;
  objectSize: number;
  freeOffset: number;
  sheafCapacity: number;
  random: bigint;
  hardened: boolean;
}

export interface WalkCounts {
  slabs: number;
  objects: number;
  allocated: number;
  torn: number;
  unreadable: number;
  truncated: number;
  frozenUnmatched: number;
  tooMany: number;
}

type Ptr = object;
const GiB = 1n << 30n;

export class CensusProgram {
  private readonly lib = libbpf();
  private readonly obj: Ptr;
  private readonly progFd: number;
  private readonly outFd: number;
  private readonly inFd: number;
  private readonly zero = Buffer.alloc(4);
  readonly out = Buffer.alloc(OUT_VALUE_BYTES);
  readonly input = Buffer.alloc(IN.bytes);
  readonly ncpus: number;
  /**
   * Each BPF_PROG_RUN holds its CPU for its whole length (the program cannot be preempted on a kernel without
   * preemption), so the longest run is what a task sharing that CPU can be stalled by: kleak keeps it short.
   */
  readonly cost = { runs: 0, longestRunMs: 0, runMs: 0 };

  constructor(objectPath = CENSUS_OBJECT) {
    let image: Buffer;
    try {
      image = readFileSync(objectPath);
    } catch {
      throw new EnvironmentError(`the census program ${objectPath} is missing.`, 'Reinstall kleak, or run npm run build:bpf.');
    }
    this.obj = this.lib.openMem(image, 'kleak_census');
    const prog = this.lib.programs(this.obj).get('census');
    const log = Buffer.alloc(1 << 20);
    if (prog) this.lib.setLogBuf(prog, log);
    const r = this.lib.load(this.obj);
    if (r !== 0 || !prog) {
      const text = log.toString('utf8', 0, Math.max(0, log.indexOf(0))).trim().split('\n').slice(-3).join(' / ');
      this.lib.close(this.obj);
      throw new EnvironmentError(
        `the kernel refused the census program (error ${r}${text ? `: ${text}` : ''}).`,
        'The census needs root, BPF_PROG_TYPE_SYSCALL, the bpf_iter_kmem_cache kfunc (Linux 6.13+) and a SLUB layout kleak knows (docs/census.md); kleak live and kleak watch work without it.',
      );
    }
    this.progFd = this.lib.programFd(prog);
    const maps = this.lib.maps(this.obj);
    this.outFd = this.lib.mapFd(maps.get('census_out')!);
    this.inFd = this.lib.mapFd(maps.get('census_in')!);
    this.ncpus = Math.min(MAX_CPUS, this.lib.possibleCpus());
  }

  close(): void {
    this.lib.close(this.obj);
  }

  /** One BPF_PROG_RUN with the given context fields; returns the context the program left. */
  run(fields: Partial<Record<CtxField, bigint | number>>, withInput = false): (f: CtxField) => bigint {
    const ctx = Buffer.alloc(CTX_BYTES);
    ctx.writeBigUInt64LE(BigInt(this.ncpus), ctxOffset('ncpus'));
    for (const [k, v] of Object.entries(fields)) ctx.writeBigUInt64LE(BigInt.asUintN(64, BigInt(v)), ctxOffset(k as CtxField));
    if (withInput && this.lib.update(this.inFd, this.zero, this.input) !== 0) throw new Error(`census: writing census_in failed (errno ${this.lib.errno()})`);
    const t0 = performance.now();
    const { err, retval } = this.lib.run(this.progFd, ctx);
    const ms = performance.now() - t0;
    this.cost.runs++;
    this.cost.runMs += ms;
    if (ms > this.cost.longestRunMs) this.cost.longestRunMs = ms;
    if (err !== 0) throw new EnvironmentError(`the kernel refused to run the census program (error ${err}).`, 'BPF_PROG_RUN of syscall programs needs root (CAP_BPF and CAP_PERFMON) and Linux 5.14+.');
    if (retval !== 0) throw new EnvironmentError(`the census program failed (returned ${retval}): this kernel lacks the bpf_iter_kmem_cache kfunc (Linux 6.13+).`);
    return (f) => ctx.readBigUInt64LE(ctxOffset(f));
  }

  readOut(): Buffer {
    if (this.lib.lookup(this.outFd, this.zero, this.out) !== 0) throw new Error(`census: reading census_out failed (errno ${this.lib.errno()})`);
    return this.out;
  }

  readIn(): Buffer {
    if (this.lib.lookup(this.inFd, this.zero, this.input) !== 0) throw new Error(`census: reading census_in failed (errno ${this.lib.errno()})`);
    return this.input;
  }

  caches(): CacheInfo[] {
    const ctx = this.run({ op: OP.caches });
    const out = this.readOut();
    const n = Number(ctx('objects'));
    const list: CacheInfo[] = [];
    for (let i = 0; i < n; i++) {
      const b = i * CACHE_RECORD.bytes;
      const name = out.toString('latin1', b + CACHE_RECORD.name, b + CACHE_RECORD.name + 64);
      list.push({
        ptr: out.readBigUInt64LE(b + CACHE_RECORD.cache).toString(16).padStart(16, '0'),
        name: name.slice(0, name.indexOf('\0') < 0 ? 64 : name.indexOf('\0')),
        cpuSlab: out.readBigUInt64LE(b + CACHE_RECORD.cpuSlab),
        size: Number(out.readBigUInt64LE(b + CACHE_RECORD.size)),
        objectSize: Number(out.readBigUInt64LE(b + CACHE_RECORD.objectSize)),
        freeOffset: Number(out.readBigUInt64LE(b + CACHE_RECORD.offset)),
        sheafCapacity: Number(out.readBigUInt64LE(b + CACHE_RECORD.sheafCapacity)),
        random: out.readBigUInt64LE(b + CACHE_RECORD.random),
        hardened: out.readBigUInt64LE(b + CACHE_RECORD.hasRandom) !== 0n,
      });
    }
    return list;
  }

  /** Kernel words at the given addresses (undefined where unreadable), up to MAX_PFNS a run. */
  readWords(addrs: readonly bigint[], perRun = MAX_PFNS): (bigint | undefined)[] {
    const res: (bigint | undefined)[] = [];
    for (let at = 0; at < addrs.length; at += perRun) {
      const part = addrs.slice(at, at + Math.min(perRun, MAX_PFNS));
      part.forEach((a, i) => this.input.writeBigUInt64LE(BigInt.asUintN(64, a), IN.words + i * 8));
      this.run({ op: OP.read, count: part.length }, true);
      const inp = this.readIn();
      part.forEach((_, i) => res.push(inp.readBigUInt64LE(IN.ok + i * 8) !== 0n ? inp.readBigUInt64LE(IN.words + i * 8) : undefined));
    }
    return res;
  }

  /**
   * The slab head pfns of each cache in the given pfn ranges (System RAM), keyed by its struct kmem_cache * (16 hex
   * digits), read from struct page by the program: about twice as fast as /proc/kpageflags, which computes every flag
   * of every page. `target` (a kmem_cache *) keeps only that cache's slabs.
   */
  scanSlabs(ranges: readonly [number, number][], bases: Pick<KernelBases, 'vmemmap'>, pageStructSize: number, target = 0n): Map<string, number[]> {
    const by = new Map<string, number[]>();
    for (const [start, end] of ranges) {
      for (let next = start; next < end; ) {
        const ctx = this.run({ op: OP.scan, next, count: Math.min(end, next + SCAN_PFNS), vmemmap: bases.vmemmap, page_struct_size: pageStructSize, target });
        const after = Number(ctx('next'));
        if (after <= next) throw new Error(`census: the slab scan made no progress at pfn ${next}`);
        next = after;
        const used = Number(ctx('out_used'));
        if (used === 0) continue;
        const out = this.readOut();
        for (let at = 0; at + 16 <= used; at += 16) {
          const owner = out.readUInt32LE(at + 12).toString(16).padStart(8, '0') + out.readUInt32LE(at + 8).toString(16).padStart(8, '0');
          let list = by.get(owner);
          if (!list) by.set(owner, (list = []));
          list.push(out.readUInt32LE(at));
        }
      }
    }
    return by;
  }

  /** Each CPU's per-CPU offset: its copy of a per-CPU map element less the map's per-CPU pointer. */
  perCpuOffsets(): bigint[] {
    this.run({ op: OP.percpu });
    const inp = this.readIn();
    const base = inp.readBigUInt64LE(IN.pcpuBase);
    if (base === 0n) throw new EnvironmentError('the census could not find the per-CPU areas (struct bpf_array has no pptrs here).');
    return Array.from({ length: this.ncpus }, (_, c) => BigInt.asUintN(64, inp.readBigUInt64LE(IN.cpuOffset + c * 8) - base));
  }
}

export interface KernelBases {
  /** Direct map base (x86-64: page_offset_base). */
  pageOffset: bigint;
  /** The struct page of pfn 0 (x86-64: vmemmap_base). */
  vmemmap: bigint;
  /** End of physical memory, for the direct map's extent. */
  physEnd: bigint;
  /** System RAM as pfn ranges [start, end): where slabs can be (holes are not read: each unmapped read faults). */
  ramPfns: [number, number][];
  perCpu: bigint[];
}

/** "Kernel code" and the end of System RAM from /proc/iomem (real addresses for root). */
function iomem(text = readFileSync('/proc/iomem', 'utf8')): { kernelCode: bigint | undefined; physEnd: bigint; ram: [bigint, bigint][] } {
  let kernelCode: bigint | undefined;
  let physEnd = 0n;
  const ram: [bigint, bigint][] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*([0-9a-f]+)-([0-9a-f]+) : (.*)$/.exec(line);
    if (!m) continue;
    if (m[3] === 'Kernel code') kernelCode = BigInt(`0x${m[1]}`);
    if (m[3] === 'System RAM') {
      const end = BigInt(`0x${m[2]}`) + 1n;
      if (end > physEnd) physEnd = end;
      ram.push([BigInt(`0x${m[1]}`), end]);
    }
  }
  return { kernelCode, physEnd, ram };
}

/**
 * Finds the randomised bases this kernel does not export (CONFIG_RANDOMIZE_MEMORY, no CONFIG_KALLSYMS_ALL):
 * - the direct map: a kmem_cache pointer is a direct-map address, and the base is 1 GiB-aligned below it, at the
 *   candidate where the kernel text's physical copy (from /proc/iomem) reads the same bytes as _text;
 * - vmemmap: 1 GiB-aligned too; at the right base, the struct slab of the page holding the "kmem_cache" cache's own
 *   kmem_cache names that cache (following compound_head from a tail page).
 */
export function findBases(p: CensusProgram, caches: readonly CacheInfo[], textAddr: bigint, pageShift: number, pageStructSize: number): KernelBases {
  const { kernelCode, physEnd, ram } = iomem();
  const ramPfns = ram.map(([a, b]): [number, number] => [Number(a >> BigInt(pageShift)), Number((b + (1n << BigInt(pageShift)) - 1n) >> BigInt(pageShift))]);
  if (kernelCode === undefined || physEnd === 0n) throw new EnvironmentError('the census cannot read physical addresses from /proc/iomem (run it as root).');
  const kc = caches.find((c) => c.name === 'kmem_cache');
  if (!kc) throw new EnvironmentError('the census found no kmem_cache cache among the slab caches.');
  const kcPtr = BigInt(`0x${kc.ptr}`);
  const [textWord] = p.readWords([textAddr]);
  if (textWord === undefined) throw new EnvironmentError('the census cannot read kernel memory (lockdown=confidentiality forbids it).', 'kleak live and kleak watch work without reading memory.');
  // The unrandomised base first: one read settles it on kernels without CONFIG_RANDOMIZE_MEMORY (or with nokaslr).
  const top = kcPtr & ~(GiB - 1n);
  const candidates: bigint[] = [X86_64_DEFAULT_BASES.pageOffset];
  for (let k = 0n; k * GiB <= physEnd + GiB; k++) if (top - k * GiB !== candidates[0]) candidates.push(top - k * GiB);
  const words = p.readWords(candidates.map((c) => c + kernelCode), PROBE_PER_RUN);
  const i = words.findIndex((w) => w === textWord);
  if (i < 0) throw new EnvironmentError('the census could not find the direct map base on this kernel (its layout is not one kleak knows).');
  const pageOffset = candidates[i]!;
  // vmemmap lies above the direct map, below the CPU entry area (x86-64 4-level paging).
  const pfn = (kcPtr - pageOffset) >> BigInt(pageShift);
  const pageOfKc = pfn * BigInt(pageStructSize);
  const limit = hexToBig('fffffe0000000000');
  const first = (pageOffset + physEnd + GiB - 1n) & ~(GiB - 1n);
  let vmemmap: bigint | undefined;
  const dflt = X86_64_DEFAULT_BASES.vmemmap;
  if (dflt >= first && (p.readWords([dflt + pageOfKc + 8n])[0]) === kcPtr) vmemmap = dflt;
  for (let c = first; vmemmap === undefined && c < limit; c += GiB * BigInt(PROBE_PER_RUN)) {
    const cands: bigint[] = [];
    for (let j = 0n; j < BigInt(PROBE_PER_RUN) && c + j * GiB < limit; j++) cands.push(c + j * GiB);
    const ws = p.readWords(cands.map((b) => b + pageOfKc + 8n), PROBE_PER_RUN);
    const tails: [bigint, bigint][] = [];
    for (let j = 0; j < cands.length; j++) {
      const w = ws[j];
      if (w === undefined) continue;
      if (w === kcPtr) {
        vmemmap = cands[j];
        break;
      }
      if ((w & 1n) === 1n) tails.push([cands[j]!, w - 1n + 8n]);
    }
    if (vmemmap === undefined && tails.length > 0) {
      const heads = p.readWords(tails.map((t) => t[1]));
      const k = heads.findIndex((w) => w === kcPtr);
      if (k >= 0) vmemmap = tails[k]![0];
    }
  }
  if (vmemmap === undefined) throw new EnvironmentError('the census could not find the vmemmap base on this kernel (its layout is not one kleak knows).');
  return { pageOffset, vmemmap, physEnd, ramPfns, perCpu: p.perCpuOffsets() };
}

const hexToBig = (h: string) => BigInt(`0x${h}`);

/**
 * Candidate bases probed per run. Most candidates are unmapped, and each unmapped read costs the kernel a page
 * fault and an exception-table fixup (microseconds): 4096 of them in one run held the CPU for tens of
 * milliseconds, so the search reads a few hundred at a time.
 */
const PROBE_PER_RUN = 256;


/**
 * Walks `cache` over the slab head pfns, calling `onObjects(buffer, bytesUsed, recordBytes)` for each batch of
 * allocated objects (address, then copyLen bytes). Returns the counts the program kept.
 */
export function walkCache(
  p: CensusProgram,
  bases: KernelBases,
  cache: CacheInfo,
  pfns: Uint32Array,
  copyLen: number,
  pageShift: number,
  pageStructSize: number,
  onObjects: (out: Buffer, used: number, recordBytes: number) => void,
): WalkCounts {
  const counts: WalkCounts = { slabs: 0, objects: 0, allocated: 0, torn: 0, unreadable: 0, truncated: 0, frozenUnmatched: 0, tooMany: 0 };
  bases.perCpu.forEach((o, c) => p.input.writeBigUInt64LE(o, IN.cpuOffset + c * 8));
  for (let at = 0; at < pfns.length; at += MAX_PFNS) {
    const part = pfns.subarray(at, at + MAX_PFNS);
    for (let i = 0; i < part.length; i++) p.input.writeBigUInt64LE(BigInt(part[i]!), IN.words + i * 8);
    let next = 0;
    let first = true;
    while (next < part.length) {
      const ctx = p.run(
        {
          op: OP.walk, target: BigInt(`0x${cache.ptr}`), page_offset: bases.pageOffset, vmemmap: bases.vmemmap, page_struct_size: pageStructSize,
          page_shift: pageShift, count: part.length, next, copy_len: copyLen, cpu_slab: cache.cpuSlab, size: cache.size,
          free_offset: cache.freeOffset, hardened: cache.hardened ? 1 : 0, random: cache.random,
        },
        first,
      );
      first = false;
      const before = next;
      next = Number(ctx('next'));
      if (next <= before) throw new Error(`census: the walk made no progress at pfn index ${at + next}`);
      counts.slabs += Number(ctx('slabs'));
      counts.objects += Number(ctx('objects'));
      counts.allocated += Number(ctx('allocated'));
      counts.torn += Number(ctx('torn'));
      counts.unreadable += Number(ctx('unreadable'));
      counts.truncated += Number(ctx('truncated'));
      counts.frozenUnmatched += Number(ctx('frozen_unmatched'));
      counts.tooMany += Number(ctx('too_many'));
      const used = Number(ctx('out_used'));
      if (used > 0) onObjects(p.readOut(), used, 8 + copyLen);
    }
  }
  return counts;
}

