// The bpftrace backend: runs bpftrace/kleak-pairs.bt (pointer table in the kernel, snapshots every interval) or
// kleak-events.bt (every event) through execa and feeds its stdout, via split2, to the bpftrace parser.

import { execa, type ResultPromise } from 'execa';
import { readFileSync } from 'node:fs';
import type { EventFilter } from '../engine/filter.js';
import { kmallocCacheSize } from '../engine/filter.js';
import type { AllocatorName, ParseSink } from '../event.js';
import { EnvironmentError, InputError } from '../errors.js';
import { kmemTracepoints, missingAllocatorTracepoints, probesFor, type ProbeSet, ensureTracefs } from '../kernel/tracefs.js';
import { BpftraceEventsParser } from '../parse/bpftrace-events.js';
import { gfpAccount } from '../kernel/btf.js';
import { Kallsyms } from '../kernel/kallsyms.js';
import { mapMemory } from '../kernel/map-memory.js';
import { pageSize } from '../kernel/page-size.js';
import { hostSlabAllocator } from '../kernel/slabinfo.js';
import { kmallocLabels } from '../parse/kmem-fields.js';
import { packagePath } from '../paths.js';
import { forEachLineSplit2 } from './lines.js';
import { interrupt, NAMED_CACHES_CAVEAT, PERCPU_BYTES_CAVEAT, shellQuote, type LiveEnd, type LiveSource } from './live.js';
import { onPath } from './which.js';
import { type BpftraceVersion, bpftraceVersion, cacheNameReading, mapKeysVariable, mapMemoryNote } from './bpftrace-version.js';

export interface BpftraceOptions {
  filter: EventFilter;
  /** Which allocators to pair (slab when absent); others than slab in pairs mode only. */
  allocators?: ReadonlySet<AllocatorName>;
  stacks: boolean;
  /** Stream every event instead of pairing in the kernel. */
  events: boolean;
  /** Seconds between kernel snapshots (pairs mode). */
  snapshotSec: number;
  /** Size of the kernel pointer table. */
  maxPointers: number;
  /** Snapshots list every pointer while at most this many are outstanding; above, per-site totals only. */
  listMax: number;
}

const STACK_DEPTH = 12;

/** Allocator numbers in the program's site keys and pointer records (0 is slab). */
const ALLOCATOR_NUMBER: Record<Exclude<AllocatorName, 'slab'>, number> = { vmalloc: 1, page: 2, percpu: 3 };

/** @live[-1] is the program's "done" flag (kleak-pairs.bt). */
const DONE = '@live[(uint64)-1]';
const WHO = `($3 == 0 || pid == $3) && pid != $4 && comm != "bpftrace" && ($5 == 0 || comm == str($6)) && ${DONE} == 0`;

/**
 * The probes of the allocators other than slab (pairs mode), kleak's own text. A pointer re-allocated while tracked
 * lost its free: counted as freed at its site, so the site's count stays right. Page size is $12.
 */
