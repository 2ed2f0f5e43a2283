// The system's page size: a page allocation of order N is this << N bytes.

import { readFileSync } from 'node:fs';

export function pageSize(): number {
  try {
    const m = /^KernelPageSize:\s+(\d+) kB/m.exec(readFileSync('/proc/self/smaps', 'utf8'));
    if (m) return Number(m[1]) * 1024;
  } catch {
    // no smaps: the common size
  }
  return 4096;
}
