// A slabinfo capture loop's output (`while sleep 1; do cat /proc/slabinfo; echo ===; done >> slabinfo.txt`): dumps of
// /proc/slabinfo one after another, each starting with its `slabinfo - version: 2.x` header, with separator lines
// (which may say when) between them. Each dump is a reading of every cache's active objects.

import type { RecordFormat } from './format.js';
import { dumpsReader } from './format.js';

const HEADER = /^slabinfo - version: \d+\.\d+\s*$/;

export const slabinfoSeries: RecordFormat = {
  name: 'slabinfo',
  describe: 'slabinfo dumps captured in a loop',
  sniff: (head) => head.some((l) => HEADER.test(l)),
  reader(bad, emit) {
    return dumpsReader(
      HEADER,
      (line) => {
        const f = line.trim().split(/\s+/);
        const [name, active, , size] = f;
        if (f.length < 6 || !/^\d+$/.test(active!) || !/^\d+$/.test(size!) || !/^[\w:.()/-]+$/.test(name!)) return undefined;
        return { key: name!, label: name!, count: Number(active), bytes: Number(active) * Number(size) };
      },
      bad, 'not a slabinfo row (name active_objs num_objs objsize …)',
      (line) => /^[=\-*#_\s]+$/.test(line),
      emit,
    );
  },
};
