// /proc/vmallocinfo captured in a loop (`while sleep 60; do date; cat /proc/vmallocinfo; done > vm.txt`): dumps one
// after another; a line that is not an area (a separator, `date` output) ends one — the addresses cannot, as they
// are hashed unless kptr_restrict allows. One file without separators is one reading. Each dump is a reading of
// the areas by caller, module and type (kernel/vmallocinfo.ts reads the lines).

import { parseVmallocinfo } from '../kernel/vmallocinfo.js';
import type { RecordFormat } from './format.js';
import { timeOf } from './format.js';

/** Areas of one reading kept at most. */
const MAX_AREAS = 1_000_000;

const AREA = /^0x[0-9a-f]+-0x[0-9a-f]+\s+\d+\s/;

export const vmallocinfoSeries: RecordFormat = {
  name: 'vmallocinfo',
  describe: '/proc/vmallocinfo dumps',
  sniff: (head) => head.filter((l) => AREA.test(l)).length >= 2,
  reader(bad, emit) {
    let lines: string[] = [];
    let first = 0;
    let ts: number | undefined;
    const close = () => {
      if (lines.length === 0) return;
      const r = parseVmallocinfo(lines.join('\n'));
      for (const n of r.badLines) bad(first + n, 'not a vmallocinfo area (START-END SIZE CALLER … TYPE)');
      emit({
        ...(ts !== undefined ? { ts } : {}),
        sites: r.groups.map((g) => ({ key: `${g.caller} ${g.module ?? ''} ${g.type}`, label: g.caller, ...(g.module ? { module: g.module } : {}), where: g.type, count: g.areas, bytes: g.bytes })),
      });
      lines = [];
      ts = undefined;
    };
    const line = (line: string, lineNo: number) => {
      if (line.trim() === '') return;
      if (AREA.test(line)) {
        if (lines.length === 0) first = lineNo - 1;
        // A reading is parsed whole: bounded (a real one has thousands of areas).
        if (lines.length < MAX_AREAS) lines.push(line);
        else bad(lineNo, `past ${MAX_AREAS.toLocaleString('en-US')} areas in one reading: skipped`);
        return;
      }
      close();
      ts = timeOf(line);
    };
    return { line, end: close };
  },
};
