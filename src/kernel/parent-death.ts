// kleak stops when whatever started it goes away: npm/npx (which do not pass SIGTERM on), a wrapper shell, a
// closed ssh session. prctl(PR_SET_PDEATHSIG) has the kernel send kleak SIGTERM when its parent exits, and
// SIGTERM is already a clean stop (tracing detached, instance removed, recording closed).

import { createRequire } from 'node:module';

const PR_SET_PDEATHSIG = 1;
const SIGTERM = 15;

/** Asks for SIGTERM when the parent exits; true if the kernel took it. Best effort: no koffi, no libc → false. */
export function stopWithParent(): boolean {
  const parent = process.ppid;
  try {
    const koffi = createRequire(import.meta.url)('koffi') as typeof import('koffi');
    const prctl = koffi.load('libc.so.6').func('int prctl(int option, unsigned long arg2, unsigned long arg3, unsigned long arg4, unsigned long arg5)') as (...a: number[]) => number;
    if (prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0) !== 0) return false;
  } catch {
    return false;
  }
  // The parent may have gone between our start and prctl: then no signal will come.
  if (process.ppid !== parent) process.kill(process.pid, 'SIGTERM');
  return true;
}