function otherAllocatorProbes(allocators: ReadonlySet<AllocatorName>, stacks: boolean): string {
  const out: string[] = [];
  const S = `kstack(perf, ${STACK_DEPTH})`;
  /** vmalloc areas and pages: sites by stack (@ssite), the stack kept per pointer to find the site at free. */
  const byStack = (a: 'vmalloc' | 'page', alloc: string, pred: string, key: string, bytes: string, frees: { probe: string; key: string }[]) => {
    const n = ALLOCATOR_NUMBER[a];
    out.push(`${alloc}
/${pred}/
{
  if (${WHO}) {
    $k = (uint64)${key};
    $b = (uint64)${bytes};
    if (@live[$k]) {
      $old = @ptr[$k];
      @ssite[@stk[$k], $old.6, 1] = sum(1);
      @ssite[@stk[$k], $old.6, 4] = sum($old.3);
    }
    @live[$k] = 1;
    if (@live[$k]) {
      @ptr[$k] = (nsecs, (uint64)0, $b, $b, pid, buf(comm, 16), ${n});
      @stk[$k] = ${S};
      @ssite[@stk[$k], ${n}, 0] = sum(1);
      @ssite[@stk[$k], ${n}, 3] = sum($b);
    } else {
      @untracked = count();
    }
  }
}`);
    for (const f of frees) {
      out.push(`${f.probe}
/@live[(uint64)${f.key}]/
{
  if (${DONE} == 0) {
    $k = (uint64)${f.key};
    $t = @ptr[$k];
    @ssite[@stk[$k], $t.6, 1] = sum(1);
    @ssite[@stk[$k], $t.6, 4] = sum($t.3);
    delete(@live[$k]);
    delete(@ptr[$k]);
    delete(@stk[$k]);
  }
}`);
    }
  };
  if (allocators.has('vmalloc')) {
    byStack('vmalloc', 'tracepoint:vmalloc:alloc_vmap_area', 'args->failed == 0 && args->size >= $1 && args->size <= $2', 'args->addr', 'args->size', [{ probe: 'tracepoint:vmalloc:free_vmap_area_noflush', key: 'args->va_start' }]);
  }
  if (allocators.has('page')) {
    byStack('page', 'tracepoint:kmem:mm_page_alloc', '($12 << args->order) >= $1 && ($12 << args->order) <= $2', 'args->pfn', '$12 << args->order', [
      { probe: 'tracepoint:kmem:mm_page_free', key: 'args->pfn' },
      { probe: 'tracepoint:kmem:mm_page_free_batched', key: 'args->pfn' },
    ]);
  }
  if (allocators.has('percpu')) {
    const n = ALLOCATOR_NUMBER.percpu;
    out.push(`tracepoint:percpu:percpu_alloc_percpu
/args->bytes_alloc >= $1 && args->bytes_alloc <= $2/
{
  if (${WHO}) {
    $k = (uint64)args->ptr;
    if (@live[$k]) {
      $old = @ptr[$k];
      @site[$old.1, $old.6, 2] = sum(1);
      @site[$old.1, $old.6, 5] = sum($old.3);
    }
    @live[$k] = 1;
    if (@live[$k]) {
      @ptr[$k] = (nsecs, args->call_site, (uint64)args->size, (uint64)args->bytes_alloc, pid, buf(comm, 16), ${n});
      ${stacks ? `@stk[$k] = ${S};` : ''}
      @site[args->call_site, ${n}, 0] = sum(1);
      @site[args->call_site, ${n}, 3] = sum(args->bytes_alloc);
    } else {
      @untracked = count();
    }
  }
}
tracepoint:percpu:percpu_free_percpu
/@live[(uint64)args->ptr]/
{
  if (${DONE} == 0) {
    $k = (uint64)args->ptr;
    $t = @ptr[$k];
    delete(@live[$k]);
    delete(@ptr[$k]);
    ${stacks ? 'delete(@stk[$k]);' : ''}
    @site[$t.1, $t.6, 1] = sum(1);
    @site[$t.1, $t.6, 4] = sum($t.3);
  }
}`);
  }
  return out.join('\n\n');
}

/**
 * The named-cache allocation probe as a raw tracepoint: kmem_cache_alloc(call_site, ptr, s, gfp_flags, node), the
 * cache read from its struct kmem_cache through BTF. For a bpftrace that reads the tracepoint's __data_loc name
 * empty (0.23.2): the same program, its slab allocation probe's fields spelled from the raw arguments.
 */
const RAW_CACHE = '((struct kmem_cache *)arg2)';
const RAW_FIELDS: [string, string][] = [
  ['args->bytes_alloc', `(uint64)${RAW_CACHE}->size`],
  ['args->bytes_req', `(uint64)${RAW_CACHE}->object_size`],
  ['args->call_site', 'arg0'],
  ['args->ptr', 'arg1'],
  ['args->gfp_flags', 'arg3'],
];

