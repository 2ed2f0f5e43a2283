// kleak live: a tracer on the running kernel → parser → engine → report (periodic text, final text/JSON) and an
// optional NDJSON recording. Ctrl-C, SIGTERM, SIGHUP and --duration stop it cleanly; so does the tracer dying.

import { Engine, type ReportOptions } from '../engine/engine.js';
import type { VerdictThresholds } from '../engine/verdict.js';
import type { EventFilter } from '../engine/filter.js';
import { EnvironmentError, InputError } from '../errors.js';
import { takeEarlySignal } from '../early-signals.js';
import { TracefsInstance } from '../kernel/instance.js';
import { stopWithParent } from '../kernel/parent-death.js';
import { mountedTracefsRoot } from '../kernel/tracefs.js';
import { renderJson } from '../report/json.js';
import type { Report } from '../report/model.js';
import { NdjsonRecorder, teeSink } from '../report/ndjson-writer.js';
import { renderText } from '../report/text.js';
import { bpftraceCommandLine, preflightBpftrace, startBpftrace } from '../sources/bpftrace.js';
import { kernelBpfDescription, startKernelBpf } from '../sources/kernel-bpf.js';
import { startTracefs, tracefsPlan } from '../sources/tracefs.js';
import { sshTracefsPlan, startSshTracefs, type SshTarget } from '../sources/ssh.js';
import { startTraceCmd, traceCmdCommandLine } from '../sources/trace-cmd.js';
import type { LiveEnd, LiveSource } from '../sources/live.js';
import type { AllocatorName, ParseSink } from '../event.js';
import { exitWhenWritten, say, writeData, writeText } from '../output.js';
import { checkNewFile } from '../report/private-file.js';

export type Backend = 'kernel' | 'bpftrace' | 'tracefs' | 'trace-cmd';
/** What users may ask for; `auto` (the default) is kernel, else bpftrace, else tracefs. --events works on all. */
export type BackendChoice = Backend | 'auto';

export interface LiveOptions {
  backend: BackendChoice;
  /** Allocators to pair; anything but slab needs the kernel backend. */
  allocators: ReadonlySet<AllocatorName>;
  filter: EventFilter;
  stacks: boolean;
  /** --stack-every N (kernel backend): 1 captures every allocation's stack; the default samples (DEFAULT_STACK_EVERY). */
  stackEvery?: number;
  events: boolean;
  durationSec: number | undefined;
  intervalSec: number;
  report: ReportOptions;
  record: string | undefined;
  /** Serve /metrics here (--prometheus). */
  prometheus?: { host: string | undefined; port: number };
  /** Write kleak.prom into this directory every interval (--textfile). */
  textfile?: string;
  /** Replace an existing --record file. */
  force?: boolean;
  /** Outstanding bytes by stack at the end: folded stacks, pprof. */
  folded?: string;
  pprof?: string;
  flamegraph?: string;
  maxPointers: number;
  thresholds?: VerdictThresholds;
  /** Trace this host over ssh (tracefs through a shell there). */
  ssh?: SshTarget;
}

export interface LiveRun {
  engine: Engine;
  source: LiveSource;
  recorder: NdjsonRecorder | undefined;
  report(): Report;
  /** Stops tracing (idempotent); `ended` then resolves. */
  stop(): Promise<void>;
  ended: Promise<LiveEnd>;
}

/** The stack files a run writes at its end. */
function stackExports(o: LiveOptions) {
  return { ...(o.folded ? { folded: o.folded } : {}), ...(o.pprof ? { pprof: o.pprof } : {}), ...(o.flamegraph ? { flamegraph: o.flamegraph } : {}), ...(o.force ? { force: true } : {}) };
}

