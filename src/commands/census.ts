// kleak census CACHE: what a slab cache holds right now, including everything allocated before kleak started,
// grouped by what the objects look like (docs/census.md). Read-only, nothing attached.

import { hostname } from 'node:os';
import { CensusProgram, findBases, walkCache, type CacheInfo, type WalkCounts } from '../census/walker.js';
import { type CensusGroup, dataPointers, labelOf, runs, ShapeGrouper, tableName } from '../census/shapes.js';
import { EnvironmentError, InputError } from '../errors.js';
import { Kallsyms } from '../kernel/kallsyms.js';
import { pageSize } from '../kernel/page-size.js';
import { hexToOffset, x86AddressSpace } from '../linux/address-space.js';
import { fit, fmtBytes, fmtCount, visible } from '../report/format.js';

export interface CensusOptions {
  /** Cache names; or */
  caches: string[];
  /** the kmalloc caches (plain and cgroup-accounted) serving this size; or */
  bytes?: number;
  /** every cache. */
  all?: boolean;
  top: number;
}

/** What the command line asks for, checked: names, --bytes N or --all. */
export function cachesFor(names: string[], bytes: number | undefined, all: boolean): Pick<CensusOptions, 'caches' | 'bytes' | 'all'> {
  const asked = (names.length > 0 ? 1 : 0) + (bytes !== undefined ? 1 : 0) + (all ? 1 : 0);
  if (asked !== 1) throw new InputError('kleak census needs one of: cache names, --bytes N (the kmalloc caches of that size), or --all.', 'Example: sudo kleak census kmalloc-128');
  return { caches: names, ...(bytes !== undefined ? { bytes } : {}), ...(all ? { all } : {}) };
}

export interface CensusCacheReport {
  cache: string;
  objectSize: number;
  /** Objects of the cache's slabs that are allocated now, free now, and both. */
  allocated: number;
  free: number;
  total: number;
  slabs: number;
  /** What could not be walked, in numbers. */
  unwalked: { tornSlabs: number; unreadableSlabs: number; bigSlabs: number; cpuSlabsUnmatched: number; objectsNotCopied: number; sheaves: boolean };
  groups: CensusGroup[];
  seconds: number;
}

export interface CensusReport {
  kleak: 1;
  evidence: 'census';
  source: { kind: 'census'; host: string };
  time: string;
  caches: CensusCacheReport[];
  /** The common report shape: each group a site, its count outstanding now. */
  sites: { label: string; function: string; cache: string; outstanding: number; outstandingBytes: number; shape: string[]; samples: { ptr: string }[] }[];
  /** What the census cost: the longest single program run is the longest a task on kleak's CPU could be stalled. */
  cost: { seconds: number; slabScanSeconds: number; programRuns: number; longestRunMs: number; maxRssMiB: number };
}

/** Bytes of each object read for its shape: enough for the pointers that name most objects (ops, types). */
const COPY_BYTES = 248; // below MAX_COPY: the program masks the length with MAX_COPY - 1

