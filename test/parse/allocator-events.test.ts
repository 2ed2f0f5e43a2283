import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import { FtraceTextParser } from '../../src/parse/ftrace-text.js';
import { tracePipe } from '../../src/parse/trace-pipe.js';
import { parseLines } from '../helpers/collect.js';

// Lines from recordings/alloc7-29-11.pipe.gz and alloc5-23-13.report.gz (this VM, Linux 6.18).
const VMALLOC_ALLOC = '         python3-4272    [001] ..... 11578.201530: alloc_vmap_area: va_start: 18446683600596709376 size=1056768 align=1 vstart=0xffffc90000000000 vend=0xffffe8ffffffffff failed=0';
const VMALLOC_STACK = [
  '         python3-4272    [001] ..... 11578.201538: <stack trace>',
  ' => trace_event_raw_event_alloc_vmap_area',
  ' => alloc_vmap_area',
  ' => __get_vm_area_node',
  ' => __vmalloc_node_range_noprof',
  ' => __bpf_map_area_alloc',
  ' => array_map_alloc',
  ' => map_create',
];
// 18446683600596709376 = 0xffffc90001973000
const VMALLOC_FREE = '     kworker/0:2-30869   [000] ..... 11580.047682: free_vmap_area_noflush: va_start=0xffffc90001973000 nr_lazy=1074 nr_lazy_max=16384';

