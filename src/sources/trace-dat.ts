// A trace.dat file becomes `trace-cmd report` text by running trace-cmd (via execa); kleak reads its stdout as it
// comes, so on two cores the replay takes about as long as trace-cmd alone.

import { execa, type ResultPromise } from 'execa';
import type { Readable } from 'node:stream';
import { EnvironmentError, InputError } from '../errors.js';
import { TRACEPOINTS } from '../event.js';
import { onPath } from './which.js';

/**
 * trace-cmd writes its report through stdio in 4 KiB pieces, which into a pipe costs it ~20% over writing to
 * /dev/null. stdbuf (coreutils) sets its buffer to the pipe's size, 64 KiB: one write fills the pipe while kleak
 * parses the previous one. Measured on a 2.4M-line trace.dat (scripts/bench-replay): kleak 6.3-7.2 s with 4 KiB
 * writes, 6.7 s with 4 MiB (trace-cmd then waits while kleak drains 4 MiB through the pipe, and the two take
 * turns), 5.4-5.8 s with 64 KiB, against 5.4-5.7 s for trace-cmd alone into /dev/null.
 */
function reportCommand(path: string, kmemPlugin: boolean): [string, string[]] {
  const args = ['report', ...(kmemPlugin ? [] : ['-n', 'kmem:*']), '-i', path];
  return onPath('stdbuf') && onPath('trace-cmd') ? ['stdbuf', ['-o', '64K', 'trace-cmd', ...args]] : ['trace-cmd', args];
}

const KMEM_EVENTS: ReadonlySet<string> = new Set(TRACEPOINTS);

/**
 * Whether trace-cmd's kmem plugin is needed to read the file: only when the recording kernel printed call sites as
 * raw addresses (call_site=%lx, before 5.x), which the plugin turns into "(func+0x…)". Otherwise kleak asks
 * trace-cmd to skip it (-n 'kmem:*'): the kernel's own format already names the function, and the plugin's ksym
 * lookups cost trace-cmd ~9% (2.4M lines: 5.0 s against 5.5 s). When the formats cannot be read, the plugin stays.
 */
export function kmemPluginNeeded(dumpEvents: string): boolean {
  let name = '';
  let kmemFormats = 0;
  for (const line of dumpEvents.split('\n')) {
    const n = /^name: (\S+)/.exec(line);
    if (n) name = n[1]!;
    else if (line.startsWith('print fmt:') && KMEM_EVENTS.has(name)) {
      if (!/call_site=%p[sS]/.test(line)) return true;
      kmemFormats++;
    }
  }
  return kmemFormats === 0;
}

async function readKmemPluginNeeded(path: string): Promise<boolean> {
  const r = await execa('trace-cmd', ['dump', '--events', '-i', path], { reject: false, timeout: 10_000 });
  return r.exitCode !== 0 || kmemPluginNeeded(String(r.stdout));
}

/** `what`: the input as the user named it (the path, or stdin when kleak spooled it). */
export async function traceCmdReportStream(path: string, what = path): Promise<{ stream: Readable; bytesRead: () => number; done: Promise<void>; close: () => void }> {
  const [cmd, args] = reportCommand(path, await readKmemPluginNeeded(path));
  const child: ResultPromise = execa(cmd, args, {
    stdout: 'pipe',
    stderr: 'pipe',
    buffer: { stdout: false, stderr: true },
    reject: false,
  });
  const done = child.then((r) => {
    if ((r as { code?: string }).code === 'ENOENT' || /ENOENT/.test(String(r.message ?? ''))) {
      throw new EnvironmentError(
        `reading ${what} (a trace.dat file) needs trace-cmd, which is not installed.`,
        'Install it (apt-get install trace-cmd), or run `trace-cmd report -i FILE > FILE.report` on a host that has it and replay that text.',
      );
    }
    if (r.exitCode !== 0 && !r.isTerminated) {
      const why = String(r.stderr ?? '').trim().split('\n').filter(Boolean).pop() ?? `exit code ${r.exitCode}`;
      throw new InputError(`trace-cmd could not read ${what}: ${why}.`);
    }
  });
  return {
    stream: child.stdout!,
    bytesRead: () => 0,
    done,
    close: () => child.kill(),
  };
}