export async function startLive(o: LiveOptions): Promise<LiveRun> {
  // An output that would be refused at the end is refused now, before a whole run is traced for nothing.
  for (const path of [o.folded, o.pprof, o.flamegraph]) if (path) checkNewFile(path, o.force === true);
  const exclude = new Set<number>([process.pid]);
  const engine = new Engine({
    // Per-CPU buffers (bpftrace's, and the BPF ring's records from several CPUs) can deliver a free before its
    // allocation: a short reorder window pairs them.
    filter: o.filter, filteredAtSource: true, freesTraced: true, excludePids: exclude, reorderWindowSec: o.events ? 1 : 0,
    ...(o.thresholds ? { thresholds: o.thresholds } : {}),
  });
  const recorder = o.record
    ? new NdjsonRecorder(o.record, { source: { kind: 'live', backend: o.ssh ? 'tracefs' : o.backend, ...(o.ssh ? { host: o.ssh.destination } : {}), mode: o.events || o.ssh || o.backend === 'tracefs' || o.backend === 'trace-cmd' ? 'events' : 'pairs' }, filter: o.filter, started: new Date().toISOString() }, o.force)
    : undefined;
  const sink = recorder ? teeSink(engine, recorder) : engine;
  let source: LiveSource;
  try {
    if (o.ssh) source = await startSshTracefs(tracefsOptions(o), o.ssh, sink);
    else switch (o.backend) {
      case 'auto':
        source = await startAuto(o, sink);
        break;
      case 'kernel':
        source = await startKernelBpf(kernelOptions(o), sink);
        break;
      case 'bpftrace':
        source = await startBpftrace(bpftraceOptions(o), sink);
        break;
      case 'tracefs':
        source = await startTracefs(tracefsOptions(o), sink);
        break;
      case 'trace-cmd':
        slabOnly(o, 'trace-cmd');
        noCgroup(o, 'trace-cmd');
        source = await startTraceCmd({ filter: o.filter, stacks: o.stacks }, sink);
        break;
    }
  } catch (err) {
    recorder?.close();
    throw err;
  }
  if (!o.ssh) {
    // Whatever the backend: an instance a killed kleak left tracing (its watchdog could not run) goes now.
    const root = mountedTracefsRoot();
    const stale = root && process.getuid?.() === 0 ? TracefsInstance.removeStale(root) : [];
    if (stale.length > 0) source.notes.push(`removed ${stale.join(', ')}: tracefs instance${stale.length > 1 ? 's' : ''} a killed kleak left tracing.`);
  }
  recorder?.source({ ...source.info });
  // Said at the start and in the periodic reports: those objects count until the slabs are read at the end (which
  // then replaces this with what it found).
  const backend = String(source.info.backend ?? 'this backend');
  const rcuCaveat =
    source.info.backend === 'kernel'
      ? undefined
      : o.ssh
        ? `${backend} cannot see frees made through kfree_rcu batches or bulk frees: such objects stay counted as outstanding (over --ssh their slabs cannot be read at the end); --backend kernel on the host sees them.`
        : `${backend} cannot see frees made through kfree_rcu batches or bulk frees: until the end of the run, when kleak reads the slabs, such objects count as outstanding; --backend kernel sees them as they happen.`;
  if (rcuCaveat) source.caveats = [...(source.caveats ?? []), rcuCaveat];
  engine.caveats.push(...(source.caveats ?? []));
  for (const p of source.pids) exclude.add(p);
  const ended = source.ended.then(async (end) => {
    recorder?.close({ how: end.how, ...(end.why ? { why: end.why } : {}) });
    if (!o.ssh && rcuCaveat) await checkSlabState(engine, backend, rcuCaveat);
    return end;
  });
  const report = () => {
    engine.totals.lines = source.lines();
    return engine.report(source.info, o.report);
  };
  return { engine, source, recorder, report, stop: () => source.stop(), ended };
}

function drop(list: string[], item: string): void {
  const i = list.indexOf(item);
  if (i >= 0) list.splice(i, 1);
}

/** Caches whose slabs are checked at the end at most: the ones holding the most outstanding objects. */
const SLAB_CHECK_CACHES = 8;

/**
 * bpftrace and tracefs cannot see frees made through kfree_rcu batches or bulk frees (no kmem tracepoint shows
 * them): the objects stay outstanding in the trace and their site looks like a leak (223 timerfds for 23 held). At
 * the end, the slabs of the caches holding the most outstanding objects are read (the census program, read-only):
 * an object its slab holds free now was freed unseen, and is dropped and marked at its site. Where the census cannot
 * run, that is said instead (docs/verdicts.md).
 */
