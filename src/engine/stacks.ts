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

/**
 * Frames of an allocator's own machinery (and of the tracing that sees it): a vmalloc area or a page has no call
 * site, so it is attributed to the first frame of its stack that is not one of these.
 */
export const ALLOCATOR_MACHINERY: Record<'vmalloc' | 'page', RegExp> = {
  vmalloc: /^(?:bpf_prog_\w+|bpf_trace_run\d+|__bpf_trace_\w+|__traceiter_\w+|trace_call_bpf|trace_event_raw_event_\w+|perf_trace_\w+|alloc_vmap_area|__get_vm_area\w*|get_vm_area\w*|__vmalloc\w*|vmalloc\w*|vzalloc\w*|vmap\w*|__kvmalloc\w*|kvmalloc\w*|kvzalloc\w*|execmem\w*|__execmem\w*)$/,
  page: /^(?:bpf_prog_\w+|bpf_trace_run\d+|__bpf_trace_\w+|__traceiter_\w+|trace_call_bpf|trace_event_raw_event_\w+|perf_trace_\w+|__alloc_pages\w*|alloc_pages\w*|__alloc_frozen_pages\w*|alloc_frozen_pages\w*|get_page_from_freelist|post_alloc_hook|prep_new_page|__folio_alloc\w*|folio_alloc\w*|__get_free_pages\w*|get_zeroed_page\w*|rmqueue\w*|__rmqueue\w*|alloc_slab_page|allocate_slab|new_slab|___slab_alloc|__slab_alloc\w*|vma_alloc_folio\w*|alloc_anon_folio|__page_cache_alloc\w*|filemap_alloc_folio\w*)$/,
};

/**
 * The caller a vmalloc area or page is attributed to: the first frame of its stack (innermost first, function
 * names with an optional " [module]") that is neither the allocator nor the tracing; undefined when none is.
 */
export function allocatorCaller(allocator: 'vmalloc' | 'page', frames: readonly string[]): string | undefined {
  const machinery = ALLOCATOR_MACHINERY[allocator];
  for (const f of frames) {
    const sp = f.indexOf(' ');
    const name = sp < 0 ? f : f.slice(0, sp);
    // Unsymbolised frames are the tracer's own JIT code and trampolines.
    if (/^(?:0x)?[0-9a-f]{8,16}$/.test(name) || machinery.test(name)) continue;
    return f;
  }
  return undefined;
}
