// What BPF maps pin in the kernel, read from the owner's fdinfo (memlock: bytes charged for the map).

import { readdirSync, readFileSync } from 'node:fs';

/**
 * Bytes the BPF maps among a process's file descriptors hold: `fds` when given (kleak's own maps), else every fd
 * of `pid` that is a map (a tracer kleak started). Unreadable fdinfo makes the figure a lower bound.
 */
export function mapMemory(pid: number | 'self', fds?: readonly number[]): number {
  let list: readonly (number | string)[];
  try {
    list = fds ?? readdirSync(`/proc/${pid}/fdinfo`);
  } catch {
    return 0;
  }
  let total = 0;
  for (const fd of list) {
    try {
      const info = readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8');
      if (!/^map_type:/m.test(info)) continue;
      const m = /^memlock:\s+(\d+)/m.exec(info);
      if (m) total += Number(m[1]);
    } catch {
      // closed meanwhile, or unreadable
    }
  }
  return total;
}
