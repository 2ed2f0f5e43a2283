// A private tracefs instance (instances/kleak-<pid>): kleak's own ring buffer and event switches, so the
// top-level buffer other tools use is never touched. Everything kleak sets lives inside it and goes with rmdir.
// Removal is attempted on stop, on exceptions and on process exit; an instance kleak did not create is never touched.
// A SIGKILL runs none of that: a small watchdog (guardInstance) removes the instance within a second of kleak's
// death, and every next live run removes what a killed kleak left (removeStale), whatever its backend.

import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, readFileSync, readdirSync, rmdirSync, writeFileSync } from 'node:fs';
import { EnvironmentError } from '../errors.js';
import { say } from '../output.js';

export class TracefsInstance {
  readonly path: string;
  private removed = false;
  /**
   * The open trace_pipe, while its reader has not closed it. At exit (after a crash) remove() closes it itself:
   * a read blocked on an empty trace_pipe would hold the instance (EBUSY) and the process (libuv joins its
   * threads at exit) forever.
   */
  pipeFd: number | undefined;
  /** Non-blocking per-CPU trace_pipe_raw files being read: closed before the instance goes (rmdir needs it). */
  rawFds: number[] = [];
  private readonly onExit = () => this.remove();

  private constructor(
    readonly root: string,
    readonly name: string,
  ) {
    this.path = `${root}/instances/${name}`;
  }

  /**
   * Removes instances a killed kleak left tracing (instances/kleak-<pid> or kleak-tc-<pid> whose pid no longer runs kleak): SIGKILL
   * runs no cleanup, and such an instance fills its buffers forever. Another live kleak's instance, and any
   * instance not named kleak-<pid>, is left alone. Returns the names removed.
   */
  static removeStale(root: string): string[] {
    const removed: string[] = [];
    let names: string[];
    try {
      names = readdirSync(`${root}/instances`);
    } catch {
      return removed;
    }
    for (const name of names) {
      const m = /^kleak-(?:tc-)?(\d+)$/.exec(name);
      if (!m || Number(m[1]) === process.pid || kleakRuns(Number(m[1]))) continue;
      const stale = new TracefsInstance(root, name);
      stale.remove();
      if (!existsSync(stale.path)) removed.push(name);
    }
    return removed;
  }

  /** Creates instances/<name>; refuses a name that already exists (kleak did not create it in this run). */
  static create(root: string, name = `kleak-${process.pid}`): TracefsInstance {
    const inst = new TracefsInstance(root, name);
    if (existsSync(inst.path)) {
      throw new EnvironmentError(`a tracefs instance named ${name} already exists and kleak did not create it in this run, so kleak leaves it alone.`, `If it is left over from a kleak that was killed, remove it with: rmdir ${inst.path}`);
    }
    try {
      mkdirSync(inst.path);
    } catch (err) {
      throw new EnvironmentError(`cannot create the tracefs instance ${inst.path}: ${(err as Error).message}.`, 'kleak needs root and a kernel with tracefs instances (3.17+).');
    }
    process.on('exit', inst.onExit);
    guardInstance(inst.path);
    return inst;
  }

  /** An instance kleak caused to exist (trace-cmd -B made it for kleak), to remove it. */
  static adopt(root: string, name: string): TracefsInstance {
    return new TracefsInstance(root, name);
  }

  /** Writes a control file of the instance; says which one failed and why. */
  write(file: string, value: string): void {
    try {
      writeFileSync(`${this.path}/${file}`, value);
    } catch (err) {
      const log = this.errorLog();
      throw new EnvironmentError(`the kernel refused "${value.trim()}" in ${file}: ${(err as Error).message}${log ? ` (${log})` : ''}.`);
    }
  }

  has(file: string): boolean {
    return existsSync(`${this.path}/${file}`);
  }

  read(file: string): string {
    return readFileSync(`${this.path}/${file}`, 'utf8');
  }