/** The program text: kleak's own fixed fragments only; user values go in positional parameters. */
export function bpftraceProgram(
  o: Pick<BpftraceOptions, 'events' | 'stacks'> & { allocators?: ReadonlySet<AllocatorName> },
  probes: ProbeSet | undefined,
  namedCache: boolean,
  /** Read the cache name from the raw tracepoint's struct kmem_cache (rawCacheNames: see RAW_FIELDS). */
  rawCacheNames = false,
): string {
  const file = o.events ? 'kleak-events.bt' : 'kleak-pairs.bt';
  const allocators = o.allocators ?? new Set<AllocatorName>(['slab']);
  let text = readFileSync(packagePath('bpftrace', file), 'utf8');
  const sub = (token: string, value: string) => (text = text.split(token).join(value));
  text = allocators.has('slab') ? text.replace(/^\/\/ (?:SLAB\{|\}SLAB)\n/gm, '') : text.replace(/\/\/ SLAB\{[\s\S]*?\/\/ \}SLAB\n/, '');
  const byStack = allocators.has('vmalloc') || allocators.has('page');
  // Maps that no probe writes are undefined to bpftrace: print and clear only those in use.
  const bySite = allocators.has('slab') || allocators.has('percpu');
  const stk = (o.stacks && bySite) || byStack;
  if (namedCache && rawCacheNames) {
    // Only the allocation probe changes: the frees stay tracepoints, keyed by the pointer alone.
    const start = text.indexOf('ALLOC_PROBES');
    const end = text.indexOf('FREE_PROBES');
    let block = text.slice(start, end).replace('ALLOC_PROBES', 'rawtracepoint:kmem_cache_alloc');
    for (const [from, to] of RAW_FIELDS) block = block.split(from).join(to);
    text = text.slice(0, start) + block + text.slice(end);
  }
  const cacheName = rawCacheNames ? `str(${RAW_CACHE}->name)` : 'str(args->name)';
  if (probes) {
    sub('ALLOC_PROBES', probes.allocs.map((t) => `tracepoint:kmem:${t}`).join(',\n'));
    sub('FREE_PROBES', probes.frees.map((t) => `tracepoint:kmem:${t}`).join(',\n'));
  }
  sub('OTHER_ALLOCATORS', otherAllocatorProbes(allocators, o.stacks));
  sub(
    'MAP_KEY_TYPES',
    [
      ...(bySite ? ['@site[(uint64)0, 0, 0] = sum(0); delete(@site[(uint64)0, 0, 0]);'] : []),
      ...(byStack ? [`@ssite[kstack(perf, ${STACK_DEPTH}), 0, 0] = sum(0); delete(@ssite[kstack(perf, ${STACK_DEPTH}), 0, 0]);`] : []),
    ].join('\n  '),
  );
  sub(' CACHE_PRED', namedCache ? ` && ($7 == 0 || ${cacheName} == str($8))` : '');
  sub('CACHE_FIELD', namedCache ? cacheName : '"-"');
  sub('STACK_FORMAT', o.stacks ? '%s' : '');
  sub(' STACK_ARG', o.stacks ? `, kstack(perf, ${STACK_DEPTH})` : '');
  sub('STACK_STORE', o.stacks ? `@stk[$k] = kstack(perf, ${STACK_DEPTH});` : '');
  sub('STACK_DELETE', o.stacks ? 'delete(@stk[$k]);' : '');
  sub('STACK_PRINT', stk ? 'print(@stk);' : '');
  sub('STACK_CLEAR', stk ? 'clear(@stk);' : '');
  sub('STACK_SITES_PRINT', byStack ? 'print(@ssite);' : '');
  sub('STACK_SITES_CLEAR', byStack ? 'clear(@ssite);' : '');
  // (after STACK_SITES_*, whose names contain these)
  sub('SITES_PRINT', bySite ? 'print(@site);' : '');
  sub('SITES_CLEAR', bySite ? 'clear(@site);' : '');
  return text;
}


/** Positional parameters, in the order the programs' headers document. */
export function bpftraceParams(o: BpftraceOptions, namedCache: boolean): string[] {
  const f = o.filter;
  const size = f.cache !== undefined ? kmallocCacheSize(f.cache) : undefined;
  const min = f.bytes ?? size ?? f.minBytes ?? 0;
  const max = f.bytes ?? size ?? f.maxBytes ?? 2 ** 40;
  return [
    String(min), String(max), String(f.pid ?? 0), String(process.pid),
    f.comm !== undefined ? '1' : '0', f.comm ?? '',
    namedCache ? '1' : '0', namedCache ? f.cache! : '',
    String(o.maxPointers), String(Math.max(100, Math.round(o.snapshotSec * 1000))), String(o.listMax), String(pageSize()), String(gfpAccount()),
  ];
}

