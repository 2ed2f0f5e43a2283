// The tracefs backend: no dependency but the kernel. kmalloc (filtered in the kernel) and kfree (every one: the
// event has no size to filter on) in a private instance, read from its trace_pipe, parsed as trace_pipe text; the
// vmalloc, page and percpu tracepoints the same way, with a stack for the first two (it names their caller).

import { createReadStream, openSync, readdirSync } from 'node:fs';
import type { EventFilter } from '../engine/filter.js';
import { kmallocCacheSize } from '../engine/filter.js';
import { ALLOCATOR_TRACEPOINTS, TRACEPOINTS, type AllocatorName, type ParseSink } from '../event.js';
import { EnvironmentError, InputError } from '../errors.js';
import { TracefsInstance } from '../kernel/instance.js';
import { pageSize } from '../kernel/page-size.js';
import { hostSlabAllocator } from '../kernel/slabinfo.js';
import { ensureTracefs, kmemTracepoints, missingAllocatorTracepoints, probesFor } from '../kernel/tracefs.js';
import { FtraceTextParser } from '../parse/ftrace-text.js';
import { forEachLine } from './lines.js';
import type { LiveEnd, LiveSource } from './live.js';

export interface TracefsOptions {
  filter: EventFilter;
  /** Which allocators to pair (slab when absent). */
  allocators: ReadonlySet<AllocatorName>;
  stacks: boolean;
  /** Bytes per page (the system's when absent). */
  pageSize?: number;
  /** Ring buffer per CPU, KiB. */
  bufferKb: number;
  /** Every line of trace_pipe as read (kleak record keeps them as the file a kernel person can open). */
  rawLine?: (line: string) => void;
}

const END_MARK = 'kleak-end-of-trace';

/** Names the kernel filter grammar can hold without quoting trouble. */
function filterString(what: string, v: string): string {
  if (!/^[\w.:/+ -]{1,64}$/.test(v)) throw new InputError(`${what} "${v}" has characters a kernel event filter cannot hold.`);
  return `"${v}"`;
}

/** The kernel event filter for the allocation tracepoints (ftrace filter syntax). */
export function allocFilter(f: EventFilter, namedCache: boolean, selfPids: readonly number[]): string {
  const parts: string[] = [];
  const size = f.cache !== undefined ? kmallocCacheSize(f.cache) : undefined;
  const bytes = f.bytes ?? size;
  if (bytes !== undefined) parts.push(`bytes_alloc == ${bytes}`);
  if (f.minBytes !== undefined) parts.push(`bytes_alloc >= ${f.minBytes}`);
  if (f.maxBytes !== undefined) parts.push(`bytes_alloc <= ${f.maxBytes}`);
  if (namedCache) parts.push(`name == ${filterString('--cache', f.cache!)}`);
  if (f.pid !== undefined) parts.push(`common_pid == ${f.pid}`);
  if (f.comm !== undefined) parts.push(`comm == ${filterString('--comm', f.comm)}`);
  for (const p of selfPids) parts.push(`common_pid != ${p}`);
  return parts.join(' && ');
}

/** kleak's own threads (Node's workers allocate too, and reading trace_pipe faults pages in): not traced. */
function ownThreads(): number[] {
  try {
    return readdirSync('/proc/self/task').map(Number).filter((t) => Number.isInteger(t) && t > 0).slice(0, 32);
  } catch {
    return [process.pid];
  }
}

/**
 * Closes trace_pipe. A read of an empty trace_pipe blocks in the kernel, and the file cannot be closed (nor the
 * instance removed: EBUSY) until it returns; markers written to the instance wake it.
 */
async function closePipe(pipe: ReturnType<typeof createReadStream>, inst: TracefsInstance): Promise<void> {
  const closed = new Promise<void>((r) => pipe.once('close', () => r()));
  pipe.destroy();
  const wake = setInterval(() => {
    try {
      inst.write('trace_marker', 'kleak-wake');
    } catch {
      // the instance is going; nothing to wake
    }
  }, 20);
  await Promise.race([closed, new Promise((r) => setTimeout(r, 3000))]);
  clearInterval(wake);
  inst.pipeFd = undefined;
}

/** One write into the instance: `file` under it gets `value`. */
export interface InstanceWrite {
  file: string;
  value: string;
}

