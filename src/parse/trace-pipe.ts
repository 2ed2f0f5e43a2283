// Raw tracefs text: `trace_pipe` or `trace` of a (sub)buffer, hashed or plain pointers, %pS or hex call sites,
// `<stack trace>` blocks from options/stacktrace or the stacktrace trigger, `CPU:N [LOST M EVENTS]`.

import type { TraceFormat } from '../event.js';
import { FtraceTextParser } from './ftrace-text.js';

export const tracePipe: TraceFormat = {
  name: 'trace-pipe',
  describe: 'raw tracefs trace_pipe text',
  sniff(head) {
    return head.some(
      (l) =>
        l.startsWith('# tracer:') ||
        /\[LOST \d+ EVENTS\]/.test(l) ||
        /: <stack trace>$/.test(l) ||
        /\] +\S+ +\d+\.\d+: (?:kmalloc|kfree|kmem_cache_\w+|kmalloc_node|kmem_cache_alloc_node): call_site=/.test(l) ||
        // Only a timestamp before the event (no task, pid, CPU or flags)
        /^\s*\d+\.\d+: +(?:kmalloc|kfree|kmem_cache_\w+|kmalloc_node|kmem_cache_alloc_node): +call_site=/.test(l) ||
        // An excerpt whose line prefix was trimmed when pasted
        /^\s*(?:kmalloc|kfree|kmem_cache_alloc|kmem_cache_free|kmalloc_node|kmem_cache_alloc_node): +call_site=\S+ +ptr=/.test(l) ||
        // The vmalloc, page and percpu tracepoints (trace-cmd report prints the same fields: one parser reads both)
        /\] +\S+ +\d+\.\d+: (?:alloc_vmap_area: va_start: \d|free_vmap_area_noflush: va_start=|mm_page_(?:alloc|free|free_batched): page=|percpu_(?:alloc|free)_percpu: )/.test(l),
    );
  },
  createParser: (sink, o) => new FtraceTextParser(sink, o),
};
