// /proc/slabinfo (version 2.x) and /proc/meminfo as data: what `kleak watch` samples.

import { existsSync, lstatSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import type { SlabAllocator } from '../event.js';

export interface SlabSample {
  name: string;
  activeObjs: number;
  numObjs: number;
  objSize: number;
  /**
   * Objects per slab: SLUB's active count moves by whole slabs (objects in per-CPU slabs count as active), so a
   * slow leak of small objects shows as a staircase. Absent in captures from before it was kept.
   */
  objPerSlab?: number;
}

/** Parses /proc/slabinfo text; header and malformed lines are skipped. */
export function parseSlabinfo(text: string): SlabSample[] {
  const out: SlabSample[] = [];
  for (const line of text.split('\n')) {
    if (line.startsWith('slabinfo') || line.startsWith('#') || line.trim() === '') continue;
    const f = line.trim().split(/\s+/);
    const [name, active, num, size, perSlab] = f;
    if (name === undefined || f.length < 4) continue;
    const s: SlabSample = { name, activeObjs: Number(active), numObjs: Number(num), objSize: Number(size) };
    if (Number(perSlab) > 0) s.objPerSlab = Number(perSlab);
    if ([s.activeObjs, s.numObjs, s.objSize].every(Number.isFinite)) out.push(s);
  }
  return out;
}

/** Parses /proc/meminfo into kB values ("Slab:  109148 kB" → { Slab: 109148 }). */
export function parseMeminfo(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^([\w()]+):\s+(\d+)(?: kB)?$/gm)) out[m[1]!] = Number(m[2]);
  return out;
}

/** The kernel-side meminfo lines watch shows, in this order. */
export const KERNEL_MEMINFO = ['Slab', 'SReclaimable', 'SUnreclaim', 'KernelStack', 'PageTables', 'VmallocUsed', 'Percpu'] as const;

/**
 * Memory no counter explains, kB: MemTotal minus free, page cache, anonymous and the kernel counters above. An
 * approximation (some counters overlap, drivers allocate pages directly): what matters is whether it grows.
 */
export function unaccountedKb(m: Record<string, number>): number {
  const counted = ['MemFree', 'Buffers', 'Cached', 'SwapCached', 'AnonPages', 'Slab', 'KernelStack', 'PageTables', 'SecPageTables', 'Percpu', 'VmallocUsed']
    .reduce((sum, k) => sum + (m[k] ?? 0), 0);
  return (m.MemTotal ?? 0) - counted;
}

export type CacheName = { kind: 'listed' } | { kind: 'merged'; into: string; alsoHolds: string[] } | { kind: 'absent' } | { kind: 'unknown' };

/**
 * What a cache name is on this kernel: listed in /proc/slabinfo (events carry it), merged into another cache (SLUB
 * merges caches of one size and flags unless slab_nomerge: /sys/kernel/slab/NAME is then a link to the same
 * directory as the cache whose name the events carry), absent, or unknown (slabinfo unreadable: not root).
 */
export function cacheName(name: string, root = ''): CacheName {
  let listed: Set<string>;
  try {
    listed = new Set(parseSlabinfo(readFileSync(`${root}/proc/slabinfo`, 'utf8')).map((s) => s.name));
  } catch {
    return { kind: 'unknown' };
  }
  if (listed.has(name)) return { kind: 'listed' };
  const dir = `${root}/sys/kernel/slab`;
  let target: string;
  try {
    if (!/^[\w.:-]+$/.test(name) || !lstatSync(`${dir}/${name}`).isSymbolicLink()) return { kind: 'absent' };
    target = readlinkSync(`${dir}/${name}`);
  } catch {
    return { kind: 'absent' };
  }
  const same = readdirSync(dir).filter((n) => n !== name && (() => {
    try {
      return readlinkSync(`${dir}/${n}`) === target;
    } catch {
      return false;
    }
  })());
  const into = same.find((n) => listed.has(n));
  return into === undefined ? { kind: 'absent' } : { kind: 'merged', into, alsoHolds: same.filter((n) => n !== into) };
}

/**
 * This kernel's slab allocator, which decides the kmalloc-N labels: SLUB has /sys/kernel/slab; SLAB's /proc/slabinfo
 * has tunables (SLUB prints zeros there); SLOB has neither. `root` is a copied tree (tests).
 */
export function hostSlabAllocator(root = ''): SlabAllocator {
  if (existsSync(`${root}/sys/kernel/slab`)) return 'slub';
  let text: string;
  try {
    text = readFileSync(`${root}/proc/slabinfo`, 'utf8');
  } catch {
    return existsSync(`${root}/proc/slabinfo`) ? 'slub' : 'slob';
  }
  return /: tunables\s+[1-9]/m.test(text) ? 'slab' : 'slub';
}
