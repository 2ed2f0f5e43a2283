// The tracefs backend: no dependency but the kernel. kmalloc (filtered in the kernel) and kfree (every one: the
// event has no size to filter on) in a private instance, read from its trace_pipe, parsed as trace_pipe text.

import { createReadStream, openSync } from 'node:fs';
import type { EventFilter } from '../engine/filter.js';
import { kmallocCacheSize } from '../engine/filter.js';
import type { ParseSink } from '../event.js';
import { EnvironmentError, InputError } from '../errors.js';
import { TracefsInstance } from '../kernel/instance.js';
import { ensureTracefs, kmemTracepoints, probesFor } from '../kernel/tracefs.js';
import { FtraceTextParser } from '../parse/ftrace-text.js';
import { forEachLineSplit2 } from './lines.js';
import type { LiveEnd, LiveSource } from './live.js';

export interface TracefsOptions {
  filter: EventFilter;
  stacks: boolean;
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
export function allocFilter(f: EventFilter, namedCache: boolean, selfPid: number): string {
  const parts: string[] = [];
  const size = f.cache !== undefined ? kmallocCacheSize(f.cache) : undefined;
  const bytes = f.bytes ?? size;
  if (bytes !== undefined) parts.push(`bytes_alloc == ${bytes}`);
  if (f.minBytes !== undefined) parts.push(`bytes_alloc >= ${f.minBytes}`);
  if (f.maxBytes !== undefined) parts.push(`bytes_alloc <= ${f.maxBytes}`);
  if (namedCache) parts.push(`name == ${filterString('--cache', f.cache!)}`);
  if (f.pid !== undefined) parts.push(`common_pid == ${f.pid}`);
  if (f.comm !== undefined) parts.push(`comm == ${filterString('--comm', f.comm)}`);
  parts.push(`common_pid != ${selfPid}`);
  return parts.join(' && ');
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

/** What startTracefs would write, as shell commands (--dry-run). */
export async function tracefsPlan(o: TracefsOptions): Promise<string> {
  const tracefs = await ensureTracefs();
  const namedCache = o.filter.cache !== undefined && kmallocCacheSize(o.filter.cache) === undefined;
  const probes = probesFor(kmemTracepoints(tracefs.root), namedCache);
  const I = `${tracefs.root}/instances/kleak-${process.pid}`;
  const filter = allocFilter(o.filter, namedCache, process.pid);
  return [
    `mkdir ${I}`,
    `echo ${o.bufferKb} > ${I}/buffer_size_kb`,
    `echo 0 > ${I}/options/hash-ptr`,
    ...probes.allocs.flatMap((t) => [`echo '${filter}' > ${I}/events/kmem/${t}/filter`, ...(o.stacks ? [`echo 'stacktrace if ${filter}' > ${I}/events/kmem/${t}/trigger`] : []), `echo 1 > ${I}/events/kmem/${t}/enable`]),
    ...probes.frees.flatMap((t) => [...(namedCache && t === 'kmem_cache_free' ? [`echo 'name == "${o.filter.cache}"' > ${I}/events/kmem/${t}/filter`] : []), `echo 1 > ${I}/events/kmem/${t}/enable`]),
    `cat ${I}/trace_pipe        # until stopped; then the events are switched off and: rmdir ${I}`,
  ].join('\n');
}

export async function startTracefs(o: TracefsOptions, sink: ParseSink): Promise<LiveSource> {
  if (process.getuid?.() !== 0) throw new EnvironmentError('kleak live needs root: tracefs is readable and writable by root only.', 'Run it with sudo.');
  const tracefs = await ensureTracefs();
  const namedCache = o.filter.cache !== undefined && kmallocCacheSize(o.filter.cache) === undefined;
  const probes = probesFor(kmemTracepoints(tracefs.root), namedCache);
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
    const filter = allocFilter(o.filter, namedCache, process.pid);
    for (const t of probes.allocs) {
      inst.write(`events/kmem/${t}/filter`, filter);
      if (o.stacks) inst.write(`events/kmem/${t}/trigger`, `stacktrace if ${filter}`);
      inst.write(`events/kmem/${t}/enable`, '1');
    }
    for (const t of probes.frees) {
      // Frees of a named cache can be filtered by name (5.12+); kfree has nothing to filter on.
      if (namedCache && t === 'kmem_cache_free') inst.write(`events/kmem/${t}/filter`, `name == ${filterString('--cache', o.filter.cache!)}`);
      inst.write(`events/kmem/${t}/enable`, '1');
    }
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
  const parser = new FtraceTextParser(counting);
  inst.pipeFd = openSync(`${inst.path}/trace_pipe`, 'r');
  const pipe = createReadStream('', { fd: inst.pipeFd, highWaterMark: 1 << 20 });
  let lines = 0;
  let sawEnd: () => void = () => {};
  const endSeen = new Promise<void>((r) => (sawEnd = r));
  const reading = forEachLineSplit2(pipe, (line, n) => {
    lines = n;
    if (line.endsWith(END_MARK)) return sawEnd();
    o.rawLine?.(line);
    parser.line(line, n);
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
        for (const t of [...probes.allocs, ...probes.frees]) inst.write(`events/kmem/${t}/enable`, '0');
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
