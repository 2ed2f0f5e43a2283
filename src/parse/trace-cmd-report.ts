// `trace-cmd report` text (2.x and 3.x; -T stack blocks; buffer-instance prefixes; [N EVENTS DROPPED]).
// trace.dat files are turned into this text by running `trace-cmd report -i` (sources/trace-dat.ts).

import type { TraceFormat } from '../event.js';
import { FtraceTextParser } from './ftrace-text.js';

export const traceCmdReport: TraceFormat = {
  name: 'trace-cmd',
  describe: '`trace-cmd report` text or a trace.dat file',
  sniff(head) {
    return head.some(
      (l) =>
        /^(?:[\w.-]+: )?\s*cpus=\d+$/.test(l) ||
        /^version = \d+$/.test(l) ||
        /\bkernel_stack: /.test(l) ||
        /EVENTS DROPPED\]/.test(l) ||
        // libtraceevent prints %p as 0x… and its kmem plugin puts "(func+0x…)" before call_site=
        /\] +(?:\S+ +)?\d+\.\d+: +(?:kmalloc|kfree|kmem_cache_\w+): +(?:\([^)]*\) )?call_site=\S+ ptr=(?:0x|\(nil\))/.test(l) ||
        // The same with only a timestamp before the event
        /^\s*\d+\.\d+: +(?:kmalloc|kfree|kmem_cache_\w+): +(?:\([^)]*\) )?call_site=\S+ ptr=(?:0x|\(nil\))/.test(l),
    );
  },
  createParser: (sink, o) => new FtraceTextParser(sink, o),
};
