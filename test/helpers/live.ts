// Running kleak live against the real kernel while scripts/workload-keys.py holds known objects.
import { execa, type ResultPromise } from 'execa';
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
export function startWorkload(args: string[], script = 'workload-keys.py'): Workload {
  const proc = execa('python3', [`${ROOT}scripts/${script}`, '--wait', ...args], { stdin: 'pipe', stdout: 'pipe', buffer: false, reject: false });
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
  return { proc, ready, stderr: () => err };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