/** bpftrace 0.17 prints this on every start here; it is harmless (docs/formats.md). */
const NOISE = /couldn't set RLIMIT_MEMLOCK|^\s*$/;

export async function preflightBpftrace(): Promise<void> {
  if (process.getuid?.() !== 0) throw new EnvironmentError('kleak live needs root: loading BPF programs and reading tracepoints is privileged.', 'Run it with sudo.');
  if (!onPath('bpftrace')) {
    throw new EnvironmentError('bpftrace is not installed.', 'Install the bpftrace package (apt-get install bpftrace), or use --backend tracefs, which needs nothing but the kernel.');
  }
}

/** `dryRun`: decide without running bpftrace (the cache-name check loads a program; --dry-run runs nothing). */
async function plan(o: BpftraceOptions, dryRun = false): Promise<{ args: string[]; env: Record<string, string>; version: BpftraceVersion | undefined; mounted?: string }> {
  const tracefs = await ensureTracefs();
  const namedCache = o.filter.cache !== undefined && kmallocCacheSize(o.filter.cache) === undefined;
  const allocators = o.allocators ?? new Set<AllocatorName>(['slab']);
  const others = [...allocators].filter((a) => a !== 'slab');
  if (o.events && others.length > 0) throw new InputError(`--alloc ${others.join(',')} with --backend bpftrace pairs in the kernel: drop --events.`);
  // Every probe of the program must attach: no tracepoint may be missing (mm_page_free_batched included).
  missingAllocatorTracepoints(tracefs.root, allocators, false);
  const probes = allocators.has('slab') ? probesFor(kmemTracepoints(tracefs.root), namedCache) : undefined;
  const version = bpftraceVersion();
  // --cache NAME compares kmem_cache_alloc's name in the kernel: a bpftrace that reads the tracepoint's name empty
  // (0.23.2) reads it from the raw tracepoint's struct kmem_cache instead; one that can do neither would match
  // nothing, and is refused.
  const names = namedCache && !dryRun ? cacheNameReading() : 'tracepoint';
  if (names === undefined) {
    throw new EnvironmentError(
      `bpftrace ${version?.text ?? '(unknown version)'} reads this kernel's kmem_cache names empty (a bpftrace bug in __data_loc strings), and cannot read them from the raw tracepoint either, so --cache ${o.filter.cache} would see nothing.`,
      'Use --backend kernel (or --backend tracefs) for --cache; --bytes N works with this bpftrace.',
    );
  }
  // `--` ends bpftrace's options: a parameter such as a --comm value "-c/usr/bin/touch" stays a parameter.
  const args = ['-B', 'none', '-e', bpftraceProgram({ ...o, allocators }, probes, namedCache, names === 'raw'), '--', ...bpftraceParams(o, namedCache)];
  return { args, env: { [mapKeysVariable(version)]: String(o.maxPointers) }, version, ...(tracefs.mounted ? { mounted: tracefs.mounted } : {}) };
}

/** What startBpftrace would run, as one shell command line. */
export async function bpftraceCommandLine(o: BpftraceOptions): Promise<string> {
  const p = await plan(o, true);
  const line = [...Object.entries(p.env).map(([k, v]) => `${k}=${v}`), 'bpftrace', ...p.args.map(shellQuote)].join(' ');
  const namedCache = o.filter.cache !== undefined && kmallocCacheSize(o.filter.cache) === undefined;
  return namedCache
    ? `# a bpftrace that reads kmem_cache_alloc's name empty (0.23) gets rawtracepoint:kmem_cache_alloc instead (docs/bpftrace-versions.md)\n${line}`
    : line;
}

