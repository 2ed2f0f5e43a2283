import { describe, expect, it } from 'vitest';
import { traceCmdReport } from '../../src/parse/trace-cmd-report.js';
import { tracePipe } from '../../src/parse/trace-pipe.js';
import { detectFormat } from '../../src/parse/formats.js';
import { parseLines } from '../helpers/collect.js';

// Lines pasted from recordings/keys53-stacks.report.gz and lost-report.report.gz (trace-cmd 3.1.6, this VM),
// and from docs/formats.md (trace-cmd 2.x and newer builds).
const V3_WITH_STACK = `cpus=2
kleak-rec-2328:          python3-2334  [001]   266.704512: kmalloc:              (user_preparse+0x2f) call_site=user_preparse+0x2f ptr=0xffff88810aa14000 bytes_req=4024 bytes_alloc=4096 gfp_flags=GFP_KERNEL node=-1 accounted=false
kleak-rec-2328:          python3-2334  [001]   266.704545: kernel_stack:         <stack trace >
=> trace_event_raw_event_kmalloc (ffffffff815c8de1)
=> __kmalloc_noprof (ffffffff81630014)
=> user_preparse (ffffffff81a7f28f)
=> __key_create_or_update (ffffffff81a772f2)
=> key_create_or_update (ffffffff81a77670)
=> __do_sys_add_key (ffffffff81a79c96)
=> do_syscall_64 (ffffffff821ef691)
=> entry_SYSCALL_64_after_hwframe (ffffffff81000130)
kleak-rec-2328:          python3-2334  [001]   266.704550: kfree:                (key_user_lookup+0x158) call_site=key_user_lookup+0x158 ptr=(nil)
kleak-rec-2328:          python3-2334  [001]   266.704555: kfree:                (__do_sys_add_key+0x186) call_site=__do_sys_add_key+0x186 ptr=0xffff88810aa13000`;

