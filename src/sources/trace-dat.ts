// A trace.dat file becomes `trace-cmd report` text by running trace-cmd (via execa); kleak reads its stdout as it
// comes, so on two cores the replay takes about as long as trace-cmd alone.

import { execa, type ResultPromise } from 'execa';
import type { Readable } from 'node:stream';
import { EnvironmentError, InputError } from '../errors.js';
import { onPath } from './which.js';

/**
 * trace-cmd writes its report through stdio in 4 KiB pieces: into a pipe that costs it ~20% over writing to
 * /dev/null (scripts/bench-replay, 2.4M lines: 6.0-6.5 s against 5.2 s). stdbuf (coreutils) gives it a 4 MiB
 * buffer, which takes back about half of that.
 */
function reportCommand(path: string): [string, string[]] {
  const args = ['report', '-i', path];
  return onPath('stdbuf') && onPath('trace-cmd') ? ['stdbuf', ['-o', '4M', 'trace-cmd', ...args]] : ['trace-cmd', args];
}

export function traceCmdReportStream(path: string): { stream: Readable; bytesRead: () => number; done: Promise<void>; close: () => void } {
  const [cmd, args] = reportCommand(path);
  const child: ResultPromise = execa(cmd, args, {
    stdout: 'pipe',
    stderr: 'pipe',
    buffer: { stdout: false, stderr: true },
    reject: false,
  });
  const done = child.then((r) => {
    if ((r as { code?: string }).code === 'ENOENT' || /ENOENT/.test(String(r.message ?? ''))) {
      throw new EnvironmentError(
        `reading ${path} (a trace.dat file) needs trace-cmd, which is not installed.`,
        'Install it (apt-get install trace-cmd), or run `trace-cmd report -i FILE > FILE.report` on a host that has it and replay that text.',
      );
    }
    if (r.exitCode !== 0 && !r.isTerminated) {
      const why = String(r.stderr ?? '').trim().split('\n').filter(Boolean).pop() ?? `exit code ${r.exitCode}`;
      throw new InputError(`trace-cmd could not read ${path}: ${why}.`);
    }
  });
  return {
    stream: child.stdout!,
    bytesRead: () => 0,
    done,
    close: () => child.kill(),
  };
}
