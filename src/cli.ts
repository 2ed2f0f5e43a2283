#!/usr/bin/env node
// kleak's command line: argv → one command. KleakError → one sentence (+ what to do) on stderr and exit 1 or 2.

// First: a stop signal during the loading of everything below is remembered, not fatal.
import { catchEarlySignals } from './early-signals.js';

import { parseArgs } from 'node:util';
import { closeSync, openSync, readSync } from 'node:fs';
import { packagePath } from './paths.js';
import { KleakError, InputError } from './errors.js';
import type { EventFilter } from './engine/filter.js';
import { SLAB_ALLOCATORS, type AllocatorName, type FormatName, type SlabAllocator } from './event.js';
import type { BackendChoice } from './commands/live.js';
import { kmallocCacheSize, kmemBucketSize } from './engine/filter.js';
import { cacheName } from './kernel/slabinfo.js';
import { checkSshDestination, type SshTarget } from './sources/ssh-target.js';
import { parseThresholds, type VerdictThresholds } from './engine/verdict.js';
import { renderJson } from './report/json.js';
import { renderText } from './report/text.js';
import { exitWhenWritten, say, writeData, writeText } from './output.js';

export const DEMO_RECORDING = packagePath('recordings', 'demo.report.gz');

const HELP = `kleak — find Linux kernel memory leaks: pairs kmalloc/kfree events and shows what is never freed

EXAMPLES
  kleak                                   open the bundled demo recording
  sudo kleak watch --duration 60          which slab cache grows? (and the live filter to use on it)
  sudo kleak live --bytes 4096            who holds kmalloc-4096 objects? (Ctrl-C for the final report)
  sudo kleak live --bytes 128 --stacks --duration 60 --min-age 30 --record run.ndjson --text
  sudo kleak live --cache eventpoll_epi --comm nginx --stacks   one kmem_cache, one program
  sudo kleak live --alloc vmalloc,percpu --duration 60   who holds VmallocUsed and Percpu
  sudo kleak live --backend tracefs --bytes 4096      no BTF or libbpf on this host
  sudo kleak watch --prometheus :9464     a fleet's Prometheus scrapes which caches and vmalloc callers grow
  sudo kleak inspect --from report.json --site user_preparse   what the leaked objects hold
  sudo kleak record --bytes 4096 --stacks --duration 30 -o k4096.pipe   raw trace_pipe text to keep
  kleak replay run.ndjson                 the same answer again, later, elsewhere
  kleak replay trace.report               a saved \`trace-cmd report\` (or trace.dat, trace_pipe text, .gz, -)
  kleak replay trace.dat --bytes 4096 --min-age 30 --json | jq '.sites[0]'
  kleak replay kmemleak-*.txt --every 600   which backtrace keeps growing across kmemleak reports
  kleak replay run.ndjson --folded held.folded && flamegraph.pl held.folded > held.svg
  kleak diff healthy.ndjson sick.ndjson   which caches, vmalloc callers, sites and modules differ, by bytes

USAGE
  kleak live [--backend kernel|bpftrace|tracefs|trace-cmd] [--alloc slab,vmalloc,page,percpu|all] [filter] [--stacks] [--duration SEC] [--interval SEC]
             [--events] [--record FILE.ndjson] [--max-pointers N] [--dry-run] [report options]
  kleak replay FILE|- [--format auto|trace-cmd|trace-pipe|bpftrace|ndjson] [--speed X] [--kallsyms FILE] [filter] [report options]
  kleak replay RECORD... [--format kmemleak|allocinfo|slabinfo|alloc_traces|vmallocinfo] [--every SEC] [--top N] [--json]
  kleak record [--backend tracefs|trace-cmd] [--alloc LIST] [filter] [--stacks] [--duration SEC] -o FILE
  kleak watch [--interval SEC] [--duration SEC] [--top N] [--cache NAME,...] [--record FILE.ndjson] [--json]
  kleak watch [--root DIR] [--kmemleak-scan] [--prometheus [HOST:]PORT] [--textfile DIR]
  kleak watch --replay FILE.ndjson
  kleak inspect PTR... [--length N] | --from REPORT.json [--site FUNC]
  kleak census CACHE|--bytes N|--all [--top N] [--interval SEC --duration SEC] [--record FILE] [--json]
                                         what a slab cache holds now (also what was allocated before kleak
                                         started), grouped by what the objects look like; read-only. Repeated,
                                         each group gets a series and a verdict; kleak replay and diff read it
  kleak diff A B [--top N] [--json]      two watch captures, or two recordings/reports: what differs, by bytes

LIVE AND RECORD
  --backend NAME       kernel (default for live where it loads: kleak's own BPF program through libbpf, pairs in
                       the kernel, sees kfree_rcu batches; needs BTF and libbpf.so.1), bpftrace (the same
                       pairing in bpftrace), tracefs (needs only the kernel; every kfree crosses to userspace),
                       trace-cmd (trace-cmd stream / record). Without it: kernel, else bpftrace, else tracefs
  --stacks             record kernel stacks of outstanding allocations (kernel backend: each site's first 16,
                       then one in 8, so each stack's share of a site is an estimate; counts stay exact)
  --stack-every N      with --stacks on the kernel backend: 1 records every allocation's stack; N one in N
  --duration SEC       stop after SEC seconds (default: at Ctrl-C / SIGTERM)
  --interval SEC       print a text report every SEC seconds (default 5; watch: sample every SEC, default 2)
  --alloc LIST         allocators to pair: slab (default), vmalloc, page, percpu, a comma list, or all (kernel,
                       bpftrace and tracefs backends; kleak record too). vmalloc areas and pages are named by
                       the first frame of their stack outside the allocator
  --ssh [USER@]HOST    live and watch: run on that host over ssh (it needs a shell and tracefs, not Node; root
                       there). The remote instance goes when kleak stops or the connection drops
  --ssh-config FILE    an ssh_config for --ssh (port, key, known hosts); else yours
  --events             stream every tracked allocation and its free (kernel: a BPF ring buffer read a few times
                       a second; bpftrace: printed lines) and pair them in kleak, instead of kernel snapshots
  --record FILE        keep an NDJSON recording that \`kleak replay\` (or \`kleak watch --replay\`) reads back
  --max-pointers N     kernel, bpftrace: most pointers the kernel table holds (default 262144); more are
                       counted as untracked
  --dry-run            print what the backend would run or write, and run nothing
  --force              replace an existing --record / -o file (files kleak writes are new, 0600, never
                       written through a symbolic link: they hold kernel addresses)
  -o FILE              kleak record: raw trace_pipe text (tracefs, the default) or a trace.dat (trace-cmd)

WATCH
  --root DIR           read /proc and /sys under DIR (a copy taken from a broken host) instead of the live ones
  --kmemleak-scan      ask kmemleak for a scan before each reading (echo scan: expensive, so never by default)
  watch reads every record this kernel keeps: slabinfo, meminfo, vmallocinfo, and /proc/allocinfo, kmemleak and
  SLUB alloc_traces (slub_debug=U; of the first caches it lists, or --cache NAME,...) where they exist (it says
  which are missing and what turns them on)

METRICS (live, watch)
  --prometheus [HOST:]PORT   serve Prometheus metrics on /metrics (a bare port: every interface)
  --textfile DIR       write DIR/kleak.prom every interval, atomically, for node_exporter's textfile collector

FILTER (allocations)
  --bytes N            bytes_alloc equal to N (the kmalloc-N cache)
  --min-bytes N        bytes_alloc at least N
  --max-bytes N        bytes_alloc at most N
  --cache NAME         kmem_cache name (or kmalloc-N, kmalloc-4k)
  --comm NAME          task name
  --pid N              process id
  --cgroup PATH        a memory cgroup and those below it (/kubepods/pod1; kernel backend, filtered in the
                       kernel; replay of its recordings). Every allocation the kernel backend tracks carries its
                       task's memory cgroup: the report says whose objects each site holds

REPLAY
  --format NAME        the trace's format, when detection from its first lines is not enough
  --page-size N        replay: the traced machine's page size (default 4096; arm64 may use 16384 or 65536):
                       page orders, and where kmalloc-N caches end (two pages; larger kmallocs are pages-N)
  --slab-allocator A   replay: the traced kernel's slab allocator, slub (default; the only one since 6.8),
                       slab (every kmalloc is kmalloc-N) or slob (no kmalloc caches: "slob" below a page)
  --kallsyms FILE      replay: name raw hex call sites and stack frames (old kernels' traces) from a copy of
                       the traced host's /proc/kallsyms (as root) or its System.map
  --speed X            in the interactive view, replay at X times the trace's own pace (default: at once)
  --every SEC          kernel records that do not say when they were taken: one every SEC seconds (default 60)

  kleak replay also reads what the kernel keeps, from one or several files in name order: kmemleak reports
  (cat /sys/kernel/debug/kmemleak), /proc/allocinfo dumps, slabinfo and vmallocinfo capture loops, SLUB
  alloc_traces dumps; --format kmemleak|allocinfo|slabinfo|vmallocinfo|alloc_traces forces one. The same sites, series and verdicts, and a
  by-module summary.

REPORT
  --folded FILE        outstanding bytes by kernel stack as folded stacks (flamegraph.pl, inferno, speedscope)
  --pprof FILE         the same as a gzipped pprof profile (objects and bytes: pprof, Pyroscope, Parca)
  --flamegraph FILE    the same as one self-contained HTML flame graph (zoom, search, hover; no network)
  --min-age SEC        only allocations at least SEC old (like bcc memleak -o)
  --top N              the N call sites holding the most bytes
  --verdict K=V,...    tune the growing/churn thresholds (minPoints, minSpanSec, minRise, keepFraction,
                       risingStepFraction, minRisingSteps, churnMinAllocs, churnFreedFraction; README)
  --json               the JSON report (stable; see README)
  --text               the plain text report instead of the interactive view (the default when stdout is
                       not a terminal)
  --debug              show a stack trace for internal errors
  --version            print kleak's version

Exit codes: 0 ok, 1 usage or input error, 2 environment error (no root, no bpftrace, no tracepoints, the tracer
died).`;

