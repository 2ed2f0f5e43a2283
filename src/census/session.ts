// A census session: the program loaded, this kernel's bases and address ranges found once, then one census round
// after another (`take`), each a fresh walk of the caches asked for. The source of census evidence; the model
// (model.ts) turns rounds into series and verdicts. See docs/census.md.

import { CensusProgram, findBases, type CacheInfo, type KernelBases, type WalkCounts, walkCache } from './walker.js';
import { type CensusGroup, dataPointers, labelOf, ShapeGrouper, tableName, type Symbolizer } from './shapes.js';
import { EnvironmentError, InputError } from '../errors.js';
import { Kallsyms } from '../kernel/kallsyms.js';
import { pageSize } from '../kernel/page-size.js';
import { type AddressSpace, hexToOffset, x86AddressSpace } from '../linux/address-space.js';
import { visible } from '../output.js';

/** One cache in one census round. */
export interface CensusCache {
  cache: string;
  objectSize: number;
  /** Objects of the cache's slabs that are allocated now, free now, and both. */
  allocated: number;
  free: number;
  total: number;
  slabs: number;
  /** What could not be walked, in numbers. */
  unwalked: { tornSlabs: number; unreadableSlabs: number; bigSlabs: number; cpuSlabsUnmatched: number; objectsNotCopied: number; sheaves: boolean };
  /** Most objects first. */
  groups: CensusGroup[];
  seconds: number;
}

export interface CensusCost {
  seconds: number;
  slabScanSeconds: number;
  programRuns: number;
  /** The longest single program run: the longest a task sharing kleak's CPU can be stalled by the census. */
  longestRunMs: number;
  maxRssMiB: number;
}

/** One census: every cache asked for, walked once. A line of a census recording. */
export interface CensusRound {
  kind: 'census-round';
  time: string;
  caches: CensusCache[];
  cost: CensusCost;
}

/** Bytes of each object read for its shape: enough for the pointers that name most objects (ops, types). */
const COPY_BYTES = 248; // below MAX_COPY: the program masks the length with MAX_COPY - 1
/** sizeof(struct page) on 64-bit kernels without debug options (docs/census.md). */
const PAGE_STRUCT = 64;
/** Groups per cache whose data pointers are named by the functions they point to (the rest keep their address). */
const DESCRIBED_GROUPS = 200;
/** Words read at each data pointer to find its functions: an ops table's first 16 members. */
const TABLE_WORDS = 16;

export class CensusSession {
  private readonly program: CensusProgram;
  private readonly bases: KernelBases;
  private readonly space: AddressSpace;
  private readonly sym: Symbolizer;
  private readonly shift = Math.log2(pageSize());
  /** Every cache of the kernel when the session opened. */
  readonly caches: CacheInfo[];
  private readonly started = performance.now();
  private tables = new Map<string, string>();
  private rounds = 0;

  constructor() {
    if (process.getuid?.() !== 0) throw new EnvironmentError('kleak census reads kernel memory through BPF: run it as root.');
    this.program = new CensusProgram();
    try {
      this.caches = this.program.caches();
      const syms = Kallsyms.load();
      const text = syms.address('_text');
      const stext = syms.address('_stext') ?? text;
      const etext = syms.address('_etext');
      if (text === undefined || stext === undefined || etext === undefined) throw new EnvironmentError('the census needs kernel addresses in /proc/kallsyms (run it as root; kptr_restrict hides them otherwise).');
      this.bases = findBases(this.program, this.caches, text, this.shift, PAGE_STRUCT);
      const toK = (a: bigint) => hexToOffset(a.toString(16).padStart(16, '0'));
      this.space = x86AddressSpace([toK(stext), toK(etext)], toK(0xffffffffa0000000n), [toK(this.bases.pageOffset), toK(this.bases.pageOffset + this.bases.physEnd)]);
      this.sym = { name: (k: number) => syms.nameAtOffset(k) };
    } catch (err) {
      this.program.close();
      throw err;
    }
  }

  close(): void {
    this.program.close();
  }

  /** The caches named (refused in one sentence when one does not exist). */
  named(names: readonly string[]): CacheInfo[] {
    return names.map((name) => {
      const c = this.caches.find((x) => x.name === name);
      if (!c) throw new InputError(`there is no slab cache named "${visible(name)}" (a merged cache is walked under the name it was created with; /sys/kernel/slab shows aliases).`, 'List them with: grep -v "^#" /proc/slabinfo | cut -d" " -f1');
      return c;
    });
  }

  /** One census of the given caches. */
  take(wanted: readonly CacheInfo[]): CensusRound {
    const t0 = performance.now();
    const runsBefore = this.program.cost.runs;
    const first = this.rounds++ === 0;
    // Each round says its own runs; the first, the session's setup too (its base search runs the program).
    if (!first) this.program.cost.longestRunMs = 0;
    // One reading of the slabs for every cache asked for: slabs made after it are missed (a snapshot).
    const owners = this.program.scanSlabs(this.bases.ramPfns, this.bases, PAGE_STRUCT, wanted.length === 1 ? BigInt(`0x${wanted[0]!.ptr}`) : 0n);
    const scanned = performance.now();
    const caches = wanted.map((c) => this.walk(c, Uint32Array.from(owners.get(c.ptr) ?? [])));
    // Kernel data has no symbols here (no CONFIG_KALLSYMS_ALL): a data pointer is named by the functions where it
    // points, which for an ops table or a key type says what the object is (eventfd's f_op, the user key type).
    this.describeTables(caches.flatMap((r) => r.groups.slice(0, DESCRIBED_GROUPS)));
    for (const r of caches) for (const g of r.groups) g.label = labelOf(g.shape, this.tables);
    const round = (x: number) => Math.round(x * 1000) / 1000;
    // The first round's cost includes opening the session (loading the program, finding the bases).
    const since = first ? this.started : t0;
    return {
      kind: 'census-round',
      time: new Date().toISOString(),
      caches,
      cost: {
        seconds: round((performance.now() - since) / 1000), slabScanSeconds: round((scanned - t0) / 1000), programRuns: this.program.cost.runs - (first ? 0 : runsBefore),
        longestRunMs: round(this.program.cost.longestRunMs), maxRssMiB: Math.round(process.resourceUsage().maxRSS / 1024),
      },
    };
  }

