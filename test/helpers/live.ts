// Running kleak live against the real kernel while scripts/workload-keys.py holds known objects.
import { execa, type ResultPromise } from 'execa';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { expect } from 'vitest';
import type { JsonReport } from '../../src/report/json.js';
import { CLI, ROOT } from './cli.js';

export interface Workload {
  pid: number;
  /** Resolves with the workload's line that starts with `prefix`. */
  until(prefix: string): Promise<string>;
  /** Closes stdin: the workload releases what it holds and exits. */
  release(): Promise<string>;
  proc: ResultPromise;
}

/** A workload script of scripts/ (workload-keys.py by default) that holds what it makes until release(). */
export function startWorkload(args: string[], script = 'workload-keys.py', o: { cgroupDir?: string } = {}): Workload {
  const argv = [`${ROOT}scripts/${script}`, '--wait', ...args];
  // In a cgroup from its first instruction: the shell moves itself in, then becomes python (the folder is an argument, never shell text).
  const proc = o.cgroupDir
    ? execa('sh', ['-c', 'echo $$ > "$1/cgroup.procs" && shift && exec python3 "$@"', 'sh', o.cgroupDir, ...argv], { stdin: 'pipe', stdout: 'pipe', buffer: false, reject: false })
    : execa('python3', argv, { stdin: 'pipe', stdout: 'pipe', buffer: false, reject: false });
  const lines: string[] = [];
  const waiters: { prefix: string; resolve: (l: string) => void }[] = [];
  let rest = '';
  proc.stdout!.setEncoding('utf8');
  proc.stdout!.on('data', (d: string) => {
    rest += d;
    let nl;
    while ((nl = rest.indexOf('\n')) >= 0) {
      const l = rest.slice(0, nl);
      rest = rest.slice(nl + 1);
      lines.push(l);
      for (const w of waiters.filter((x) => l.startsWith(x.prefix))) w.resolve(l);
    }
  });
  const until = (prefix: string) =>
    new Promise<string>((resolve) => {
      const seen = lines.find((l) => l.startsWith(prefix));
      if (seen) resolve(seen);
      else waiters.push({ prefix, resolve });
    });
  return {
    pid: proc.pid!,
    until,
    proc,
    async release() {
      proc.stdin!.end();
      const done = await until('done');
      await proc;
      return done;
    },
  };
}

export interface LiveKleak {
  proc: ResultPromise;
  /** Resolves once kleak says it is tracing. */
  ready: Promise<void>;
  stderr: () => string;
  /** Pids of the processes kleak started (its tracer), seen while it ran: what the test checks is gone after. */
  children: Set<number>;
}

/** Every kleak a test file started: tests check what they started, never other users' tracers on the machine. */
export const startedKleaks: LiveKleak[] = [];

function childrenOf(pid: number): number[] {
  try {
    return readdirSync(`/proc/${pid}/task`).flatMap((t) => readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number));
  } catch {
    return [];
  }
}

/** The tracers started kleaks left running (by pid), and the tracefs instances named after them. */
export function leftBehind(): { pids: number[]; instances: string[] } {
  const pids = startedKleaks.flatMap((k) => [...k.children]).filter((p) => {
    try {
      return !readFileSync(`/proc/${p}/stat`, 'utf8').includes(') Z ');
    } catch {
      return false;
    }
  });
  const names = new Set(startedKleaks.map((k) => `kleak-${k.proc.pid}`));
  const instances = existsSync('/sys/kernel/tracing/instances') ? readdirSync('/sys/kernel/tracing/instances').filter((n) => names.has(n)) : [];
  return { pids, instances };
}

export function startKleak(args: string[]): LiveKleak {
  const proc = execa(process.execPath, [CLI, 'live', ...args], { reject: false, stdin: 'ignore', cwd: ROOT, buffer: { stdout: true, stderr: false }, stderr: 'pipe' });
  let err = '';
  let markReady: () => void = () => {};
  const ready = new Promise<void>((r) => (markReady = r));
  proc.stderr!.setEncoding('utf8');
  proc.stderr!.on('data', (d: string) => {
    err += d;
    if (/tracing with/.test(err)) markReady();
  });
  void proc.then(() => markReady());
  const children = new Set<number>();
  const poll = setInterval(() => {
    for (const c of childrenOf(proc.pid!)) children.add(c);
  }, 100);
  void proc.finally(() => clearInterval(poll));
  const k = { proc, ready, stderr: () => err, children };
  startedKleaks.push(k);
  return k;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface HeldRun {
  /** kleak live's arguments (a --json run). */
  kleak: string[];
  /** The workload's arguments, and its script (workload-keys.py by default). */
  workload: string[];
  script?: string;
  /** How long to trace once the workload holds (frees of what it churned arrive late: key GC, kfree_rcu). */
  settleMs: number;
  /** Runs once kleak traces (a check of what it loaded). */
  onReady?: (kleakPid: number) => Promise<void>;
}

/**
 * The shape of most live tests: kleak traces, a workload makes and holds known objects, kleak is stopped with
 * SIGINT while they are held (so its final report lists them), then the workload releases them. kleak must exit 0.
 */
export async function holdAndReport(o: HeldRun): Promise<{ report: JsonReport; workloadPid: number; stderr: string; kleakPid: number }> {
  const k = startKleak(o.kleak);
  await k.ready;
  await o.onReady?.(k.proc.pid!);
  const w = startWorkload(o.workload, o.script);
  await w.until('holding');
  await sleep(o.settleMs);
  k.proc.kill('SIGINT');
  const r = await k.proc;
  await w.release();
  expect(r.exitCode, k.stderr()).toBe(0);
  return { report: JSON.parse(String(r.stdout)) as JsonReport, workloadPid: w.pid, stderr: k.stderr(), kleakPid: k.proc.pid! };
}