/** The kernel filter of an allocator's allocation event: sizes in its own field, then who allocates. */
function allocatorFilter(allocator: Exclude<AllocatorName, 'slab'>, f: EventFilter, selfPids: readonly number[], page: number): string {
  const parts: string[] = [];
  const min = f.bytes ?? f.minBytes;
  const max = f.bytes ?? f.maxBytes;
  if (allocator === 'page') {
    // A page allocation of order N is page << N bytes: the orders whose size is in [min, max].
    if (min !== undefined) parts.push(`order >= ${Math.max(0, Math.ceil(Math.log2(min / page)))}`);
    if (max !== undefined) parts.push(max < page ? 'order < 0' : `order <= ${Math.floor(Math.log2(max / page))}`);
  } else {
    const field = allocator === 'vmalloc' ? 'size' : 'bytes_alloc';
    if (min !== undefined) parts.push(`${field} >= ${min}`);
    if (max !== undefined) parts.push(`${field} <= ${max}`);
  }
  if (f.pid !== undefined) parts.push(`common_pid == ${f.pid}`);
  if (f.comm !== undefined) parts.push(`comm == ${filterString('--comm', f.comm)}`);
  for (const p of selfPids) parts.push(`common_pid != ${p}`);
  return parts.join(' && ');
}

/**
 * What the instance needs, in order: every write, and the events enabled (group/name) to switch off at the end.
 * `root` is the local tracefs, or undefined for a remote host's (--ssh), whose script skips the events its kernel lacks.
 */
export function instanceSetup(root: string | undefined, o: TracefsOptions, selfPids: readonly number[]): { writes: InstanceWrite[]; events: string[] } {
  const writes: InstanceWrite[] = [];
  const events: string[] = [];
  const enable = (event: string, filter?: string, stacks?: boolean) => {
    if (filter !== undefined) writes.push({ file: `events/${event}/filter`, value: filter });
    if (stacks) writes.push({ file: `events/${event}/trigger`, value: filter === undefined ? 'stacktrace' : `stacktrace if ${filter}` });
    writes.push({ file: `events/${event}/enable`, value: '1' });
    events.push(event);
  };
  if (o.allocators.has('slab')) {
    const namedCache = o.filter.cache !== undefined && kmallocCacheSize(o.filter.cache) === undefined;
    const probes = probesFor(root === undefined ? new Set(TRACEPOINTS) : kmemTracepoints(root), namedCache);
    const filter = allocFilter(o.filter, namedCache, selfPids);
    for (const t of probes.allocs) enable(`kmem/${t}`, filter, o.stacks);
    // Frees of a named cache can be filtered by name (5.12+); kfree has nothing to filter on.
    for (const t of probes.frees) enable(`kmem/${t}`, namedCache && t === 'kmem_cache_free' ? `name == ${filterString('--cache', o.filter.cache!)}` : undefined);
  }
  // A remote host's script skips the events its kernel lacks; here they are known before anything is written.
  const absent = root === undefined ? [] : missingAllocatorTracepoints(root, o.allocators, true);
  for (const [allocator, tp] of Object.entries(ALLOCATOR_TRACEPOINTS) as [Exclude<AllocatorName, 'slab'>, (typeof ALLOCATOR_TRACEPOINTS)[Exclude<AllocatorName, 'slab'>]][]) {
    if (!o.allocators.has(allocator)) continue;
    // vmalloc areas and pages have no call site: their stack names the caller, so they always take one.
    enable(`${tp.group}/${tp.alloc}`, allocatorFilter(allocator, o.filter, selfPids, o.pageSize ?? pageSize()), o.stacks || allocator !== 'percpu');
    for (const e of tp.frees) if (!absent.includes(`${tp.group}/${e}`)) enable(`${tp.group}/${e}`);
  }
  return { writes, events };
}

/** What startTracefs would write, as shell commands (--dry-run). */
export async function tracefsPlan(o: TracefsOptions): Promise<string> {
  const tracefs = await ensureTracefs();
  const I = `${tracefs.root}/instances/kleak-${process.pid}`;
  const { writes } = instanceSetup(tracefs.root, o, ownThreads());
  return [
    `mkdir ${I}`,
    `echo ${o.bufferKb} > ${I}/buffer_size_kb`,
    `echo 0 > ${I}/options/hash-ptr`,
    ...writes.map((w) => `echo '${w.value}' > ${I}/${w.file}`),
    `cat ${I}/trace_pipe        # until stopped; then the events are switched off and: rmdir ${I}`,
  ].join('\n');
}

