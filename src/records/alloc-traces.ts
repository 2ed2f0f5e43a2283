// SLUB alloc_traces (/sys/kernel/debug/slab/<cache>/alloc_traces; older /sys/kernel/slab/<cache>/alloc_calls; needs
// slub_debug=U; docs/formats.md): one entry per allocating location of the objects allocated now,
// `COUNT LOCATION [waste=T/E] age=MIN/AVG/MAX pid=A-B cpus=LIST [nodes=LIST]`, newer kernels with the stack below it,
// indented, and a blank line. Dumps one after another form a series; a reading ends at a separator line or when a
// location it already holds comes again. Objects are counted; bytes are not printed (waste= is slack, not size).

import type { RecordFormat } from './format.js';
import { timeOf } from './format.js';
import { SiteTally } from './model.js';

const ENTRY = /^\s*(\d+) ([\w.]+)\+0x[0-9a-f]+\/0x[0-9a-f]+(?: \[([\w-]+)\])?(?: waste=\d+\/\d+)? age=\d+\/\d+\/\d+ pid=\d+(?:-\d+)? cpus=[\d,-]*(?: nodes=[\d,-]*)?\s*$/;
const STACK_FRAME = /^\s+[\w.]+\+0x[0-9a-f]+\/0x[0-9a-f]+(?: \[[\w-]+\])?\s*$/;

export const allocTraces: RecordFormat = {
  name: 'alloc_traces',
  describe: 'SLUB alloc_traces dumps (slub_debug=U)',
  sniff: (head) => head.some((l) => ENTRY.test(l)),
  reader(bad, emit) {
    let cur = new SiteTally();
    let ts: number | undefined;
    const close = () => {
      if (cur.size > 0) emit(cur.reading(ts));
      cur = new SiteTally();
      ts = undefined;
    };
    const line = (line: string, lineNo: number) => {
      if (line.trim() === '') return;
      const m = ENTRY.exec(line);
      if (m) {
        const [, count, fn, module] = m as unknown as [string, string, string, string | undefined];
        const key = `${fn} ${module ?? ''}`;
        if (cur.has(key)) close();
        cur.add({ key, label: fn, ...(module ? { module } : {}), count: Number(count), bytes: 0 });
        return;
      }
      if (STACK_FRAME.test(line)) return;
      if (/^\s/.test(line)) return bad(lineNo, 'not an alloc_traces entry (COUNT LOCATION age=… pid=… cpus=…) or stack frame');
      close(); // a separator between dumps, which may say when
      ts = timeOf(line);
    };
    return { line, end: close };
  },
};