  private walk(c: CacheInfo, pfns: Uint32Array): CensusCache {
    const t0 = performance.now();
    const copy = Math.min(COPY_BYTES, Math.ceil(c.objectSize / 8) * 8);
    const grouper = new ShapeGrouper(this.space, this.sym, copy / 8);
    const counts: WalkCounts = walkCache(this.program, this.bases, c, pfns, copy, this.shift, PAGE_STRUCT, (buf, used, rec) => grouper.addBatch(buf, used, rec));
    return {
      cache: c.name,
      objectSize: c.objectSize,
      allocated: counts.allocated,
      free: counts.objects - counts.allocated,
      total: counts.objects,
      slabs: counts.slabs,
      unwalked: {
        tornSlabs: counts.torn, unreadableSlabs: counts.unreadable, bigSlabs: counts.tooMany, cpuSlabsUnmatched: counts.frozenUnmatched,
        objectsNotCopied: counts.truncated, sheaves: c.sheafCapacity > 0,
      },
      groups: grouper.result(),
      seconds: Math.round(performance.now() - t0) / 1000,
    };
  }

  /**
   * The addresses allocated now in each named cache (that exists and was walked whole), as pointer keys (the low 52 bits of a kernel
   * address, as the engine keys them): what a live run checks its outstanding objects against at its end.
   */
  allocatedKeys(names: readonly string[]): Map<string, Set<number>> {
    const wanted = names.map((n) => this.caches.find((c) => c.name === n)).filter((c): c is CacheInfo => c !== undefined);
    const out = new Map<string, Set<number>>();
    if (wanted.length === 0) return out;
    const owners = this.program.scanSlabs(this.bases.ramPfns, this.bases, PAGE_STRUCT, wanted.length === 1 ? BigInt(`0x${wanted[0]!.ptr}`) : 0n);
    for (const c of wanted) {
      const keys = new Set<number>();
      const counts = walkCache(this.program, this.bases, c, Uint32Array.from(owners.get(c.ptr) ?? []), 0, this.shift, PAGE_STRUCT, (buf, used, rec) => {
        for (let o = 0; o + 8 <= used; o += rec) {
          const lo = buf.readUInt32LE(o);
          const hi = buf.readUInt32LE(o + 4);
          if (hi >>> 20 === 0xfff) keys.add((hi & 0xfffff) * 2 ** 32 + lo);
        }
      });
      // An object missing from the list must be free, not merely unseen: a cache with any slab not walked whole (or
      // objects in sheaves) is left out.
      const whole = counts.torn + counts.unreadable + counts.tooMany + counts.frozenUnmatched + counts.truncated === 0 && c.sheafCapacity === 0;
      if (whole) out.set(c.name, keys);
    }
    return out;
  }

  /** Names the data pointers of these groups not named yet (kept for the session: kernel data does not move). */
  private describeTables(groups: readonly CensusGroup[]): void {
    const classes = dataPointers(groups).filter((c) => !this.tables.has(c));
    const addrs = classes.flatMap((c) => Array.from({ length: TABLE_WORDS }, (_, i) => BigInt(`0x${c.slice(5)}`) + BigInt(i * 8)));
    const words = this.program.readWords(addrs);
    const text = this.space.text;
    classes.forEach((c, t) => {
      const fns = words.slice(t * TABLE_WORDS, (t + 1) * TABLE_WORDS).map((w) => {
        if (w === undefined) return undefined;
        const k = hexToOffset(w.toString(16).padStart(16, '0'));
        return k >= text[0] && k < text[1] ? this.sym.name(k) : undefined;
      });
      // A table with no function is remembered too (as its address), so it is not read again next round.
      this.tables.set(c, tableName(fns) ?? c);
    });
  }
}

/** The kmalloc-N and kmalloc-cg-N (and kmalloc-rcl-N) caches that serve an allocation of `bytes`: the smallest N. */
export function kmallocNames(caches: readonly CacheInfo[], bytes: number): string[] {
  const sizes = caches.map((c) => /^kmalloc-(\d+)$/.exec(c.name)).filter((m) => m !== null).map((m) => Number(m![1])).sort((a, b) => a - b);
  const n = sizes.find((s) => s >= bytes);
  if (n === undefined) throw new InputError(`no kmalloc cache serves ${bytes} bytes here (larger kmallocs come from the page allocator: kleak live --alloc page).`);
  return caches.filter((c) => c.name === `kmalloc-${n}` || c.name === `kmalloc-cg-${n}` || c.name === `kmalloc-rcl-${n}`).map((c) => c.name);
}