describe('trace-cmd report', () => {
  it('reads a 3.1 kmalloc line with the instance prefix and the (func+0x) plugin prefix', () => {
    const c = parseLines(traceCmdReport, V3_WITH_STACK);
    expect(c.events[0]).toEqual({
      kind: 'alloc', ts: 266.704512, ptr: 'ffff88810aa14000', callSite: 'user_preparse+0x2f', tracepoint: 'kmalloc',
      pid: 2334, comm: 'python3', cpu: 1, bytesReq: 4024, bytesAlloc: 4096, cache: 'kmalloc-4096',
    });
    expect(c.badLines).toEqual([]);
  });

  it('ignores kfree of (nil) and reads kfree of a real pointer', () => {
    const c = parseLines(traceCmdReport, V3_WITH_STACK);
    expect(c.events.map((e) => `${e.kind}:${e.ptr}`)).toEqual(['alloc:ffff88810aa14000', 'free:ffff88810aa13000']);
  });

  it('emits a -T kernel_stack block for its CPU, frames by function', () => {
    const c = parseLines(traceCmdReport, V3_WITH_STACK);
    expect(c.stacks).toHaveLength(1);
    expect(c.stacks[0]!.cpu).toBe(1);
    expect(c.stacks[0]!.frames.slice(0, 3)).toEqual(['trace_event_raw_event_kmalloc', '__kmalloc_noprof', 'user_preparse']);
    expect(c.stacks[0]!.frames).toHaveLength(8);
  });

  it('reads a 2.x stack block ("<stack trace>", no flags column) and offsets in frames', () => {
    const c = parseLines(traceCmdReport, [
      '          <idle>-0     [003] 58549.289092: kernel_stack:         <stack trace>',
      '=> schedule (ffffffff814b260e)',
      '=> cpu_idle+0x1c  (ffffffff8100a38c)',
      '=> ffffffff81234567',
    ]);
    expect(c.stacks).toEqual([{ cpu: 3, frames: ['schedule', 'cpu_idle', 'ffffffff81234567'] }]);
  });

  it('reads a build with the interrupt-flags column and numeric gfp_flags', () => {
    const c = parseLines(traceCmdReport, '           sleep-89142 [001] ..... 162573.219401: kmalloc:              (tomoyo_find_next_domain+0x84) call_site=tomoyo_find_next_domain+0x84 ptr=0xffff892a176c0000 bytes_req=4096 bytes_alloc=4096 gfp_flags=0xd40 node=-1 accounted=false');
    expect(c.events[0]).toMatchObject({ callSite: 'tomoyo_find_next_domain+0x84', ptr: 'ffff892a176c0000', comm: 'sleep', cpu: 1 });
  });

  it('uses the plugin symbol when an old kernel prints call_site as hex', () => {
    const c = parseLines(traceCmdReport, '            bash-2571  [001]  1368.180276: kmalloc:              (getname_flags+0x4f) call_site=ffffffff8118b5cd ptr=0xffff88005ee19a80 bytes_req=64 bytes_alloc=64 gfp_flags=GFP_KERNEL');
    expect(c.events[0]).toMatchObject({ callSite: 'getname_flags+0x4f', bytesAlloc: 64, cache: 'kmalloc-64' });
  });

  it('counts dropped events with and without a count, with the instance prefix', () => {
    const c = parseLines(traceCmdReport, ['kleak-rec-2608: CPU:0 [870 EVENTS DROPPED]', 'CPU:1 [EVENTS DROPPED]']);
    expect(c.lostEvents).toEqual([{ count: 870, cpu: 0 }, { count: 1, cpu: 1 }]);
    expect(c.badLines).toEqual([]);
  });

  it('reads kmem_cache_alloc with name= and accounted kmalloc into kmalloc-cg', () => {
    const c = parseLines(traceCmdReport, [
      '         python3-3946  [000]   830.1: kmem_cache_alloc:     (alloc_buffer_head+0x1d) call_site=alloc_buffer_head+0x1d ptr=0xffff888100aa0000 name=buffer_head bytes_req=104 bytes_alloc=104 gfp_flags=GFP_NOFS node=-1 accounted=true',
      '         python3-3946  [000]   830.2: kmalloc:              (pipe_resize_ring+0x30) call_site=pipe_resize_ring+0x30 ptr=0xffff88813e20d000 bytes_req=2560 bytes_alloc=4096 gfp_flags=GFP_KERNEL_ACCOUNT|__GFP_ZERO node=-1 accounted=true',
    ]);
    expect(c.events.map((e) => e.cache)).toEqual(['buffer_head', 'kmalloc-cg-4096']);
  });

  it('skips header lines and other events, and reports malformed kmem lines with their number', () => {
    const c = parseLines(traceCmdReport, [
      'version = 6',
      'CPU 0 is empty',
      'cpus=2',
      '            bash-2571  [001]  1368.180276: sched_switch:         prev_comm=bash',
      '            bash-2571  [001]  1368.180277: kmalloc:              call_site=foo+0x1 bytes_req=1',
      '            bash-2571  [001]  1368.180278: kfree:                call_site=foo+0x1 ptr=zzzz',
      'utter garbage',
    ]);
    expect(c.events).toEqual([]);
    expect(c.badLines.map((b) => b.lineNo)).toEqual([5, 6, 7]);
  });

  it('is detected from its first lines, and raw trace_pipe text is not taken for it', () => {
    expect(detectFormat(V3_WITH_STACK.split('\n'))?.name).toBe('trace-cmd');
    expect(detectFormat(['         python3-8470    [000] .....  5261.833501: kmalloc: call_site=do_epoll_create+0x2d/0x1b0 ptr=0000000066e5333a bytes_req=208 bytes_alloc=256 gfp_flags=GFP_KERNEL|__GFP_ZERO node=-1 accounted=false'])?.name).toBe(tracePipe.name);
  });
});
