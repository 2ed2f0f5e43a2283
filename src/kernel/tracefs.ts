// Where tracefs is, mounting it when it is not (and saying so), and which kmem tracepoints this kernel has.

import { execa } from 'execa';
import { existsSync, readdirSync } from 'node:fs';
import { EnvironmentError } from '../errors.js';
import { ALLOCATOR_TRACEPOINTS, type AllocatorName, type Tracepoint } from '../event.js';

const CANDIDATES = ['/sys/kernel/tracing', '/sys/kernel/debug/tracing'];

export interface TracefsInfo {
  root: string;
  /** Set when kleak mounted it: the sentence to show the user. */
  mounted?: string;
}

/** The tracefs root when one is mounted (nothing is mounted here). */
export function mountedTracefsRoot(): string | undefined {
  return CANDIDATES.find((root) => existsSync(`${root}/events`));
}

/** The tracefs root, mounting /sys/kernel/tracing when no tracefs is mounted. */
export async function ensureTracefs(): Promise<TracefsInfo> {
  for (const root of CANDIDATES) if (existsSync(`${root}/events`)) return { root };
  const root = CANDIDATES[0]!;
  if (!existsSync(root)) {
    throw new EnvironmentError(`this kernel has no tracefs (${root} does not exist).`, 'kleak needs a kernel built with CONFIG_FTRACE and tracepoints.');
  }
  const r = await execa('mount', ['-t', 'tracefs', 'nodev', root], { reject: false });
  if (r.exitCode !== 0 || !existsSync(`${root}/events`)) {
    throw new EnvironmentError(`tracefs is not mounted and mounting it at ${root} failed: ${String(r.stderr).trim() || `exit ${r.exitCode}`}.`, `Mount it (mount -t tracefs nodev ${root}) and run kleak again.`);
  }
  return { root, mounted: `tracefs was not mounted; kleak mounted it at ${root} (it stays mounted).` };
}

export type KmemTracepoint = Tracepoint;

/** The kmem tracepoints this kernel has (6.1 removed the _node variants; older kernels have them). */
export function kmemTracepoints(root: string): Set<KmemTracepoint> {
  try {
    return new Set(readdirSync(`${root}/events/kmem`).filter((n) => /^(kmalloc|kmalloc_node|kfree|kmem_cache_alloc|kmem_cache_alloc_node|kmem_cache_free)$/.test(n)) as KmemTracepoint[]);
  } catch {
    return new Set();
  }
}

export interface ProbeSet {
  allocs: KmemTracepoint[];
  frees: KmemTracepoint[];
}

/** The tracepoints a filter needs: kmalloc + kfree for sizes, kmem_cache_alloc + kmem_cache_free for a named cache. */
export function probesFor(available: Set<KmemTracepoint>, namedCache: boolean): ProbeSet {
  const allocs: KmemTracepoint[] = namedCache ? ['kmem_cache_alloc', 'kmem_cache_alloc_node'] : ['kmalloc', 'kmalloc_node'];
  const frees: KmemTracepoint[] = namedCache ? ['kmem_cache_free'] : ['kfree'];
  const have = { allocs: allocs.filter((t) => available.has(t)), frees: frees.filter((t) => available.has(t)) };
  if (have.allocs.length === 0 || have.frees.length === 0) {
    const missing = [...allocs.slice(0, 1), ...frees].filter((t) => !available.has(t));
    throw new EnvironmentError(
      `this kernel has no kmem:${missing.join(' / kmem:')} tracepoint${missing.length > 1 ? 's' : ''}.`,
      'kleak needs the kmem tracepoints (CONFIG_TRACEPOINTS, CONFIG_FTRACE); check ls /sys/kernel/tracing/events/kmem.',
    );
  }
  return have;
}

/**
 * The allocator tracepoints this kernel lacks (group/name), for the allocators asked; a needed one missing is one
 * sentence. mm_page_free_batched may be missing where the caller can do without it (its pages then come back
 * through mm_page_free).
 */
export function missingAllocatorTracepoints(root: string, allocators: ReadonlySet<AllocatorName>, batchedOptional: boolean): string[] {
  const absent: string[] = [];
  for (const [allocator, tp] of Object.entries(ALLOCATOR_TRACEPOINTS)) {
    if (!allocators.has(allocator as AllocatorName)) continue;
    const missing = [tp.alloc, ...tp.frees].filter((e) => !existsSync(`${root}/events/${tp.group}/${e}`));
    if (missing.some((m) => !(batchedOptional && m === 'mm_page_free_batched'))) {
      throw new EnvironmentError(`this kernel has no ${missing.map((m) => `${tp.group}:${m}`).join(' / ')} tracepoint, which --alloc ${allocator} needs.`, `ls ${root}/events/${tp.group} shows what it has; --alloc slab still works.`);
    }
    absent.push(...missing.map((m) => `${tp.group}/${m}`));
  }
  return absent;
}
