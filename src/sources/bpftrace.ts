// The bpftrace backend: runs bpftrace/kleak-pairs.bt (pointer table in the kernel, snapshots every interval) or
// kleak-events.bt (every event) through execa and feeds its stdout, via split2, to the bpftrace parser.

import { execa, type ResultPromise } from 'execa';
import { readFileSync } from 'node:fs';
import type { EventFilter } from '../engine/filter.js';
import { kmallocCacheSize } from '../engine/filter.js';
import type { ParseSink } from '../event.js';
import { EnvironmentError } from '../errors.js';
import { kmemTracepoints, probesFor, type ProbeSet, ensureTracefs } from '../kernel/tracefs.js';
import { BpftraceEventsParser } from '../parse/bpftrace-events.js';
import { Kallsyms } from '../kernel/kallsyms.js';
import { packagePath } from '../paths.js';
import { forEachLineSplit2 } from './lines.js';
import { interrupt, shellQuote, type LiveEnd, type LiveSource } from './live.js';
import { onPath } from './which.js';

export interface BpftraceOptions {
  filter: EventFilter;
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

/** The program text: kleak's own fixed fragments only; user values go in positional parameters. */
export function bpftraceProgram(o: Pick<BpftraceOptions, 'events' | 'stacks'>, probes: ProbeSet, namedCache: boolean): string {
  const file = o.events ? 'kleak-events.bt' : 'kleak-pairs.bt';
  let text = readFileSync(packagePath('bpftrace', file), 'utf8');
  const sub = (token: string, value: string) => (text = text.split(token).join(value));
  sub('ALLOC_PROBES', probes.allocs.map((t) => `tracepoint:kmem:${t}`).join(',\n'));
  sub('FREE_PROBES', probes.frees.map((t) => `tracepoint:kmem:${t}`).join(',\n'));
  sub(' CACHE_PRED', namedCache ? ' && ($7 == 0 || str(args->name) == str($8))' : '');
  sub('CACHE_FIELD', namedCache ? 'str(args->name)' : '"-"');
  sub('STACK_FORMAT', o.stacks ? '%s' : '');
  sub(' STACK_ARG', o.stacks ? `, kstack(perf, ${STACK_DEPTH})` : '');
  sub('STACK_STORE', o.stacks ? `@stk[args->ptr] = kstack(perf, ${STACK_DEPTH});` : '');
  sub('STACK_DELETE', o.stacks ? 'delete(@stk[args->ptr]);' : '');
  sub('STACK_PRINT', o.stacks ? 'print(@stk);' : '');
  sub('STACK_CLEAR', o.stacks ? 'clear(@stk);' : '');
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
    String(o.maxPointers), String(Math.max(1, Math.round(o.snapshotSec * 10))), String(o.listMax),
  ];
}

/** bpftrace 0.17 prints this on every start here; it is harmless (FORMATS.md). */
const NOISE = /couldn't set RLIMIT_MEMLOCK|^\s*$/;

export async function preflightBpftrace(): Promise<void> {
  if (process.getuid?.() !== 0) throw new EnvironmentError('kleak live needs root: loading BPF programs and reading tracepoints is privileged.', 'Run it with sudo.');
  if (!onPath('bpftrace')) {
    throw new EnvironmentError('bpftrace is not installed.', 'Install the bpftrace package (apt-get install bpftrace), or use --backend tracefs, which needs nothing but the kernel.');
  }
}

async function plan(o: BpftraceOptions): Promise<{ args: string[]; env: Record<string, string>; mounted?: string }> {
  const tracefs = await ensureTracefs();
  const namedCache = o.filter.cache !== undefined && kmallocCacheSize(o.filter.cache) === undefined;
  const probes = probesFor(kmemTracepoints(tracefs.root), namedCache);
  // `--` ends bpftrace's options: a parameter such as a --comm value "-c/usr/bin/touch" stays a parameter.
  const args = ['-B', 'none', '-e', bpftraceProgram(o, probes, namedCache), '--', ...bpftraceParams(o, namedCache)];
  return { args, env: { BPFTRACE_MAP_KEYS_MAX: String(o.maxPointers) }, ...(tracefs.mounted ? { mounted: tracefs.mounted } : {}) };
}

/** What startBpftrace would run, as one shell command line. */
export async function bpftraceCommandLine(o: BpftraceOptions): Promise<string> {
  const p = await plan(o);
  return [...Object.entries(p.env).map(([k, v]) => `${k}=${v}`), 'bpftrace', ...p.args.map(shellQuote)].join(' ');
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
  const parser = new BpftraceEventsParser(sink, (a) => (syms.lookup(a) ? syms.format(a) : undefined));
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

  const first = await Promise.race([ready.then(() => 'ready' as const), ended]);
  if (first !== 'ready') {
    const said = stderrLines.filter((l) => l !== '').slice(-3).join(' ');
    throw new EnvironmentError(`bpftrace failed to start: ${said || first.why || 'no message'}.`, 'Check that this kernel supports BPF (bpftrace --info), or use --backend tracefs.');
  }
  return {
    info: { kind: 'live', backend: 'bpftrace', mode: o.events ? 'events' : 'pairs' },
    notes: p.mounted ? [p.mounted] : [],
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