  /** The last line of the instance's error_log, where the kernel explains a rejected filter. */
  errorLog(): string | undefined {
    try {
      return readFileSync(`${this.path}/error_log`, 'utf8').trim().split('\n').filter(Boolean).pop();
    } catch {
      return undefined;
    }
  }

  /** Overruns and drops per CPU since the start (per_cpu/cpuN/stats). */
  overruns(): number {
    let n = 0;
    try {
      for (const cpu of readdirSync(`${this.path}/per_cpu`)) {
        const stats = readFileSync(`${this.path}/per_cpu/${cpu}/stats`, 'utf8');
        for (const m of stats.matchAll(/^(?:overrun|dropped events): (\d+)/gm)) n += Number(m[1]);
      }
    } catch {
      // An instance being removed has no stats; nothing more to count.
    }
    return n;
  }

  /** Stops tracing and removes the instance (idempotent, synchronous: it also runs from the exit handler). */
  remove(): void {
    if (this.removed) return;
    this.removed = true;
    process.off('exit', this.onExit);
    if (this.pipeFd !== undefined) {
      try {
        writeFileSync(`${this.path}/trace_marker`, 'kleak-exit'); // wakes a blocked read
        closeSync(this.pipeFd);
      } catch {
        // already closed
      }
      this.pipeFd = undefined;
    }
    for (const fd of this.rawFds.splice(0)) {
      try {
        closeSync(fd);
      } catch {
        // already closed
      }
    }
    try {
      writeFileSync(`${this.path}/tracing_on`, '0');
    } catch {
      // already gone
    }
    for (let attempt = 0; attempt < 50; attempt++) {
      try {
        rmdirSync(this.path);
        return;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') return;
        // EBUSY while a reader still has trace_pipe open: it is being closed.
        const until = Date.now() + 20;
        while (Date.now() < until) {
          /* a short synchronous wait: this also runs inside process 'exit' */
        }
      }
    }
    say(`kleak: could not remove the tracefs instance ${this.path}; remove it with: rmdir ${this.path}\n`);
  }
}

/** Whether pid is a running kleak (a node process whose command line names kleak's cli). */
function kleakRuns(pid: number): boolean {
  try {
    return /kleak|cli\.js/.test(readFileSync(`/proc/${pid}/cmdline`, 'latin1'));
  } catch {
    return false;
  }
}

/**
 * The watchdog's program: it waits for end of file on its stdin, a pipe whose writing end only kleak holds, so the
 * end comes when kleak is gone however it went (SIGKILL, OOM kill); then it switches the instance off and removes
 * it, retrying while the dead kleak's files are being closed (or trace-cmd, which kleak started, is ending). The
 * path comes in as $1, never as program text. After a clean stop the instance is already gone and it does nothing.
 */
const WATCHDOG = [
  'cat >/dev/null',
  '[ -d "$1" ] || exit 0',
  'echo 0 >"$1/tracing_on" 2>/dev/null',
  'i=0',
  'while [ $i -lt 100 ]; do rmdir "$1" 2>/dev/null && exit 0; [ -d "$1" ] || exit 0; sleep 0.1; i=$((i+1)); done',
].join('\n');

/**
 * Starts the watchdog of the instance at `path` (see WATCHDOG): a `sh` of its own session, so that a kill of
 * kleak's process group does not take it too. Best effort: without sh, the next live run removes the instance.
 */
export function guardInstance(path: string): void {
  try {
    const child = spawn('/bin/sh', ['-c', WATCHDOG, 'kleak-watchdog', path], { stdio: ['pipe', 'ignore', 'ignore'], detached: true });
    child.on('error', () => undefined);
    child.stdin.on('error', () => undefined);
    child.unref();
    // The pipe must not keep kleak's event loop alive; it stays open until kleak exits.
    (child.stdin as unknown as { unref?: () => void }).unref?.();
  } catch {
    // No watchdog: removeStale on the next run still removes the instance.
  }
}
