// The trace-cmd backend: `trace-cmd stream` in its own buffer instance, its report-format text fed to the
// trace-cmd parser as it comes. stream (not record + report) because kleak wants events live, and stream writes
// no file. On hosts that deny tracefs writes trace-cmd needs (this project's VM denies set_ftrace_filter),
// trace-cmd dies at once: kleak says so in one sentence and suggests the backends that work.

import { execa, type ResultPromise } from 'execa';
import { existsSync, readFileSync } from 'node:fs';
import type { EventFilter } from '../engine/filter.js';
import { kmallocCacheSize } from '../engine/filter.js';
import type { ParseSink } from '../event.js';
import { EnvironmentError } from '../errors.js';
import { TracefsInstance, guardInstance } from '../kernel/instance.js';
import { pageSize } from '../kernel/page-size.js';
import { hostSlabAllocator } from '../kernel/slabinfo.js';
import { ensureTracefs, kmemTracepoints, probesFor } from '../kernel/tracefs.js';
import { FtraceTextParser } from '../parse/ftrace-text.js';
import { forEachLineSplit2 } from './lines.js';
import { interrupt, shellQuote, type LiveEnd, type LiveSource } from './live.js';
import { allocFilter } from './tracefs.js';
import { onPath } from './which.js';

export interface TraceCmdOptions {
  filter: EventFilter;
  stacks: boolean;
  /** Record to this trace.dat instead of streaming (kleak record). */
  output?: string;
}

/**
 * The trace-cmd command line (without the program name) for a filter, in buffer instance `name`: `stream` for live,
 * `record -o FILE` for kleak record.
 */
export function traceCmdArgs(o: TraceCmdOptions, name: string, probes: { allocs: string[]; frees: string[] }, selfPid: number, output?: string): string[] {
  const namedCache = o.filter.cache !== undefined && kmallocCacheSize(o.filter.cache) === undefined;
  const filter = allocFilter(o.filter, namedCache, [selfPid]);
  const args = output !== undefined ? ['record', '-B', name, '-o', output] : ['stream', '-B', name];
  for (const t of probes.allocs) args.push('-e', `kmem:${t}`, '-f', filter);
  for (const t of probes.frees) args.push('-e', `kmem:${t}`);
  if (o.stacks) args.push('-T');
  return args;
}

/** What startTraceCmd would run (--dry-run). */
export async function traceCmdCommandLine(o: TraceCmdOptions): Promise<string> {
  const tracefs = await ensureTracefs();
  const namedCache = o.filter.cache !== undefined && kmallocCacheSize(o.filter.cache) === undefined;
  const args = traceCmdArgs(o, `kleak-tc-${process.pid}`, probesFor(kmemTracepoints(tracefs.root), namedCache), process.pid, o.output);
  return ['trace-cmd', ...args.map(shellQuote)].join(' ');
}

export async function startTraceCmd(o: TraceCmdOptions, sink: ParseSink): Promise<LiveSource> {
  if (process.getuid?.() !== 0) throw new EnvironmentError('kleak live needs root: trace-cmd drives tracefs, which only root may write.', 'Run it with sudo.');
  if (!onPath('trace-cmd')) throw new EnvironmentError('trace-cmd is not installed.', 'Install the trace-cmd package (apt-get install trace-cmd), or use --backend tracefs, which needs nothing but the kernel.');
  const tracefs = await ensureTracefs();
  const namedCache = o.filter.cache !== undefined && kmallocCacheSize(o.filter.cache) === undefined;
  const probes = probesFor(kmemTracepoints(tracefs.root), namedCache);
  const name = `kleak-tc-${process.pid}`;
  const instPath = `${tracefs.root}/instances/${name}`;
  if (existsSync(instPath)) throw new EnvironmentError(`a tracefs instance named ${name} already exists and kleak did not create it in this run, so kleak leaves it alone.`, `If it is left over from a kleak that was killed, remove it with: rmdir ${instPath}`);
  // trace-cmd creates the instance for kleak; if trace-cmd dies without removing it, kleak does.
  const leftover = () => (existsSync(instPath) ? TracefsInstance.adopt(tracefs.root, name).remove() : undefined);
  guardInstance(instPath);
  const child: ResultPromise = execa('trace-cmd', traceCmdArgs(o, name, probes, process.pid, o.output), {
    stdout: 'pipe', stderr: 'pipe', stdin: 'ignore', buffer: { stdout: false, stderr: true }, reject: false, detached: true, cleanup: true,
  });
  const parser = new FtraceTextParser(sink, { pageSize: pageSize(), slab: hostSlabAllocator() });
  let lines = 0;
  const reading = forEachLineSplit2(child.stdout!, (line, n) => {
    lines = n;
    parser.line(line, n);
  }).finally(() => parser.end());

  let stopping = false;
  const ended: Promise<LiveEnd> = (async () => {
    const r = await child;
    await reading.catch(() => undefined);
    leftover();
    if (stopping) return { how: 'stopped' };
    return { how: 'died', why: `trace-cmd exited (${r.signal ?? `code ${r.exitCode}`}): ${lastWords(String(r.stderr ?? ''))}` };
  })();

  // Ready when trace-cmd has switched the allocation event on in its instance; failed when it exits first.
  const enabled = `${instPath}/events/kmem/${probes.allocs[0]}/enable`;
  const ready = (async () => {
    for (let i = 0; i < 200; i++) {
      try {
        if (readFileSync(enabled, 'utf8').trim() === '1') return 'ready' as const;
      } catch {
        // not created yet
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    return 'ready' as const;
  })();
  const first = await Promise.race([ready, ended]);
  if (first !== 'ready') {
    const said = first.why?.replace(/^trace-cmd exited \([^)]*\): /, '') ?? 'no message';
    throw new EnvironmentError(
      `trace-cmd could not start tracing ("${said}"): this host refuses a tracefs write trace-cmd makes (sandboxed VMs deny set_ftrace_filter).`,
      'Use --backend tracefs (kleak drives tracefs itself) or --backend bpftrace.',
    );
  }
  return {
    info: { kind: 'live', backend: 'trace-cmd', mode: o.output ? 'record' : 'events' },
    notes: tracefs.mounted ? [tracefs.mounted] : [],
    pids: child.pid !== undefined ? [child.pid] : [],
    lines: () => lines,
    ended,
    async stop() {
      if (!stopping) {
        stopping = true;
        await interrupt(child, ended);
      }
      await ended;
    },
  };
}

function lastWords(stderr: string): string {
  return stderr.split('\n').map((l) => l.trim()).filter(Boolean).slice(-2).join(': ') || 'no message';
}