export function runCensus(o: CensusOptions): CensusReport {
  if (process.getuid?.() !== 0) throw new EnvironmentError('kleak census reads kernel memory through BPF: run it as root.');
  const started = performance.now();
  const program = new CensusProgram();
  try {
    const caches = program.caches();
    const names = o.all ? caches.map((c) => c.name) : o.bytes !== undefined ? kmallocNames(caches, o.bytes) : o.caches;
    const wanted = names.map((name) => {
      const c = caches.find((x) => x.name === name);
      if (!c) throw new InputError(`there is no slab cache named "${visible(name)}" (a merged cache is walked under the name it was created with; /sys/kernel/slab shows aliases).`, 'List them with: grep -v "^#" /proc/slabinfo | cut -d" " -f1');
      return c;
    });
    const syms = Kallsyms.load();
    const text = syms.address('_text');
    const stext = syms.address('_stext') ?? text;
    const etext = syms.address('_etext');
    if (text === undefined || stext === undefined || etext === undefined) throw new EnvironmentError('the census needs kernel addresses in /proc/kallsyms (run it as root; kptr_restrict hides them otherwise).');
    const shift = Math.log2(pageSize());
    const pageStruct = 64; // sizeof(struct page) on 64-bit kernels without debug options (docs/census.md)
    const bases = findBases(program, caches, text, shift, pageStruct);
    const toK = (a: bigint) => hexToOffset(a.toString(16).padStart(16, '0'));
    const space = x86AddressSpace([toK(stext), toK(etext)], toK(0xffffffffa0000000n), [toK(bases.pageOffset), toK(bases.pageOffset + bases.physEnd)]);
    const symbolizer = { name: (k: number) => syms.nameAtOffset(k) };
    // One reading of the slabs for every cache asked for: slabs made after it are missed (a snapshot).
    const t0 = performance.now();
    const owners = program.scanSlabs(bases.ramPfns, bases, pageStruct, wanted.length === 1 ? BigInt(`0x${wanted[0]!.ptr}`) : 0n);
    const shared = (performance.now() - t0) / 1000;
    const out: CensusCacheReport[] = [];
    for (const c of wanted) out.push(censusOf(program, bases, c, Uint32Array.from(owners.get(c.ptr) ?? []), space, symbolizer, shift, pageStruct));
    // Kernel data has no symbols here (no CONFIG_KALLSYMS_ALL): a data pointer is named by the functions where it
    // points, which for an ops table or a key type says what the object is (eventfd's f_op, the user key type).
    const tables = describeTables(program, out.flatMap((r) => r.groups.slice(0, DESCRIBED_GROUPS)), space, symbolizer);
    for (const r of out) for (const g of r.groups) g.label = labelOf(g.shape, tables);
    const sites = out.flatMap((r) =>
      r.groups.map((g) => ({ label: g.label, function: g.label, cache: r.cache, outstanding: g.count, outstandingBytes: g.count * r.objectSize, shape: g.shape, samples: g.samples.map((ptr) => ({ ptr })) })),
    );
    sites.sort((a, b) => b.outstandingBytes - a.outstandingBytes);
    const { runs, longestRunMs } = program.cost;
    const cost = {
      seconds: round3((performance.now() - started) / 1000), slabScanSeconds: round3(shared), programRuns: runs, longestRunMs: round3(longestRunMs),
      maxRssMiB: Math.round(process.resourceUsage().maxRSS / 1024),
    };
    return { kleak: 1, evidence: 'census', source: { kind: 'census', host: hostname() }, time: new Date().toISOString(), caches: out, sites: sites.slice(0, o.top), cost };
  } finally {
    program.close();
  }
}

function censusOf(program: CensusProgram, bases: Parameters<typeof walkCache>[1], c: CacheInfo, pfns: Uint32Array, space: ReturnType<typeof x86AddressSpace>, sym: { name(k: number): string | undefined }, shift: number, pageStruct: number): CensusCacheReport {
  const t0 = performance.now();
  const copy = Math.min(COPY_BYTES, Math.ceil(c.objectSize / 8) * 8);
  const grouper = new ShapeGrouper(space, sym, copy / 8);
  const counts: WalkCounts = walkCache(program, bases, c, pfns, copy, shift, pageStruct, (buf, used, rec) => grouper.addBatch(buf, used, rec));
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
    seconds: (performance.now() - t0) / 1000,
  };
}

/** Groups per cache whose data pointers are named by the functions they point to (the rest keep their address). */
const DESCRIBED_GROUPS = 200;
/** Words read at each data pointer to find its functions: an ops table's first 16 members. */
const TABLE_WORDS = 16;

function describeTables(program: CensusProgram, groups: readonly CensusGroup[], space: ReturnType<typeof x86AddressSpace>, sym: { name(k: number): string | undefined }): Map<string, string> {
  const classes = dataPointers(groups);
  const addrs = classes.flatMap((c) => Array.from({ length: TABLE_WORDS }, (_, i) => BigInt(`0x${c.slice(5)}`) + BigInt(i * 8)));
  const words = program.readWords(addrs);
  const names = new Map<string, string>();
  classes.forEach((c, t) => {
    const fns = words.slice(t * TABLE_WORDS, (t + 1) * TABLE_WORDS).map((w) => {
      if (w === undefined) return undefined;
      const k = hexToOffset(w.toString(16).padStart(16, '0'));
      return k >= 0 && k >= space.text[0] && k < space.text[1] ? sym.name(k) : undefined;
    });
    const n = tableName(fns);
    if (n !== undefined) names.set(c, n);
  });
  return names;
}

