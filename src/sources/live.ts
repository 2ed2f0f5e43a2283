// What every live backend hands the live command: a running tracer feeding a ParseSink, and a clean stop.

import type { SourceInfo } from '../report/model.js';

export interface LiveEnd {
  /** 'stopped': kleak asked (Ctrl-C, --duration); 'died': the tracer ended by itself. */
  how: 'stopped' | 'died';
  /** For 'died': what the tracer said, in one sentence. */
  why?: string;
}

export interface LiveSource {
  info: SourceInfo;
  /** Sentences worth showing once (tracefs mounted, hashed pointers, ...). */
  notes: string[];
  /** What this backend's figures cannot be trusted for: said at the start and carried in every report. */
  caveats?: string[];
  /** Ends tracing; resolves when the last data has reached the sink and everything is cleaned up. */
  stop(): Promise<void>;
  /** Resolves when the source has ended, by stop() or by itself; all data has reached the sink. */
  ended: Promise<LiveEnd>;
  /** Pids of the tracer's own processes (their allocations are excluded). */
  pids: number[];
  /** Lines of tracer output read so far. */
  lines(): number;
}

/**
 * The percpu tracepoint's bytes_alloc is the size times the chunk's per-CPU units, possible CPUs or not (4 on a
 * 2-CPU VM): bpftrace and tracefs report it as the tracepoint gives it; the kernel backend counts size × possible
 * CPUs, the memory taken (docs/allocators.md).
 */
export const PERCPU_BYTES_CAVEAT = (backend: string) =>
  `percpu bytes are the tracepoint's bytes_alloc (size × the chunk's per-CPU units, possible CPUs or not), which can be a multiple of the memory taken; counts are exact; --backend kernel reports size × possible CPUs (${backend} cannot here).`;

/**
 * bpftrace and tracefs trace kmalloc's caches without --cache NAME: an object of a named kmem_cache (epoll watches,
 * POSIX timers, file locks, dentries...) is not seen, and a run that found none says nothing of them. Said at the
 * start and in every report; the kernel backend traces every cache.
 */
export const NAMED_CACHES_CAVEAT = (backend: string) =>
  `${backend} traces the kmalloc caches only: objects of named kmem_caches (epoll watches, POSIX timers, file locks, dentries...) are not traced; --cache NAME traces one such cache, --backend kernel traces them all.`;

/** Stops a tracer process: SIGINT (it finishes and cleans up after itself), SIGKILL if it has not ended in time. */
export async function interrupt(child: { kill(signal: NodeJS.Signals): boolean }, ended: Promise<unknown>, graceMs = 15_000): Promise<void> {
  child.kill('SIGINT');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await ended;
  clearTimeout(timer);
}

/** A word as a POSIX shell reads it back (for --dry-run command lines). */
export const shellQuote = (s: string): string => (/^[\w.,:=@%+/-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);
