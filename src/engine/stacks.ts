// Kernel stacks as kleak shows them: the tracing machinery and allocator entry points at the top are noise.

// Unsymbolised leading frames (a raw hex address) are the tracer's own JIT code and trampolines; then the slab,
// vmalloc, page and percpu allocators' entry points.
const MACHINERY =
  /^(?:[0-9a-f]{8,16}|trace_event_raw_event_\w+|perf_trace_\w+|__traceiter_\w+|__bpf_trace_\w+|bpf_trace_run\d+|bpf_prog_\w+|trace_call_bpf|__kmalloc\w*|kmalloc_\w*noprof|kmalloc_trace\w*|__kmem_cache_alloc\w*|kmem_cache_alloc\w*|slab_alloc\w*|__slab_alloc\w*|___slab_alloc|kmalloc_large\w*|__kvmalloc_node\w*|kvmalloc_node\w*|__do_kmalloc_node\w*|kmalloc_node\w*|alloc_vmap_area|__get_vm_area\w*|get_vm_area\w*|__vmalloc\w*|vmalloc\w*|vzalloc\w*|__alloc_pages\w*|alloc_pages\w*|__alloc_frozen_pages\w*|get_page_from_freelist|post_alloc_hook|prep_new_page|__folio_alloc\w*|folio_alloc\w*|alloc_pages_mpol\w*|pcpu_alloc\w*|__alloc_percpu\w*)$/;

/** Drops the leading frames that belong to the tracer and the allocator; keeps at least one frame. */
export function trimTracingFrames(frames: readonly string[]): string[] {
  let i = 0;
  while (i < frames.length - 1 && MACHINERY.test(frames[i]!)) i++;
  return frames.slice(i);
}