const OPTIONS = {
  format: { type: 'string', default: 'auto' },
  bytes: { type: 'string' },
  'min-bytes': { type: 'string' },
  'max-bytes': { type: 'string' },
  cache: { type: 'string' },
  comm: { type: 'string' },
  cgroup: { type: 'string' },
  pid: { type: 'string' },
  'min-age': { type: 'string' },
  top: { type: 'string' },
  all: { type: 'boolean', default: false },
  backend: { type: 'string' },
  alloc: { type: 'string' },
  stacks: { type: 'boolean', default: false },
  'stack-every': { type: 'string' },
  duration: { type: 'string' },
  interval: { type: 'string' },
  events: { type: 'boolean', default: false },
  record: { type: 'string' },
  'max-pointers': { type: 'string' },
  'dry-run': { type: 'boolean', default: false },
  force: { type: 'boolean', default: false },
  prometheus: { type: 'string' },
  folded: { type: 'string' },
  flamegraph: { type: 'string' },
  pprof: { type: 'string' },
  textfile: { type: 'string' },
  speed: { type: 'string' },
  output: { type: 'string', short: 'o' },
  replay: { type: 'string' },
  every: { type: 'string' },
  root: { type: 'string' },
  ssh: { type: 'string' },
  kallsyms: { type: 'string' },
  'page-size': { type: 'string' },
  'slab-allocator': { type: 'string' },
  'ssh-config': { type: 'string' },
  'kmemleak-scan': { type: 'boolean', default: false },
  from: { type: 'string' },
  site: { type: 'string' },
  length: { type: 'string' },
  verdict: { type: 'string' },
  json: { type: 'boolean', default: false },
  text: { type: 'boolean', default: false },
  debug: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
  version: { type: 'boolean', short: 'V', default: false },
} as const;