export async function startBpftrace(o: BpftraceOptions, sink: ParseSink): Promise<LiveSource> {
  await preflightBpftrace();
  const p = await plan(o);
  // setpriv --pdeathsig: the kernel kills bpftrace when kleak's process ends, even by SIGKILL (which runs no
  // cleanup); otherwise a bpftrace whose filter rarely matches lives on until its next write.
  const [cmd, args] = onPath('setpriv') ? ['setpriv', ['--pdeathsig', 'KILL', '--', 'bpftrace', ...p.args]] : ['bpftrace', p.args];
  const child: ResultPromise = execa(cmd, args as string[], {
    env: p.env,
    stdout: 'pipe',
    stderr: 'pipe',
    stdin: 'ignore',
    buffer: false,
    reject: false,
    // Its own process group: a terminal's Ctrl-C reaches kleak only, and kleak stops bpftrace in order (END runs).
    detached: true,
    cleanup: true,
  });
  const stderrLines: string[] = [];
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (d: string) => {
    for (const l of d.split('\n')) if (!NOISE.test(l)) stderrLines.push(l.trim());
  });
  // bpftrace's ksym() drops module names: kleak names call sites and frames from kallsyms itself.
  const syms = Kallsyms.load();
  const namedCache = o.filter.cache !== undefined && kmallocCacheSize(o.filter.cache) === undefined;
  const parser = new BpftraceEventsParser(sink, (a) => (syms.lookup(a) ? syms.format(a) : undefined), namedCache ? o.filter.cache : undefined, kmallocLabels(hostSlabAllocator(), pageSize()));
  let markReady: () => void = () => {};
  const ready = new Promise<void>((r) => (markReady = r));
  let lines = 0;
  const reading = forEachLineSplit2(child.stdout!, (line, n) => {
    lines = n;
    if (line === 'R') markReady();
    parser.line(line, n);
  }).finally(() => parser.end());

  let stopping = false;
  const ended: Promise<LiveEnd> = (async () => {
    const r = await child;
    await reading.catch(() => undefined);
    if (stopping) return { how: 'stopped' };
    const said = stderrLines.filter((l) => l !== '').pop();
    return { how: 'died', why: `bpftrace exited (${r.signal ?? `code ${r.exitCode}`})${said ? `: ${said}` : ''}` };
  })();

  // A bpftrace that never attaches (a stuck compile, a kernel that hangs loading) must not hang kleak.
  const startSec = Number(process.env.KLEAK_BPFTRACE_START_SEC) || 120;
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), startSec * 1000)));
  const first = await Promise.race([ready.then(() => 'ready' as const), ended, timedOut]);
  clearTimeout(timer);
  if (first === 'timeout') {
    stopping = true;
    child.kill('SIGKILL');
    await ended;
    const said = stderrLines.filter((l) => l !== '').slice(-3).join(' ');
    throw new EnvironmentError(`bpftrace did not attach its probes within ${startSec} s${said ? ` (it said: ${said})` : ''}; kleak stopped it.`, 'Try --backend kernel or --backend tracefs, or a smaller --max-pointers (bpftrace preallocates every map).');
  }
  if (first !== 'ready') {
    const said = stderrLines.filter((l) => l !== '').slice(-3).join(' ');
    throw new EnvironmentError(`bpftrace failed to start: ${said || first.why || 'no message'}.`, 'Check that this kernel supports BPF (bpftrace --info), or use --backend tracefs.');
  }
  const held = child.pid !== undefined ? mapMemory(child.pid) : 0;
  const notes = p.mounted ? [p.mounted] : [];
  // bpftrace sizes its maps to --max-pointers (0.17 preallocates every one): say what that pins, worded by the
  // version that runs.
  if (held > 0) notes.push(`bpftrace's maps hold ${(held / 1048576).toFixed(0)} MiB of kernel memory (${mapMemoryNote(p.version, o.maxPointers)}).`);
  return {
    caveats: [
      ...((o.allocators ?? new Set(['slab'])).has('slab') && !namedCache ? [NAMED_CACHES_CAVEAT('bpftrace')] : []),
      ...(o.allocators?.has('percpu') ? [PERCPU_BYTES_CAVEAT('bpftrace')] : []),
    ],
    info: { kind: 'live', backend: 'bpftrace', mode: o.events ? 'events' : 'pairs', ...(p.version ? { version: `bpftrace ${p.version.text}` } : {}) },
    notes,
    pids: child.pid !== undefined ? [child.pid] : [],
    lines: () => lines,
    ended,
    async stop() {
      if (!stopping) {
        stopping = true;
        // SIGINT runs the program's END probe: the final snapshot lists every outstanding pointer.
        await interrupt(child, ended);
      }
      await ended;
    },
  };
}
