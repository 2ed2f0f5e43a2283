// /proc/allocinfo (CONFIG_MEM_ALLOC_PROFILING, 6.10+; docs/formats.md): `allocinfo - version: 1.0` (2.0 adds optional
// key:value tags after the function), a `#` comment line, then `%12lli %8llu file:line [module] func:name` per
// allocation site. Both numbers are live: the difference between two readings is growth at file:line. Each
// header starts a reading; a separator line between dumps may say when.

import type { RecordFormat } from './format.js';
import { dumpsReader } from './format.js';

const HEADER = /^allocinfo - version: (\d+)\.(\d+)\s*$/;
const ROW = /^\s*(-?\d+)\s+(\d+)\s+(\S+:\d+)(?:\s+\[([\w-]+)\])?\s+func:(\S+)(?:\s+\S+:\S+)*\s*$/;

export const allocinfo: RecordFormat = {
  name: 'allocinfo',
  describe: '/proc/allocinfo dumps',
  sniff: (head) => head.some((l) => HEADER.test(l)),
  reader(bad, emit) {
    return dumpsReader(
      HEADER,
      (line) => {
        const m = ROW.exec(line);
        if (!m) return undefined;
        const [, size, calls, where, module, fn] = m as unknown as [string, string, string, string, string | undefined, string];
        return { key: `${where} ${module ?? ''}`, label: fn, ...(module ? { module } : {}), where, count: Number(calls), bytes: Number(size) };
      },
      bad, 'not an allocinfo row (size calls file:line [module] func:name)',
      // Before the first header any line is foreign; after it, only lines that start like a row are bad.
      (line, inDump) => inDump && !/^\s*-?\d/.test(line),
      emit,
    );
  },
};