function num(name: string, v: string | undefined, opts: { integer?: boolean; min?: number; max?: number } = {}): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || (opts.integer && !Number.isInteger(n)) || (opts.min !== undefined && n < opts.min) || (opts.max !== undefined && n > opts.max)) {
    const range = opts.min !== undefined && opts.max !== undefined ? ` from ${opts.min} to ${opts.max.toLocaleString('en-US')}` : opts.min !== undefined ? ` of at least ${opts.min}` : '';
    throw new InputError(`--${name} needs ${opts.integer ? 'a whole number' : 'a number'}${range}, not "${v}".`);
  }
  return n;
}

type Values = ReturnType<typeof parse>['values'];

function parse(argv: string[]) {
  try {
    return parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (err) {
    throw new InputError(`${(err as Error).message.replace(/\. To specify.*$/, '')}.`.replace(/\.\.$/, '.'), 'Run kleak --help for the options.');
  }
}

function filterFrom(v: Values): EventFilter {
  const f: EventFilter = {};
  // A size above 1 TiB is no allocation (and would not fit the tracers' 64-bit compares as typed).
  const bytes = num('bytes', v.bytes, { integer: true, min: 1, max: 2 ** 40 });
  const min = num('min-bytes', v['min-bytes'], { integer: true, min: 0, max: 2 ** 40 });
  const max = num('max-bytes', v['max-bytes'], { integer: true, min: 1, max: 2 ** 40 });
  if (bytes !== undefined && (min !== undefined || max !== undefined)) throw new InputError('--bytes cannot be combined with --min-bytes or --max-bytes.');
  if (min !== undefined && max !== undefined && min > max) throw new InputError(`--min-bytes (${min}) cannot be greater than --max-bytes (${max}).`);
  if (bytes !== undefined) f.bytes = bytes;
  if (min !== undefined) f.minBytes = min;
  if (max !== undefined) f.maxBytes = max;
  // Spell kmalloc caches as the events do ("kmalloc-4k" in /proc/slabinfo is "kmalloc-4096" here).
  if (v.cache !== undefined) {
    const bucket = kmemBucketSize(v.cache);
    if (bucket !== undefined) throw new InputError(`--cache ${v.cache} would see nothing: its objects come through kmalloc (a kmem_buckets cache), so no event names it.`, `Use --bytes ${bucket} (every kmalloc of that size class, ${v.cache}'s among them).`);
    const size = kmallocCacheSize(v.cache);
    f.cache = size !== undefined ? v.cache.replace(/-\d+k?$/, `-${size}`) : v.cache;
    // A kmalloc-N cache is a size: a size option that excludes N would leave nothing, on every backend alike.
    if (size !== undefined && (bytes !== undefined ? bytes !== size : (min !== undefined && min > size) || (max !== undefined && max < size))) {
      const sizes = bytes !== undefined ? `--bytes ${bytes}` : [min !== undefined ? `--min-bytes ${min}` : '', max !== undefined ? `--max-bytes ${max}` : ''].filter(Boolean).join(' ');
      throw new InputError(`--cache ${v.cache} holds ${size}-byte objects, which ${sizes} excludes: together they would match nothing.`, `Use one of them (kleak reads --cache ${v.cache} as --bytes ${size}).`);
    }
  }
  if (v.comm !== undefined) {
    if (v.comm === '') throw new InputError('--comm needs a task name, not an empty one (it would match nothing).');
    f.comm = v.comm;
  }
  if (v.cache === '') throw new InputError('--cache needs a cache name, not an empty one.');
  // pid 0 is the idle task, not "any": leave --pid out to mean every process.
  const pid = num('pid', v.pid, { integer: true, min: 1, max: 4_194_304 });
  if (pid !== undefined) f.pid = pid;
  if (v.cgroup !== undefined) {
    // A path in the memory hierarchy, spelled as kleak shows it: "/a/b" (a mount path is resolved by the backend).
    if (v.cgroup === '' || v.cgroup.split('/').includes('..')) throw new InputError(`--cgroup takes a memory cgroup's path such as /kubepods/pod1, not "${v.cgroup}".`);
    f.cgroup = v.cgroup;
  }
  return f;
}

/** --prometheus [HOST:]PORT and --textfile DIR (a directory that exists). */
async function metricsOptions(v: Values): Promise<{ prometheus?: { host: string | undefined; port: number }; textfile?: string }> {
  const out: { prometheus?: { host: string | undefined; port: number }; textfile?: string } = {};
  if (v.prometheus !== undefined) out.prometheus = (await import('./report/prometheus.js')).parseListen(v.prometheus);
  if (v.textfile !== undefined) {
    const { statSync } = await import('node:fs');
    let dir = false;
    try {
      dir = statSync(v.textfile).isDirectory();
    } catch {
      dir = false;
    }
    if (!dir) throw new InputError(`--textfile takes a directory that exists (node_exporter's --collector.textfile.directory), not "${v.textfile}".`);
    out.textfile = v.textfile;
  }
  return out;
}

const MAX_TIMER_SEC = 2_147_483;

/** Options each command takes (beyond --help, --version, --debug, --json, --text); any other is refused up front. */
const COMMAND_OPTIONS: Record<string, readonly string[]> = {
  live: ['backend', 'alloc', 'bytes', 'min-bytes', 'max-bytes', 'cache', 'comm', 'pid', 'cgroup', 'stacks', 'stack-every', 'duration', 'interval', 'events', 'record', 'max-pointers', 'dry-run', 'force', 'prometheus', 'textfile', 'folded', 'pprof', 'flamegraph', 'min-age', 'top', 'verdict', 'ssh', 'ssh-config'],
  replay: ['format', 'kallsyms', 'page-size', 'slab-allocator', 'bytes', 'min-bytes', 'max-bytes', 'cache', 'comm', 'pid', 'cgroup', 'speed', 'every', 'folded', 'pprof', 'flamegraph', 'force', 'min-age', 'top', 'verdict'],
  record: ['backend', 'alloc', 'bytes', 'min-bytes', 'max-bytes', 'cache', 'comm', 'pid', 'stacks', 'duration', 'output', 'force'],
  watch: ['interval', 'duration', 'top', 'record', 'force', 'replay', 'root', 'kmemleak-scan', 'prometheus', 'textfile', 'ssh', 'ssh-config', 'cache'],
  inspect: ['from', 'site', 'length'],
  diff: ['top'],
  census: ['bytes', 'top', 'all', 'interval', 'duration', 'record', 'force', 'verdict'],
  '': ['speed', 'format', 'bytes', 'min-bytes', 'max-bytes', 'cache', 'comm', 'pid', 'min-age', 'top', 'verdict', 'folded', 'pprof', 'flamegraph', 'force', 'every'],
};
const ALWAYS = new Set(['help', 'version', 'debug', 'json', 'text']);

/** Refuses an option given to a command that does not use it (a typo'd command line must not run something else). */
function checkOptions(command: string, argv: string[]): void {
  const allowed = COMMAND_OPTIONS[command];
  if (!allowed) return;
  const { tokens } = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: false, tokens: true });
  for (const t of tokens ?? []) {
    if (t.kind !== 'option' || ALWAYS.has(t.name) || allowed.includes(t.name)) continue;
    const flag = t.rawName;
    throw new InputError(`${flag} is not an option of ${command ? `kleak ${command}` : 'kleak (the demo)'}.`, `Run kleak --help for what each command takes.`);
  }
}