async function checkSlabState(engine: Engine, backend: string, untilChecked: string): Promise<void> {
  const caches = engine.outstandingCaches(SLAB_CHECK_CACHES);
  if (caches.length === 0) return drop(engine.caveats, untilChecked); // no slab object is counted: nothing to say
  if (process.getuid?.() !== 0) return;
  try {
    const { CensusSession } = await import('../census/session.js');
    const session = new CensusSession();
    try {
      // A kmalloc-N label stands for every kmalloc cache of that object size (kmalloc-4k, kmalloc-cg-4k...): an
      // object counts as allocated if any of them holds it, so a label that missed accounting drops nothing.
      const members = new Map(caches.map((label) => {
        const n = /^kmalloc-(?:cg-|rcl-)?(\d+)$/.exec(label)?.[1];
        const names = n === undefined ? [label] : session.caches.filter((c) => /^(?:dma-)?kmalloc-/.test(c.name) && c.objectSize === Number(n)).map((c) => c.name);
        return [label, names] as const;
      }));
      const walked = session.allocatedKeys([...new Set([...members.values()].flat())]);
      const sets = new Map<string, Set<number>>();
      for (const [label, names] of members) {
        // Checked only when every cache of the label was walked whole.
        if (names.length === 0 || names.some((n) => !walked.has(n))) continue;
        sets.set(label, new Set(names.flatMap((n) => [...walked.get(n)!])));
      }
      const dropped = engine.reconcile((c) => sets.get(c));
      const checked = [...sets.keys()];
      // What the start said is now answered: by what was found, and by what could not be read (below).
      drop(engine.caveats, untilChecked);
      if (dropped > 0) {
        engine.notice(
          `${dropped.toLocaleString('en-US')} objects the trace still held were free in their slab at the end (kleak read the slabs of ${checked.join(', ')}): freed through kfree_rcu batches or bulk frees, which ${backend} cannot see; they are not counted, and their sites are marked "not seen freed".`,
        );
      }
      const unchecked = caches.filter((c) => !sets.has(c));
      if (unchecked.length > 0) engine.caveats.push(`the slabs of ${unchecked.join(', ')} could not be read whole at the end: objects there freed through kfree_rcu batches (which ${backend} cannot see) may be counted outstanding; --backend kernel sees those frees.`);
    } finally {
      session.close();
    }
  } catch (err) {
    engine.caveats.push(`kleak could not read the slabs at the end (${(err as Error).message.replace(/\.$/, '')}): objects freed through kfree_rcu batches, which ${backend} cannot see, may be counted outstanding; --backend kernel sees those frees.`);
  }
}

/**
 * The default: kleak's own BPF program where the kernel takes it (root, BTF, libbpf), else bpftrace, else tracefs;
 * each step down is said, with why. --events streams events, which only bpftrace and tracefs do.
 */
async function startAuto(o: LiveOptions, sink: ParseSink): Promise<LiveSource> {
  const why: string[] = [];
  try {
    return await startKernelBpf(kernelOptions(o), sink);
  } catch (err) {
    // --cgroup has nowhere else to go: the kernel backend's reason is the one to say.
    if (!(err instanceof EnvironmentError) || /needs root/.test(err.message) || o.filter.cgroup !== undefined) throw err;
    why.push(`kernel backend: ${err.message}`);
  }
  if ([...o.allocators].some((a) => a !== 'slab') && o.events) {
    why.push('bpftrace: pairs vmalloc, page and percpu allocations in the kernel only (not with --events)');
  } else {
    try {
      await preflightBpftrace();
      const s = await startBpftrace(bpftraceOptions(o), sink);
      s.notes.unshift(`using bpftrace${o.events ? ' (--events)' : ''}${why.length ? `; ${why.join('; ')}` : ''}`);
      return s;
    } catch (err) {
      if (!(err instanceof EnvironmentError) || /needs root/.test(err.message)) throw err;
      why.push(`bpftrace: ${err.message}`);
    }
  }
  const s = await startTracefs(tracefsOptions(o), sink);
  s.notes.unshift(`using tracefs; ${why.join('; ')}`);
  return s;
}

function kernelOptions(o: LiveOptions) {
  return { filter: o.filter, allocators: o.allocators, stacks: o.stacks, ...(o.stackEvery !== undefined ? { stackEvery: o.stackEvery } : {}), snapshotSec: 1, maxPointers: o.maxPointers, listMax: 10_000, events: o.events };
}

/** --cgroup needs the kernel backend: the others' events carry no cgroup (docs/cgroups.md). */
function noCgroup(o: LiveOptions, backend: string): void {
  if (o.filter.cgroup !== undefined) throw new InputError(`--cgroup needs the kernel backend (--backend kernel): ${backend}'s events carry no cgroup.`, 'Without --cgroup, --comm or --pid narrow a run to one workload on any backend.');
}

/** Only the kernel backend samples stacks: the others record every one, and --stack-every N > 1 is refused. */
function everyStack(o: LiveOptions, backend: string): void {
  if (o.stackEvery !== undefined && o.stackEvery > 1) throw new InputError(`--stack-every ${o.stackEvery} needs the kernel backend: ${backend} records the stack of every allocation.`, 'Leave it out (every stack), or use --backend kernel.');
}

