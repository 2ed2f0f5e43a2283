// /proc/vmallocinfo captured in a loop (`while sleep 60; do date; cat /proc/vmallocinfo; done > vm.txt`): dumps one
// after another; a line that is not an area (a separator, `date` output) ends one — the addresses cannot, as they
// are hashed unless kptr_restrict allows. One file without separators is one reading. Each dump is a reading of
// the areas by caller, module and type (kernel/vmallocinfo.ts reads the lines).

import { parseVmallocinfo } from '../kernel/vmallocinfo.js';
import type { RecordFormat } from './format.js';
import { timeOf } from './format.js';
import type { Reading } from './model.js';

const AREA = /^0x[0-9a-f]+-0x[0-9a-f]+\s+\d+\s/;

export const vmallocinfoSeries: RecordFormat = {
  name: 'vmallocinfo',
  describe: '/proc/vmallocinfo dumps',
  sniff: (head) => head.filter((l) => AREA.test(l)).length >= 2,
  read(text, bad) {
    const readings: Reading[] = [];
    let lines: string[] = [];
    let first = 0;
    let ts: number | undefined;
    const close = () => {
      if (lines.length === 0) return;
      const r = parseVmallocinfo(lines.join('\n'));
      for (const n of r.badLines) bad(first + n, 'not a vmallocinfo area (START-END SIZE CALLER … TYPE)');
      readings.push({
        ...(ts !== undefined ? { ts } : {}),
        sites: r.groups.map((g) => ({ key: `${g.caller} ${g.module ?? ''} ${g.type}`, label: g.caller, ...(g.module ? { module: g.module } : {}), where: g.type, count: g.areas, bytes: g.bytes })),
      });
      lines = [];
      ts = undefined;
    };
    text.split('\n').forEach((raw, i) => {
      const line = raw.replace(/\r$/, '');
      if (line.trim() === '') return;
      if (AREA.test(line)) {
        if (lines.length === 0) first = i;
        lines.push(line);
        return;
      }
      close();
      ts = timeOf(line);
    });
    close();
    return readings;
  },
};