const ALLOCATOR_NAMES: readonly AllocatorName[] = ['slab', 'vmalloc', 'page', 'percpu'];

/** --alloc slab,vmalloc,page,percpu or all; slab when absent. */
function allocatorsFrom(text: string | undefined): Set<AllocatorName> {
  if (text === undefined) return new Set(['slab']);
  const words = text.split(',').map((w) => w.trim());
  if (words.length === 1 && words[0] === 'all') return new Set(ALLOCATOR_NAMES);
  const bad = words.filter((w) => !(ALLOCATOR_NAMES as readonly string[]).includes(w));
  if (bad.length > 0 || words.length === 0) throw new InputError(`--alloc takes a comma list of ${ALLOCATOR_NAMES.join(', ')} (or all), not "${bad[0] ?? text}".`);
  return new Set(words as AllocatorName[]);
}

function thresholdsFrom(v: Values): { thresholds?: VerdictThresholds } {
  if (v.verdict === undefined) return {};
  const t = parseThresholds(v.verdict);
  if (typeof t === 'string') throw new InputError(`--verdict: ${t}.`);
  return { thresholds: t };
}

function reportOptions(v: Values) {
  const top = num('top', v.top, { integer: true, min: 1 });
  const minAgeSec = num('min-age', v['min-age'], { min: 0 });
  return { ...(top !== undefined ? { top } : {}), ...(minAgeSec !== undefined ? { minAgeSec } : {}) };
}