function tracefsOptions(o: LiveOptions) {
  noCgroup(o, o.ssh ? 'tracefs over ssh' : 'tracefs');
  everyStack(o, o.ssh ? 'tracefs over ssh' : 'tracefs');
  return { filter: o.filter, allocators: o.allocators, stacks: o.stacks, bufferKb: 8192 };
}

/** trace-cmd reads the slab tracepoints only: say so before starting it. */
function slabOnly(o: LiveOptions, backend: string): void {
  const other = [...o.allocators].filter((a) => a !== 'slab');
  if (other.length > 0) throw new InputError(`--alloc ${other.join(',')} needs the kernel, bpftrace or tracefs backend; --backend ${backend} pairs slab allocations only.`, 'Drop --backend (or use --backend kernel, bpftrace or tracefs).');
}

/** The tracer command `o` would run, as a shell command line (--dry-run). */
export async function liveCommandLine(o: LiveOptions): Promise<string> {
  if (o.ssh) return sshTracefsPlan(tracefsOptions(o), o.ssh);
  switch (o.backend) {
    case 'auto':
      return o.events ? bpftraceCommandLine(bpftraceOptions(o)) : `${kernelBpfDescription(kernelOptions(o))}
(where the kernel backend cannot run, kleak falls back to bpftrace, then tracefs)`;
    case 'kernel':
      return kernelBpfDescription(kernelOptions(o));
    case 'bpftrace':
      return bpftraceCommandLine(bpftraceOptions(o));
    case 'trace-cmd':
      return traceCmdCommandLine({ filter: o.filter, stacks: o.stacks });
    case 'tracefs':
      return tracefsPlan(tracefsOptions(o));
  }
}

function bpftraceOptions(o: LiveOptions) {
  noCgroup(o, 'bpftrace');
  everyStack(o, 'bpftrace');
  return { filter: o.filter, allocators: o.allocators, stacks: o.stacks, events: o.events, snapshotSec: 1, maxPointers: o.maxPointers, listMax: 10_000 };
}

/** --prometheus and --textfile for a run: started once it traces; stop() writes the textfile a last time. */
async function exportMetrics(o: LiveOptions, run: LiveRun): Promise<{ stop(): Promise<void> }> {
  if (!o.prometheus && !o.textfile) return { stop: async () => undefined };
  const { liveMetrics, startMetricsExport } = await import('../report/prometheus.js');
  const exp = await startMetricsExport(liveMetrics(run.report, o.report.top ?? 20), o);
  const timer = o.textfile ? setInterval(exp.write, o.intervalSec * 1000) : undefined;
  return {
    async stop() {
      if (timer) clearInterval(timer);
      await exp.stop();
    },
  };
}

/** Live with the TUI on screen; q, Ctrl-C, SIGTERM or SIGHUP stop tracing; the final report goes on the normal screen. */
export async function runLiveTui(o: LiveOptions): Promise<number> {
  const { runTui } = await import('../tui/run.js');
  const stopper = catchStopSignals();
  const run = await startLive(o);
  let failedExports: string[] = [];
  stopper.attach(run);
  const metrics = await exportMetrics(o, run);
  let end: LiveEnd | undefined;
  const ended = run.ended.then((e) => (end = e));
  const duration = o.durationSec ? setTimeout(() => void run.stop(), o.durationSec * 1000) : undefined;
  try {
    await runTui(
      {
        report: run.report,
        progress: () => undefined,
        finished: () => end !== undefined,
        problem: () => (end?.how === 'died' ? `${end.why} — the tracer is gone; q to quit` : undefined),
        ...(run.recorder ? { recordingPath: run.recorder.path } : {}),
        inspect: async (site) => {
          const { describeObjects, siteTargets } = await import('./inspect.js');
          return describeObjects(siteTargets(site));
        },
      },
      () => void run.stop(),
      // A signal or --duration closes the screen; a tracer that died leaves it up, so the user can read why.
      ended.then((e) => (e.how === 'stopped' ? undefined : new Promise<never>(() => {}))),
    );
    if (!end) say(`kleak: stopping ${run.source.info.backend}…\n`);
    await run.stop();
    await ended;
    await metrics.stop();
    const { writeStackExports } = await import('./replay.js');
    failedExports = writeStackExports(run.engine, stackExports(o), o.report.minAgeSec);
  } finally {
    if (duration) clearTimeout(duration);
    stopper.release();
  }
  for (const n of [...run.source.notes, ...(run.source.caveats ?? [])]) say(`kleak: ${n}\n`);
  if (end?.how === 'died') say(`kleak: ${end.why}; the report so far follows${run.recorder ? ` and the recording ${run.recorder.path} is kept` : ''}.\n`);
  writeText(renderText(run.report()));
  return end?.how === 'died' || failedExports.length > 0 ? 2 : 0;
}

