// /proc/allocinfo (CONFIG_MEM_ALLOC_PROFILING, 6.10+; ALLOCATORS.md): `allocinfo - version: 1.0` (2.0 adds optional
// key:value tags after the function), a `#` comment line, then `%12lli %8llu file:line [module] func:name` per
// allocation site. Both numbers are live: the difference between two readings is growth at file:line. Each
// header starts a reading; a separator line between dumps may say when.

import type { RecordFormat } from './format.js';
import { timeOf } from './format.js';
import type { Reading } from './model.js';

const HEADER = /^allocinfo - version: (\d+)\.(\d+)\s*$/;
const ROW = /^\s*(-?\d+)\s+(\d+)\s+(\S+:\d+)(?:\s+\[([\w-]+)\])?\s+func:(\S+)(?:\s+\S+:\S+)*\s*$/;

export const allocinfo: RecordFormat = {
  name: 'allocinfo',
  describe: '/proc/allocinfo dumps',
  sniff: (head) => head.some((l) => HEADER.test(l)),
  read(text, bad) {
    const readings: Reading[] = [];
    let cur: Reading | undefined;
    let ts: number | undefined;
    text.split('\n').forEach((raw, i) => {
      const line = raw.replace(/\r$/, '');
      if (HEADER.test(line)) {
        cur = { ...(ts !== undefined ? { ts } : {}), sites: [] };
        readings.push(cur);
        ts = undefined;
        return;
      }
      if (line.trim() === '' || line.startsWith('#')) return;
      const m = ROW.exec(line);
      if (m && cur) {
        const [, size, calls, where, module, fn] = m as unknown as [string, string, string, string, string | undefined, string];
        cur.sites.push({ key: `${where} ${module ?? ''}`, label: fn, ...(module ? { module } : {}), where, count: Number(calls), bytes: Number(size) });
        return;
      }
      const t = timeOf(line);
      if (t !== undefined) ts = t;
      else if (/^\s*-?\d/.test(line) || cur === undefined) bad(i + 1, 'not an allocinfo row (size calls file:line [module] func:name)');
    });
    return readings;
  },
};