/**
 * --cache NAME of a cache this kernel merged into another: events carry the other's name, so that one is traced,
 * and the user is told. A name this kernel does not have is refused (never an empty answer without a sentence).
 */
function resolveMergedCache(f: EventFilter, remote: boolean): void {
  if (f.cache === undefined || remote || kmallocCacheSize(f.cache) !== undefined) return;
  const c = cacheName(f.cache);
  if (c.kind === 'absent') throw new InputError(`this kernel has no slab cache named ${f.cache} (/proc/slabinfo lists the caches, /sys/kernel/slab the merged names too).`);
  if (c.kind !== 'merged') return;
  say(`kleak: --cache ${f.cache}: this kernel merged it into ${c.into} (no slab_nomerge), whose name its allocations carry; tracing ${c.into}, which also holds ${c.alsoHolds.length > 0 ? c.alsoHolds.slice(0, 4).join(', ') + (c.alsoHolds.length > 4 ? ' …' : '') + ' objects' : 'its own objects'} (boot with slab_nomerge to keep them apart).\n`);
  f.cache = c.into;
}

/** --page-size N: the traced machine's page size (a power of two from 4 KiB to 256 KiB). */
function pageSizeFrom(v: Values): { pageSize?: number } {
  const n = num('page-size', v['page-size'], { integer: true, min: 4096, max: 262_144 });
  if (n === undefined) return {};
  if ((n & (n - 1)) !== 0) throw new InputError(`--page-size needs a power of two (4096, 16384, 65536), not ${n}.`);
  return { pageSize: n };
}

/** --slab-allocator slub|slab|slob: the traced kernel's, for kmalloc-N labels. */
function slabFrom(v: Values): { slab?: SlabAllocator } {
  const a = v['slab-allocator'];
  if (a === undefined) return {};
  const slab = SLAB_ALLOCATORS.find((s) => s === a);
  if (slab === undefined) throw new InputError(`--slab-allocator takes ${SLAB_ALLOCATORS.join(', ')}, not ${JSON.stringify(a)}.`);
  return { slab };
}

/** --ssh [user@]host (and --ssh-config FILE): where to run, checked before anything starts. */
function sshFrom(v: Values): { ssh?: SshTarget } {
  if (v.ssh === undefined) {
    if (v['ssh-config'] !== undefined) throw new InputError('--ssh-config goes with --ssh HOST.');
    return {};
  }
  if (v.root !== undefined) throw new InputError('--ssh and --root both say where /proc is: give one.');
  if (v['kmemleak-scan']) throw new InputError('--kmemleak-scan writes to the kernel being watched; it does not go with --ssh.', 'Run kleak watch --kmemleak-scan on that host, or trigger the scan there yourself.');
  if (v.backend !== undefined && v.backend !== 'auto' && v.backend !== 'tracefs') throw new InputError(`--ssh runs the tracefs backend on the remote host (a shell and tracefs are all it needs); --backend ${v.backend} does not go with it.`);
  if (v.events) throw new InputError('--events does not go with --ssh: the remote run streams every event already (tracefs).');
  return { ssh: { destination: checkSshDestination(v.ssh), ...(v['ssh-config'] !== undefined ? { config: v['ssh-config'] } : {}) } };
}