describe('vmalloc, page and percpu tracepoints in ftrace text', () => {
  it('pairs a vmalloc area printed in decimal with its free printed in hex, named by the first frame outside vmalloc', () => {
    const c = parseLines(tracePipe, [VMALLOC_ALLOC, ...VMALLOC_STACK, VMALLOC_FREE]);
    expect(c.badLines).toEqual([]);
    expect(c.events).toHaveLength(2);
    expect(c.events[0]).toMatchObject({ kind: 'alloc', allocator: 'vmalloc', cache: 'vmalloc', ptr: 'ffffc90001973000', callSite: '__bpf_map_area_alloc', bytesAlloc: 1056768, pid: 4272, comm: 'python3' });
    expect(c.events[0]!.stack).toContain('map_create');
    expect(c.events[1]).toMatchObject({ kind: 'free', allocator: 'vmalloc', ptr: 'ffffc90001973000' });
    expect(c.stacks).toEqual([]); // the stack went into the event, not to the last slab object of the CPU
  });

  it('pages: the size from the order, frees by struct page (also batched); the stack comes after another CPU\'s line', () => {
    const c = parseLines(tracePipe, [
      '         python3-4272    [000] ..... 11578.3: mm_page_alloc: page=ffffea000411b300 pfn=0x1046cc order=2 migratetype=0 gfp_flags=GFP_KERNEL_ACCOUNT',
      '         python3-4272    [000] ..... 11578.3: <stack trace>',
      ' => trace_event_raw_event_mm_page_alloc',
      ' => __alloc_frozen_pages_noprof',
      ' => alloc_pages_mpol',
      ' => anon_pipe_write',
      ' => vfs_write',
      '         python3-4272    [000] d..1. 11578.4: mm_page_free_batched: page=ffffea000411b300 pfn=0x1046cc order=0',
      '         python3-4272    [001] ..... 11578.5: mm_page_alloc: page=ffffea000411b340 pfn=0x1046cd order=0 migratetype=0 gfp_flags=GFP_KERNEL',
    ]);
    expect(c.badLines).toEqual([]);
    expect(c.events.map((e) => [e.kind, e.ptr, e.callSite, e.bytesAlloc])).toEqual([
      ['alloc', 'ffffea000411b300', 'anon_pipe_write', 16384],
      ['free', 'ffffea000411b300', '', undefined],
      ['alloc', 'ffffea000411b340', '(page: no stack)', 4096],
    ]);
  });

  it('a live reader can see another CPU\'s lines between an event and its stack: the stack still names the caller', () => {
    const c = parseLines(tracePipe, [
      '         python3-4272    [001] ..... 11578.201530: alloc_vmap_area: va_start: 18446683600596709376 size=1056768 align=1 vstart=0xffffc90000000000 vend=0xffffe8ffffffffff failed=0',
      '     kworker/0:2-30869   [000] ..... 11578.201531: mm_page_free: page=ffffea0004e10400 pfn=0x138410 order=0',
      '     kworker/0:2-30869   [000] ..... 11578.201532: free_vmap_area_noflush: va_start=0xffffc90000c5d000 nr_lazy=0 nr_lazy_max=32768',
      ...VMALLOC_STACK,
      // freed at once on another CPU, while its allocation waited for a stack that never came
      '         python3-4272    [001] ..... 11578.3: mm_page_alloc: page=ffffea000411b340 pfn=0x1046cd order=0 migratetype=0 gfp_flags=GFP_KERNEL',
      '           <...>-9       [000] d..1. 11578.4: mm_page_free: page=ffffea000411b340 pfn=0x1046cd order=0',
    ]);
    expect(c.badLines).toEqual([]);
    const allocs = c.events.filter((e) => e.kind === 'alloc');
    expect(allocs[0]).toMatchObject({ allocator: 'vmalloc', callSite: '__bpf_map_area_alloc' });
    const page = c.events.findIndex((e) => e.ptr === 'ffffea000411b340' && e.kind === 'alloc');
    const pageFree = c.events.findIndex((e) => e.ptr === 'ffffea000411b340' && e.kind === 'free');
    expect(page).toBeGreaterThanOrEqual(0);
    expect(page).toBeLessThan(pageFree);
  });

  it('percpu: call site and bytes_alloc as printed; trace-cmd\'s 0x pointers pair with trace_pipe\'s bare ones', () => {
    const c = parseLines(tracePipe, [
      '         python3-4331  [000] ..... 11583.088482: percpu_alloc_percpu: call_site=bpf_map_alloc_percpu+0x5a/0xd0 reserved=0 is_atomic=0 size=8 align=8 base_addr=ffffe8fffe400000 off=4328 ptr=000060795a2f80e8 bytes_alloc=32 gfp_flags=GFP_KERNEL_ACCOUNT',
      '           <...>-4269    [001] d..1. 11579.942829: percpu_free_percpu: base_addr=ffffe8fffe400000 off=4328 ptr=0x60795a2f80e8',
    ]);
    expect(c.badLines).toEqual([]);
    expect(c.events[0]).toMatchObject({ kind: 'alloc', allocator: 'percpu', callSite: 'bpf_map_alloc_percpu+0x5a', bytesAlloc: 32, ptr: '000060795a2f80e8' });
    const e = new Engine();
    const p = new FtraceTextParser(e);
    p.line('         python3-4331  [000] ..... 1.0: percpu_alloc_percpu: call_site=bpf_map_alloc_percpu+0x5a/0xd0 reserved=0 is_atomic=0 size=8 align=8 base_addr=ffffe8fffe400000 off=4328 ptr=000060795a2f80e8 bytes_alloc=32 gfp_flags=GFP_KERNEL_ACCOUNT', 1);
    p.line('           <...>-4269    [001] d..1. 2.0: percpu_free_percpu: base_addr=ffffe8fffe400000 off=4328 ptr=0x60795a2f80e8', 2);
    p.end();
    expect(e.totals.matchedFrees).toBe(1);
    expect(e.totals.outstanding).toBe(0);
  });

  it('a failed vmalloc is no allocation; malformed fields are bad lines with their numbers, never wrong values', () => {
    const c = parseLines(tracePipe, [
      '         python3-1    [001] ..... 1.0: alloc_vmap_area: va_start: 0 size=4096 align=1 vstart=0xffffc90000000000 vend=0xffffe8ffffffffff failed=1',
      '         python3-1    [001] ..... 1.1: alloc_vmap_area: va_start: 18446683600596709376 size=4096bytes align=1 failed=0',
      '         python3-1    [001] ..... 1.2: mm_page_alloc: page=ffffea000411b340 pfn=0x1046cd order=x migratetype=0',
      '         python3-1    [001] ..... 1.3: percpu_free_percpu: base_addr=ffffe8fffe400000 off=4328',
      '         python3-1    [001] ..... 1.4: free_vmap_area_noflush: va_start=0xzz nr_lazy=0',
    ]);
    expect(c.events).toEqual([]);
    expect(c.badLines.map((b) => b.lineNo)).toEqual([2, 3, 4, 5]);
  });

  it('the engine groups them by caller and allocator, and says when pages back vmalloc areas counted too', () => {
    const e = new Engine();
    const p = new FtraceTextParser(e);
    [VMALLOC_ALLOC, ...VMALLOC_STACK,
      '         python3-4272    [001] ..... 11578.3: mm_page_alloc: page=ffffea000411b300 pfn=0x1046cc order=0 migratetype=0 gfp_flags=GFP_KERNEL',
      '         python3-4272    [001] ..... 11578.3: <stack trace>',
      ' => __alloc_pages_noprof',
      ' => __vmalloc_node_range_noprof',
      ' => __bpf_map_area_alloc',
    ].forEach((l, i) => p.line(l, i + 1));
    p.end();
    const r = e.report({ kind: 'replay' });
    expect(r.sites.map((s) => [s.function, s.allocator, s.outstanding])).toEqual([
      ['__bpf_map_area_alloc', 'vmalloc', 1],
      ['__vmalloc_node_range_noprof', 'page', 1],
    ]);
    expect(r.notices.some((n) => /vmalloc's own/.test(n.text))).toBe(true);
  });
});