const round3 = (x: number) => Math.round(x * 1000) / 1000;

export function renderCensus(r: CensusReport, top: number): string {
  const out: string[] = [];
  for (const c of r.caches) {
    out.push(`kleak census — ${visible(c.cache)} on ${visible(r.source.host)} at ${r.time}: ${fmtCount(c.allocated)} allocated, ${fmtCount(c.free)} free of ${fmtCount(c.total)} objects in ${fmtCount(c.slabs)} slabs (${c.objectSize} B each), walked in ${c.seconds.toFixed(2)} s`);
    const u = c.unwalked;
    const gaps = [
      u.tornSlabs ? `${u.tornSlabs} slabs changed under the walk` : '',
      u.bigSlabs ? `${u.bigSlabs} slabs of more than 1024 objects not walked` : '',
      u.cpuSlabsUnmatched ? `${u.cpuSlabsUnmatched} CPU slabs whose CPU was not found (their free objects count as allocated)` : '',
      u.objectsNotCopied ? `${u.objectsNotCopied} objects counted but not grouped` : '',
      u.sheaves ? 'objects in per-CPU sheaves and the barn count as allocated (not walked yet)' : '',
    ].filter((g) => g !== '');
    if (gaps.length) out.push(`not walked: ${gaps.join('; ')}`);
    out.push('a best-effort snapshot: the walk takes no locks, so objects allocated or freed meanwhile may be counted either way');
    out.push('');
    out.push(`${'GROUP'.padEnd(48)} ${'OBJECTS'.padStart(9)} ${'BYTES'.padStart(10)} ${'SHARE'.padStart(6)}`);
    for (const g of c.groups.slice(0, top)) {
      out.push(`${fit(g.label, 48).padEnd(48)} ${fmtCount(g.count).padStart(9)} ${fmtBytes(g.count * c.objectSize).padStart(10)} ${`${((100 * g.count) / Math.max(1, c.allocated)).toFixed(1)}%`.padStart(6)}`);
    }
    if (c.groups.length > top) out.push(`… ${c.groups.length - top} more groups (--top N shows N; --json has them)`);
    for (const g of c.groups.slice(0, 3)) {
      out.push('');
      out.push(`${visible(g.label)}: ${fmtCount(g.count)} objects`);
      out.push(`  shape: ${visible(runs(g.shape))}`);
      out.push(`  e.g. objects at ${g.samples.slice(0, 3).join(' ')}`);
    }
    out.push('');
  }
  const k = r.cost;
  out.push(`census cost: ${k.seconds.toFixed(2)} s (slab scan ${k.slabScanSeconds.toFixed(2)} s), ${k.programRuns} program runs, the longest ${k.longestRunMs.toFixed(1)} ms, ${k.maxRssMiB} MiB`);
  return out.join('\n');
}

/** The kmalloc-N and kmalloc-cg-N (and kmalloc-rcl-N) caches that serve an allocation of `bytes`: the smallest N. */
function kmallocNames(caches: readonly CacheInfo[], bytes: number): string[] {
  const sizes = caches.map((c) => /^kmalloc-(\d+)$/.exec(c.name)).filter((m) => m !== null).map((m) => Number(m![1])).sort((a, b) => a - b);
  const n = sizes.find((s) => s >= bytes);
  if (n === undefined) throw new InputError(`no kmalloc cache serves ${bytes} bytes here (larger kmallocs come from the page allocator: kleak live --alloc page).`);
  return caches.filter((c) => c.name === `kmalloc-${n}` || c.name === `kmalloc-cg-${n}` || c.name === `kmalloc-rcl-${n}`).map((c) => c.name);
}