/** --stack-every N: only with --stacks, and only the kernel backend samples (the others record every stack). */
function stackEveryFrom(v: Values): { stackEvery?: number } {
  const n = num('stack-every', v['stack-every'], { integer: true, min: 1, max: 1_000_000 });
  if (n === undefined) return {};
  if (!v.stacks) throw new InputError('--stack-every goes with --stacks: it says how many allocations\' stacks to record.', 'Example: sudo kleak live --bytes 1024 --stacks --stack-every 1');
  return { stackEvery: n };
}

async function live(v: Values): Promise<number> {
  const backends: BackendChoice[] = ['auto', 'kernel', 'bpftrace', 'tracefs', 'trace-cmd'];
  const backend = (v.backend ?? 'auto') as BackendChoice;
  if (!backends.includes(backend)) throw new InputError(`--backend ${v.backend} is not one of ${backends.join(', ')}.`);
  const o = {
      backend,
      allocators: allocatorsFrom(v.alloc),
      filter: filterFrom(v),
      stacks: v.stacks,
      ...stackEveryFrom(v),
      events: v.events,
      // Node's timers hold at most 2^31-1 ms (24.8 days): a longer one fires at once.
      durationSec: num('duration', v.duration, { min: 0.1, max: MAX_TIMER_SEC }),
      intervalSec: num('interval', v.interval, { min: 0.1, max: MAX_TIMER_SEC }) ?? 5,
      report: reportOptions(v),
      record: v.record,
      force: v.force,
      ...(v.folded !== undefined ? { folded: v.folded } : {}),
      ...(v.pprof !== undefined ? { pprof: v.pprof } : {}),
      ...(v.flamegraph !== undefined ? { flamegraph: v.flamegraph } : {}),
      ...(await metricsOptions(v)),
      // Each tracked pointer costs ~100 bytes of kernel memory (bpftrace: preallocated in every map it sizes).
      maxPointers: num('max-pointers', v['max-pointers'], { integer: true, min: 16, max: 4_194_304 }) ?? 262_144,
      ...thresholdsFrom(v),
      ...sshFrom(v),
  };
  resolveMergedCache(o.filter, o.ssh !== undefined);
  if (v['dry-run']) {
    const { liveCommandLine } = await import('./commands/live.js');
    writeText(await liveCommandLine(o) + '\n');
    return 0;
  }
  const { runLive, runLiveTui } = await import('./commands/live.js');
  return useTui(v) ? runLiveTui(o) : runLive(o, v.json);
}

/** The TUI on a terminal, unless a plain report was asked for. */
function useTui(v: Values): boolean {
  return process.stdout.isTTY === true && process.stdin.isTTY === true && !v.json && !v.text;
}

/** The first 4 KiB of a file, to tell a census from a trace; undefined when it cannot be read (replay says why). */
function readCensusHead(path: string): string | undefined {
  try {
    const fd = openSync(path, 'r');
    try {
      const buf = Buffer.alloc(4096);
      return buf.toString('utf8', 0, readSync(fd, buf, 0, buf.length, 0));
    } finally {
      closeSync(fd);
    }
  } catch {
    return undefined;
  }
}

async function replay(path: string, v: Values): Promise<void> {
  const format = v.format as FormatName | 'auto';
  const speed = num('speed', v.speed, { min: 0.01 });
  const o = { path, format, filter: filterFrom(v), report: reportOptions(v), ...(speed !== undefined ? { speed } : {}), ...thresholdsFrom(v), ...(v.kallsyms !== undefined ? { kallsyms: v.kallsyms } : {}), ...pageSizeFrom(v), ...slabFrom(v) };
  // Commands are loaded on demand: on a terminal the replay's worker starts before the parsers are loaded here.
  const exports = { ...(v.folded !== undefined ? { folded: v.folded } : {}), ...(v.pprof !== undefined ? { pprof: v.pprof } : {}), ...(v.flamegraph !== undefined ? { flamegraph: v.flamegraph } : {}), force: v.force };
  // The view runs the replay on another thread; exports read the engine here, so they take the report path.
  if (useTui(v) && path !== '-' && !exports.folded && !exports.pprof && !exports.flamegraph) return (await import('./commands/replay-tui.js')).replayInTui(o);
  const { replayToReport } = await import('./commands/replay.js');
  const { exportFailure } = await import('./commands/replay.js');
  const { report, damage, failedExports } = await replayToReport(o, exports);
  if (v.json) writeData(renderJson(report));
  else writeText(renderText(report));
  // The report of what was read stands; the exit code says the input was not whole.
  if (damage !== undefined) throw new InputError(`${damage}; the report above covers what was read before it.`);
  const failure = exportFailure(failedExports);
  if (failure) throw failure;
}