export async function startTracefs(o: TracefsOptions, sink: ParseSink): Promise<LiveSource> {
  if (process.getuid?.() !== 0) throw new EnvironmentError('kleak live needs root: tracefs is readable and writable by root only.', 'Run it with sudo.');
  const tracefs = await ensureTracefs();
  const { writes, events } = instanceSetup(tracefs.root, o, ownThreads());
  const notes: string[] = tracefs.mounted ? [tracefs.mounted] : [];
  const stale = TracefsInstance.removeStale(tracefs.root);
  if (stale.length > 0) notes.push(`removed ${stale.join(', ')}: tracefs instance${stale.length > 1 ? 's' : ''} a killed kleak left tracing.`);
  // The instance removes itself on process exit too: after an uncaught exception, a signal kleak caught, --duration.
  const inst = TracefsInstance.create(tracefs.root);
  try {
    inst.write('tracing_on', '0');
    inst.write('buffer_size_kb', String(o.bufferKb));
    if (inst.has('options/hash-ptr')) inst.write('options/hash-ptr', '0');
    else notes.push('this kernel prints hashed pointers in tracefs (no options/hash-ptr): pairing works, but addresses cannot be looked up.');
    for (const w of writes) inst.write(w.file, w.value);
    inst.write('tracing_on', '1');
  } catch (err) {
    inst.remove();
    throw err;
  }

  let lostSeen = 0;
  const counting: ParseSink = {
    event: (e) => sink.event(e),
    stack: (c, f) => sink.stack(c, f),
    lost: (n, cpu) => {
      lostSeen += n;
      sink.lost(n, cpu);
    },
    bad: (l, r) => sink.bad(l, r),
  };
  const parser = new FtraceTextParser(counting, { pageSize: o.pageSize ?? pageSize(), slab: hostSlabAllocator() });
  inst.pipeFd = openSync(`${inst.path}/trace_pipe`, 'r');
  const pipe = createReadStream('', { fd: inst.pipeFd, highWaterMark: 1 << 20 });
  let lines = 0;
  let sawEnd: () => void = () => {};
  const endSeen = new Promise<void>((r) => (sawEnd = r));
  // Lines as byte ranges of the chunks read, parsed from the bytes (as replay does): no string per line, so the
  // reader keeps up with a busier kernel before its ring buffer overruns.
  const endMark = Buffer.from(END_MARK, 'latin1');
  const reading = forEachLine(pipe, (buf, start, end, n) => {
    lines = n;
    if (end - start >= endMark.length && buf.compare(endMark, 0, endMark.length, end - endMark.length, end) === 0) return sawEnd();
    if (o.rawLine) o.rawLine(buf.toString('utf8', start, end));
    parser.bytes(buf, start, end, n);
  }).catch(() => 0);

  let stopping = false;
  let finish: (e: LiveEnd) => void = () => {};
  const ended = new Promise<LiveEnd>((r) => (finish = r));
  void reading.then(() => {
    if (!stopping) {
      inst.remove();
      finish({ how: 'died', why: `the trace_pipe of ${inst.path} ended unexpectedly` });
    }
  });

  return {
    info: { kind: 'live', backend: 'tracefs', mode: 'events' },
    notes,
    pids: [],
    lines: () => lines,
    ended,
    async stop() {
      if (stopping) return void (await ended);
      stopping = true;
      try {
        // Stop the kmem events, then mark the end: once the marker comes out of trace_pipe, every event before
        // it has been read.
        for (const e of events) inst.write(`events/${e}/enable`, '0');
        inst.write('trace_marker', END_MARK);
        await Promise.race([endSeen, new Promise((r) => setTimeout(r, 5000))]);
        parser.end();
        const overruns = inst.overruns();
        if (overruns > lostSeen) sink.lost(overruns - lostSeen);
      } finally {
        await closePipe(pipe, inst);
        inst.remove();
        finish({ how: 'stopped' });
      }
    },
  };
}