/** Runs to the end and prints reports (the non-TUI path): text every interval and at the end, or JSON at the end. */
export async function runLive(o: LiveOptions, json: boolean): Promise<number> {
  if (o.record && o.record === '-') throw new InputError('--record needs a file name.');
  // Signals are caught from the start: one that arrives while the tracer is being set up still ends in cleanup. A
  // second one exits at once, and the recording still gets its end record saying so.
  let forced: (() => void) | undefined;
  const stopper = catchStopSignals(() => forced?.());
  injectFault();
  const run = await startLive(o);
  let failedExports: string[] = [];
  forced = () => run.recorder?.close({ how: 'interrupted', why: 'a second signal stopped kleak before it finished' });
  stopper.attach(run);
  const metrics = await exportMetrics(o, run);
  const shown = run.source.notes.length;
  for (const n of [...run.source.notes, ...(run.source.caveats ?? [])]) say(`kleak: ${n}\n`);
  say(
    `kleak: tracing with ${run.source.info.backend} (${run.source.info.mode}); ${o.durationSec ? `for ${o.durationSec}s` : 'Ctrl-C to stop'}${run.recorder ? `; recording to ${run.recorder.path}` : ''}\n`,
  );
  const duration = o.durationSec ? setTimeout(() => void run.stop(), o.durationSec * 1000) : undefined;
  const periodic = json ? undefined : setInterval(() => writeText(renderText(run.report()) + '\n'), o.intervalSec * 1000);
  try {
    const end = await run.ended;
    await metrics.stop();
    const { writeStackExports } = await import('./replay.js');
    failedExports = writeStackExports(run.engine, stackExports(o), o.report.minAgeSec);
    for (const n of run.source.notes.slice(shown)) say(`kleak: ${n}\n`);
    if (end.how === 'died') say(`kleak: ${end.why}; the report so far follows${run.recorder ? ` and the recording ${run.recorder.path} is kept` : ''}.\n`);
    const report = run.report();
    if (json) writeData(renderJson(report));
    else writeText(renderText(report));
    return end.how === 'died' || failedExports.length > 0 ? 2 : 0;
  } finally {
    if (duration) clearTimeout(duration);
    if (periodic) clearInterval(periodic);
    stopper.release();
  }
}

/**
 * SIGINT, SIGTERM and SIGHUP stop the run cleanly; a second one, a second or more later, exits at once. Before the run exists, the first
 * signal is remembered and stops it as soon as it has started.
 */
/** How long after a stop signal the same signal again counts as the same stop (see catchStopSignals). */
const REPEAT_MS = 1000;

export function catchStopSignals(onForce?: () => void) {
  let run: { stop(): Promise<void> } | undefined;
  // A signal that came while kleak was loading counts as the first one.
  let pending = takeEarlySignal() !== undefined;
  let count = 0;
  let firstAt = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    // One stop often arrives twice: `timeout` signals its whole process group and npm passes the same signal on to
    // kleak a moment later. A repeat within a second is that same stop; only a later one is a person insisting.
    if (count > 0 && Date.now() - firstAt < REPEAT_MS) return;
    if (count === 0) firstAt = Date.now();
    count++;
    if (count > 1) {
      say(`kleak: ${sig} again: stopping now\n`);
      try {
        onForce?.();
      } finally {
        exitWhenWritten(130);
      }
    }
    if (run) void run.stop();
    else pending = true;
  };
  const sigs: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const sig of sigs) process.on(sig, onSignal);
  if (pending) {
    count = 1;
    firstAt = Date.now();
  }
  // Whatever started kleak may go away without a signal (npm exec does not pass one on): the kernel sends one.
  stopWithParent();
  return {
    attach(r: { stop(): Promise<void> }) {
      run = r;
      if (pending) void r.stop();
    },
    release() {
      for (const sig of sigs) process.off(sig, onSignal);
    },
  };
}

/** KLEAK_TEST_CRASH_MS=N: throw from a timer after N ms (tests prove cleanup after a crash of kleak's own code). */
function injectFault(): void {
  const ms = Number(process.env.KLEAK_TEST_CRASH_MS);
  if (ms > 0) {
    setTimeout(() => {
      throw new Error('injected crash (KLEAK_TEST_CRASH_MS)');
    }, ms).unref();
  }
}