export async function main(argv: string[]): Promise<number> {
  // React's development build checks far more on every render; the TUI (imported later, on demand) gets production.
  process.env.NODE_ENV ??= 'production';
  // Ink reads CI when it is first imported and then paints only the last frame. A terminal on both ends is a
  // person watching (a CI job's tmux, a shell with CI exported), so the TUI must stay live there.
  if (process.stdout.isTTY === true && process.stdin.isTTY === true) {
    delete process.env.CI;
    delete process.env.CONTINUOUS_INTEGRATION;
  }
  const { values, positionals } = parse(argv);
  if (values.help) {
    writeText(HELP + '\n');
    return 0;
  }
  if (values.version) {
    const { readFileSync } = await import('node:fs');
    writeText(`kleak ${(JSON.parse(readFileSync(packagePath('package.json'), 'utf8')) as { version: string }).version}\n`);
    return 0;
  }
  if (values.json && values.text) throw new InputError('--json and --text cannot be used together.');
  const [command, ...rest] = positionals;
  checkOptions(command ?? '', argv);
  // early-signals.ts guessed the command from argv at load time; the parsed command decides (installed once).
  if (command === 'live' || command === 'record') catchEarlySignals();
  if (command === 'record' && values.output === '-') throw new InputError('kleak record -o needs a file name; it writes a file, not stdout.');
  switch (command) {
    case undefined:
      // The demo unfolds at 8x trace speed: the leak grows on screen in about four seconds.
      await replay(DEMO_RECORDING, { ...values, speed: values.speed ?? '8' });
      return 0;
    case 'live':
      if (rest.length > 0) throw new InputError(`kleak live takes no file (got "${rest[0]}").`, 'To read a saved trace: kleak replay FILE.');
      return live(values);
    case 'watch': {
      if (rest.length > 0) throw new InputError(`kleak watch takes no file (got "${rest[0]}"); to show a recording: kleak watch --replay FILE.`);
      const { runWatch } = await import('./commands/watch.js');
      const r = await runWatch({
        intervalSec: num('interval', values.interval, { min: 0.1, max: MAX_TIMER_SEC }) ?? 2,
        durationSec: num('duration', values.duration, { min: 0.1, max: MAX_TIMER_SEC }),
        top: num('top', values.top, { integer: true, min: 1 }) ?? 15,
        record: values.record,
        force: values.force,
        ...(await metricsOptions(values)),
        ...(values.root !== undefined ? { root: values.root } : {}),
        ...sshFrom(values),
        // Cache names as /proc/slabinfo and /sys/kernel/debug/slab spell them (kmalloc-4k).
        ...(values.cache !== undefined ? { caches: values.cache.split(',').filter((c) => c !== '') } : {}),
        kmemleakScan: values['kmemleak-scan'],
        replay: values.replay,
        json: values.json,
        tui: useTui(values) && values.replay === undefined,
      });
      if (typeof r === 'number') return r;
      // Enter on a cache in the watch view: trace it live, with its kmalloc size or its name as the filter.
      const size = kmallocCacheSize(r.trace) ?? kmemBucketSize(r.trace);
      return live({ ...values, duration: undefined, interval: undefined, record: undefined, ...(size !== undefined ? { bytes: String(size) } : { cache: r.trace }) });
    }
    case 'inspect':
      const { runInspect } = await import('./commands/inspect.js');
      return runInspect({ ptrs: rest, from: values.from, site: values.site, length: num('length', values.length, { integer: true, min: 8 }) });
    case 'record': {
      if (rest.length > 0) throw new InputError(`kleak record takes its file with -o (got "${rest[0]}").`);
      if (!values.output) throw new InputError('kleak record needs -o FILE.', 'Example: sudo kleak record --backend tracefs --bytes 4096 --duration 60 -o kmalloc-4k.pipe');
      const { checkRecordBackend, runRecord } = await import('./commands/record.js');
      return runRecord({
        backend: checkRecordBackend(values.backend ?? 'tracefs'),
        filter: filterFrom(values),
        allocators: allocatorsFrom(values.alloc),
        stacks: values.stacks,
        durationSec: num('duration', values.duration, { min: 0.1, max: MAX_TIMER_SEC }),
        output: values.output,
        force: values.force,
      });
    }
    case 'census': {
      const { runCensus, renderCensus, cachesFor } = await import('./commands/census.js');
      const top = num('top', values.top, { integer: true, min: 1 }) ?? 15;
      const intervalSec = num('interval', values.interval, { min: 0.1, max: MAX_TIMER_SEC });
      const durationSec = num('duration', values.duration, { min: 0.1, max: MAX_TIMER_SEC });
      if (durationSec !== undefined && intervalSec === undefined) throw new InputError('kleak census --duration needs --interval SEC: how often to take the census.', 'Example: sudo kleak census kmalloc-128 --interval 10 --duration 300');
      const r = await runCensus({
        top: values.json ? Number.MAX_SAFE_INTEGER : top,
        ...cachesFor(rest, values.bytes === undefined ? undefined : num('bytes', values.bytes, { integer: true, min: 1 }), values.all === true),
        ...(intervalSec !== undefined ? { intervalSec, durationSec: durationSec ?? MAX_TIMER_SEC } : {}),
        ...(values.record !== undefined ? { record: values.record } : {}),
        force: values.force,
        ...thresholdsFrom(values),
      });
      if (values.json) writeData(JSON.stringify(r, null, 2) + '\n');
      else writeText(renderCensus(r, top));
      return 0;
    }
    case 'diff': {
      if (rest.length !== 2) throw new InputError('kleak diff needs two captures: A (healthy, or before) and B (sick, or after).', 'Example: kleak diff healthy.watch.ndjson sick.watch.ndjson');
      const { diff, renderDiff } = await import('./commands/diff.js');
      const d = await diff(rest[0]!, rest[1]!, num('top', values.top, { integer: true, min: 1 }) ?? 10);
      if (values.json) writeData(JSON.stringify(d, null, 2) + '\n');
      else writeText(renderDiff(d));
      return 0;
    }
    case 'replay': {
      // Records the kernel keeps (kmemleak reports, allocinfo and slabinfo dumps) are gauges over time, read from one
      // or several files; traces are one stream.
      const { isRecordFormatName } = await import('./records/formats.js');
      const recordsAsked = isRecordFormatName(values.format);
      const { sniffRecordFile, recordsReport, renderRecords, recordsInTui } = await import('./commands/records.js');
      if (recordsAsked || (values.format === 'auto' && rest.length > 0 && rest[0] !== '-' && sniffRecordFile(rest[0]!))) {
        if (rest.length === 0) throw new InputError('kleak replay needs the record files.', 'Example: kleak replay kmemleak-*.txt --every 600');
        const ro = {
          paths: rest, format: values.format, everySec: num('every', values.every, { min: 0.001 }) ?? 60,
          ...(values.top !== undefined ? { top: num('top', values.top, { integer: true, min: 1 })! } : {}), ...thresholdsFrom(values),
        };
        if (useTui(values)) {
          await recordsInTui(ro);
          return 0;
        }
        const r = await recordsReport(ro);
        if (values.json) writeData(JSON.stringify(r, null, 2) + '\n');
        else writeText(renderRecords(r));
        return 0;
      }
      if (rest.length !== 1) throw new InputError('kleak replay needs one FILE (or - for stdin); several files are for kernel records (kmemleak, allocinfo, slabinfo dumps).', 'Example: kleak replay trace.report');
      if (values.format === 'auto' && rest[0] !== '-') {
        const census = await import('./commands/census.js');
        const text = readCensusHead(rest[0]!);
        if (text !== undefined && census.isCensusText(text)) {
          const top = num('top', values.top, { integer: true, min: 1 }) ?? 15;
          const { report, damage } = census.readCensus(rest[0]!, undefined, values.json ? Number.MAX_SAFE_INTEGER : top, thresholdsFrom(values).thresholds);
          if (values.json) writeData(JSON.stringify(report, null, 2) + '\n');
          else writeText(census.renderCensus(report, top));
          if (damage !== undefined) throw new InputError(`${damage}; the report above covers the rounds that were whole.`);
          return 0;
        }
      }
      await replay(rest[0]!, values);
      return 0;
    }
    default:
      throw new InputError(`unknown command "${command}".`, 'Commands: live, record, replay, watch, census, inspect, diff. Run kleak --help.');
  }
}

// Every exit waits for stdout and stderr to be written out: a report into a slow pipe is never cut (src/output.ts).
main(process.argv.slice(2)).then(
  (code) => exitWhenWritten(code),
  (err: unknown) => {
    if (err instanceof KleakError) {
      say(`kleak: ${err.message}\n${err.hint ? `  ${err.hint}\n` : ''}`);
      exitWhenWritten(err.exitCode);
      return;
    }
    const debug = process.argv.includes('--debug');
    say(`kleak: internal error: ${(err as Error)?.message ?? String(err)}${debug ? `\n${(err as Error)?.stack ?? ''}` : ' (run with --debug for details)'}\n`);
    exitWhenWritten(70);
  },
);
