// The tracefs backend: no dependency but the kernel. kmalloc (filtered in the kernel) and kfree (every one: the
// event has no size to filter on) in a private instance; the vmalloc, page and percpu tracepoints the same way, with
// a stack for the first two (it names their caller). kleak reads the per-CPU ring buffers in binary
// (sources/tracefs-raw.ts), which costs the kernel a fraction of formatting trace_pipe's text; `kleak record`, which
// keeps the text, and a kernel whose formats kleak cannot decode read trace_pipe.

import { constants, createReadStream, openSync, readFileSync, readSync, readdirSync } from 'node:fs';
import type { EventFilter } from '../engine/filter.js';
import { kmallocCacheSize } from '../engine/filter.js';
import { ALLOCATOR_TRACEPOINTS, TRACEPOINTS, type AllocatorName, type KmemEvent, type ParseSink } from '../event.js';
import { EnvironmentError, InputError } from '../errors.js';
import { TracefsInstance } from '../kernel/instance.js';
import { Kallsyms } from '../kernel/kallsyms.js';
import { gfpAccount } from '../kernel/btf.js';
import { pageSize } from '../kernel/page-size.js';
import { hostSlabAllocator } from '../kernel/slabinfo.js';
import { ensureTracefs, kmemTracepoints, missingAllocatorTracepoints, probesFor } from '../kernel/tracefs.js';
import { FtraceTextParser } from '../parse/ftrace-text.js';
import { forEachLine } from './lines.js';
import { NAMED_CACHES_CAVEAT, PERCPU_BYTES_CAVEAT, type LiveEnd, type LiveSource } from './live.js';
import { CommLookup, instanceCpus, parseEventFormat, RawMerger, RawRingDecoder, type EventFormat } from './tracefs-raw.js';

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

/** What startTracefs would write, as shell commands (--dry-run), and how it would read the events. */
export async function tracefsPlan(o: TracefsOptions): Promise<string> {
  const tracefs = await ensureTracefs();
  const I = `${tracefs.root}/instances/kleak-${process.pid}`;
  const { writes, events } = instanceSetup(tracefs.root, o, ownThreads());
  const raw = readerPlan(tracefs.root, events, o);
  const binary = typeof raw !== 'string';
  return [
    `mkdir ${I}`,
    `echo ${o.bufferKb} > ${I}/buffer_size_kb`,
    `echo 0 > ${I}/options/hash-ptr`,
    ...(binary ? [`echo mono > ${I}/trace_clock`] : []),
    ...writes.map((w) => `echo '${w.value}' > ${I}/${w.file}`),
    binary
      ? `# read ${I}/per_cpu/cpu*/trace_pipe_raw (binary sub-buffers, without blocking) until stopped; then the events are switched off, the buffers read dry, and: rmdir ${I}`
      : `cat ${I}/trace_pipe        # until stopped; then the events are switched off and: rmdir ${I}${raw !== '' ? `\n# ${raw}` : ''}`,
  ].join('\n');
}

export async function startTracefs(o: TracefsOptions, sink: ParseSink): Promise<LiveSource> {
  if (process.getuid?.() !== 0) throw new EnvironmentError('kleak live needs root: tracefs is readable and writable by root only.', 'Run it with sudo.');
  const tracefs = await ensureTracefs();
  const { writes, events } = instanceSetup(tracefs.root, o, ownThreads());
  const notes: string[] = tracefs.mounted ? [tracefs.mounted] : [];
  const raw = readerPlan(tracefs.root, events, o);
  if (raw !== '' && typeof raw === 'string') notes.push(raw);
  // The instance removes itself on process exit too: after an uncaught exception, a signal kleak caught, --duration.
  const inst = TracefsInstance.create(tracefs.root);
  try {
    inst.write('tracing_on', '0');
    inst.write('buffer_size_kb', String(o.bufferKb));
    if (inst.has('options/hash-ptr')) inst.write('options/hash-ptr', '0');
    else notes.push('this kernel prints hashed pointers in tracefs (no options/hash-ptr): pairing works, but addresses cannot be looked up.');
    // CLOCK_MONOTONIC, which kleak can read too: the raw reader merges the CPUs' buffers up to "now".
    if (typeof raw !== 'string') inst.write('trace_clock', 'mono');
    for (const w of writes) inst.write(w.file, w.value);
    inst.write('tracing_on', '1');
  } catch (err) {
    inst.remove();
    throw err;
  }
  const source = typeof raw !== 'string' ? rawSource(inst, raw, events, notes, sink) : textSource(inst, events, notes, sink, o);
  source.caveats = [
    ...(o.allocators.has('slab') && !(o.filter.cache !== undefined && kmallocCacheSize(o.filter.cache) === undefined) ? [NAMED_CACHES_CAVEAT('tracefs')] : []),
    ...(o.allocators.has('percpu') ? [PERCPU_BYTES_CAVEAT('tracefs')] : []),
  ];
  return source;
}

