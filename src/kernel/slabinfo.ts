// /proc/slabinfo (version 2.x) and /proc/meminfo as data: what `kleak watch` samples.

export interface SlabSample {
  name: string;
  activeObjs: number;
  numObjs: number;
  objSize: number;
}

/** Parses /proc/slabinfo text; header and malformed lines are skipped. */
export function parseSlabinfo(text: string): SlabSample[] {
  const out: SlabSample[] = [];
  for (const line of text.split('\n')) {
    if (line.startsWith('slabinfo') || line.startsWith('#') || line.trim() === '') continue;
    const f = line.trim().split(/\s+/);
    const [name, active, num, size] = f;
    if (name === undefined || f.length < 4) continue;
    const s = { name, activeObjs: Number(active), numObjs: Number(num), objSize: Number(size) };
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
