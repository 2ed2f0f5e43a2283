// Which allocations a run looks at (docs/design.md): size, cache, comm, pid.

import type { KmemEvent } from '../event.js';

export interface EventFilter {
  bytes?: number;
  minBytes?: number;
  maxBytes?: number;
  cache?: string;
  comm?: string;
  pid?: number;
  /** A memory cgroup's path ("/kleak-a"): allocations of tasks in it and below it. */
  cgroup?: string;
}

export function isEmptyFilter(f: EventFilter): boolean {
  return Object.values(f).every((v) => v === undefined);
}

/** A predicate for allocation events, or undefined when everything passes (the common, fast case). */
export function compileFilter(f: EventFilter): ((e: KmemEvent) => boolean) | undefined {
  if (isEmptyFilter(f)) return undefined;
  const { bytes, minBytes, maxBytes, cache, comm, pid, cgroup } = f;
  const under = cgroup === undefined || cgroup === '/' ? undefined : `${cgroup}/`;
  return (e) => {
    const b = e.bytesAlloc;
    if (bytes !== undefined && b !== bytes) return false;
    if (minBytes !== undefined && (b === undefined || b < minBytes)) return false;
    if (maxBytes !== undefined && (b === undefined || b > maxBytes)) return false;
    if (cache !== undefined && e.cache !== cache) return false;
    if (comm !== undefined && e.comm !== comm) return false;
    if (pid !== undefined && e.pid !== pid) return false;
    if (under !== undefined && e.cgroup !== cgroup && !e.cgroup?.startsWith(under)) return false;
    return true;
  };
}

export function describeFilter(f: EventFilter): string {
  const parts: string[] = [];
  if (f.bytes !== undefined) parts.push(`bytes_alloc==${f.bytes}`);
  if (f.minBytes !== undefined) parts.push(`bytes_alloc>=${f.minBytes}`);
  if (f.maxBytes !== undefined) parts.push(`bytes_alloc<=${f.maxBytes}`);
  if (f.cache !== undefined) parts.push(`cache=${f.cache}`);
  if (f.comm !== undefined) parts.push(`comm=${f.comm}`);
  if (f.pid !== undefined) parts.push(`pid=${f.pid}`);
  if (f.cgroup !== undefined) parts.push(`cgroup=${f.cgroup}`);
  return parts.length ? parts.join(' ') : 'none';
}

/**
 * The object size of a kmalloc cache name as /proc/slabinfo or kleak spell it ("kmalloc-4096", "kmalloc-4k",
 * "kmalloc-cg-128", "kmalloc-rcl-1k", old "size-4096"), or undefined for a named kmem_cache.
 */
export function kmallocCacheSize(name: string): number | undefined {
  const m = /^(?:kmalloc(?:-cg|-rcl|-rnd-\d+)?|size)-(\d+)(k?)$/.exec(name);
  if (!m) return undefined;
  return Number(m[1]) * (m[2] ? 1024 : 1);
}

/**
 * The size of a kmem_buckets cache (6.11+: msg_msg-1k, memdup_user-4k), whose objects come through kmalloc: no
 * kmem_cache event names them, so `--bytes N` is what finds them. Undefined for any other name.
 */
export function kmemBucketSize(name: string): number | undefined {
  const m = /^(?:msg_msg|memdup_user)-(\d+)(k?)$/.exec(name);
  if (!m) return undefined;
  return Number(m[1]) * (m[2] ? 1024 : 1);
}