/** trace_pipe, read as text (kleak record keeps these lines; the fallback where the raw buffers cannot be read). */
function textSource(inst: TracefsInstance, events: readonly string[], notes: string[], sink: ParseSink, o: TracefsOptions): LiveSource {
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

/**
 * How the events are read: the raw per-CPU buffers, with a decoder made from the format files of the events kleak
 * enables (and of the stack record); or trace_pipe's text, and why ('' when kleak record keeps the text itself, or
 * KLEAK_TRACEFS_TEXT=1 asks for it: nothing to say).
 */
function readerPlan(root: string, events: readonly string[], o: TracefsOptions): RawPlan | string {
  if (o.rawLine !== undefined || process.env.KLEAK_TRACEFS_TEXT === '1') return '';
  const formats: EventFormat[] = [];
  for (const e of [...events, 'ftrace/kernel_stack']) {
    let text: string;
    try {
      text = readFileSync(`${root}/events/${e}/format`, 'utf8');
    } catch {
      return `reading trace_pipe's text: ${e}'s format file cannot be read.`;
    }
    const f = parseEventFormat(text);
    if (f === undefined) return `reading trace_pipe's text: ${e}'s format file is not in a layout kleak knows.`;
    formats.push(f);
  }
  const unreadable = RawRingDecoder.unreadable(formats);
  if (unreadable.length > 0) return `reading trace_pipe's text: kleak cannot decode ${unreadable.join(', ')} in binary on this kernel.`;
  let syms: Kallsyms;
  try {
    syms = Kallsyms.load();
  } catch {
    return "reading trace_pipe's text: /proc/kallsyms cannot be read to name call sites.";
  }
  if (syms.size === 0) return "reading trace_pipe's text: /proc/kallsyms shows no addresses (kptr_restrict) to name call sites.";
  const comms = new CommLookup(`${root}/saved_cmdlines`);
  return { decoder: new RawRingDecoder(formats, { syms, pageSize: o.pageSize ?? pageSize(), slab: hostSlabAllocator(), gfpAccount: gfpAccount(), comm: comms.comm }), comms };
}

interface RawPlan {
  decoder: RawRingDecoder;
  comms: CommLookup;
}

/** How long a round waits when it read nothing, ms. */
const IDLE_WAIT_MS = 10;
/** Pages one round reads from one CPU before going on to the next (a busy CPU must not starve the others). */
const PAGES_PER_ROUND = 512;
/** An event stamped this long before a round began has been committed by then (writers do not sleep mid-event). */
const COMMIT_SLACK_SEC = 0.002;

/** The CPUs' trace_pipe_raw files, read without blocking in rounds; events are merged into time order. */
function rawSource(inst: TracefsInstance, { decoder, comms }: RawPlan, events: readonly string[], notes: string[], sink: ParseSink): LiveSource {
  const cpus = instanceCpus(inst.path);
  for (const c of cpus) inst.rawFds.push(openSync(`${inst.path}/per_cpu/cpu${c}/trace_pipe_raw`, constants.O_RDONLY | constants.O_NONBLOCK));
  const fds = [...inst.rawFds];
  const subKb = inst.has('buffer_subbuf_size_kb') ? Number(inst.read('buffer_subbuf_size_kb').trim()) : NaN;
  const page = Buffer.alloc(Number.isInteger(subKb) && subKb > 0 ? subKb * 1024 : pageSize());
  const merger = new RawMerger();
  let lostSeen = 0;
  let stopping = false;
  let dead: string | undefined;
  let finish: (e: LiveEnd) => void = () => {};
  const ended = new Promise<LiveEnd>((r) => (finish = r));
  let lastLostCheck = 0;

  /** Reads every CPU (each up to `cap` pages); returns pages read and the time up to which all CPUs were read. */
  const round = (cap: number): { pages: number; horizon: number } => {
    const began = Number(process.hrtime.bigint()) / 1e9;
    let horizon = began - COMMIT_SLACK_SEC;
    let pages = 0;
    for (let i = 0; i < fds.length; i++) {
      const queue = merger.queue(i);
      let n = 0;
      let dry = false;
      let lastTs = -Infinity;
      for (; n < cap; n++) {
        let len: number;
        try {
          len = readSync(fds[i]!, page, 0, page.length, null);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'EAGAIN') {
            dry = true;
            break;
          }
          throw err;
        }
        if (len <= 0) {
          dry = true;
          break;
        }
        lastTs = decoder.page(page, len, cpus[i]!, queue);
      }
      pages += n;
      // A CPU left with pages unread has been read up to its last event only.
      if (!dry) horizon = Math.min(horizon, lastTs / 1e9);
    }
    return { pages, horizon };
  };

  const toSink = (e: KmemEvent) => sink.event(e);
  const emit = (horizon: number) => merger.take(horizon, toSink);
  const countLost = () => {
    const overruns = inst.overruns();
    if (overruns > lostSeen) {
      sink.lost(overruns - lostSeen);
      lostSeen = overruns;
    }
  };

  const loop = async () => {
    while (!stopping) {
      let r: { pages: number; horizon: number };
      try {
        r = round(PAGES_PER_ROUND);
      } catch (err) {
        dead = `reading ${inst.path}'s ring buffers failed: ${(err as Error).message}`;
        break;
      }
      emit(r.horizon);
      const now = Date.now();
      if (now - lastLostCheck >= 1000) {
        lastLostCheck = now;
        countLost();
        comms.forget();
      }
      await new Promise((res) => (r.pages > 0 ? setImmediate(res) : setTimeout(res, IDLE_WAIT_MS)));
    }
  };
  const reading = loop();
  void reading.then(() => {
    if (!stopping) {
      inst.remove();
      finish({ how: 'died', why: dead ?? `the ring buffers of ${inst.path} could not be read` });
    }
  });

  return {
    info: { kind: 'live', backend: 'tracefs', mode: 'events' },
    notes,
    pids: [],
    lines: () => decoder.records,
    ended,
    async stop() {
      if (stopping) return void (await ended);
      stopping = true;
      try {
        await reading;
        // Stop the events, let writers in flight commit, then read every CPU dry and hand on everything.
        for (const e of events) inst.write(`events/${e}/enable`, '0');
        await new Promise((res) => setTimeout(res, 20));
        while (round(Number.POSITIVE_INFINITY).pages > 0) {
          // until every CPU is dry
        }
        emit(Number.POSITIVE_INFINITY);
        decoder.flushNotices(sink);
        countLost();
      } finally {
        inst.remove();
        finish({ how: 'stopped' });
      }
    },
  };
}
