// A slabinfo capture loop's output (`while sleep 1; do cat /proc/slabinfo; echo ===; done >> slabinfo.txt`): dumps of
// /proc/slabinfo one after another, each starting with its `slabinfo - version: 2.x` header, with separator lines
// (which may say when) between them. Each dump is a reading of every cache's active objects.

import type { RecordFormat } from './format.js';
import { timeOf } from './format.js';
import type { Reading } from './model.js';

const HEADER = /^slabinfo - version: \d+\.\d+\s*$/;

export const slabinfoSeries: RecordFormat = {
  name: 'slabinfo',
  describe: 'slabinfo dumps captured in a loop',
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
      const f = line.trim().split(/\s+/);
      const [name, active, , size] = f;
      if (cur && f.length >= 6 && /^\d+$/.test(active!) && /^\d+$/.test(size!) && /^[\w:.()/-]+$/.test(name!)) {
        cur.sites.push({ key: name!, label: name!, count: Number(active), bytes: Number(active) * Number(size) });
        return;
      }
      const t = timeOf(line);
      if (t !== undefined) ts = t;
      else if (!/^[=\-*#_\s]+$/.test(line)) bad(i + 1, 'not a slabinfo row (name active_objs num_objs objsize …)');
    });
    return readings;
  },
};
