import { describe, expect, it } from 'vitest';
import { parseFtraceHeader, parseLostLine } from '../../src/parse/ftrace-line.js';

describe('parseFtraceHeader', () => {
  it('reads a trace-cmd 3.1 line with an instance prefix and no flags column', () => {
    const h = parseFtraceHeader('kleak-rec-2146:          python3-2151  [001]   238.398557: kmalloc:              (user_preparse+0x2f) call_site=user_preparse+0x2f ptr=0xffff888102654000 bytes_req=4024 bytes_alloc=4096 gfp_flags=GFP_KERNEL node=-1 accounted=false');
    expect(h).toMatchObject({ instance: 'kleak-rec-2146', comm: 'python3', pid: 2151, cpu: 1, ts: 238.398557, event: 'kmalloc' });
  });

  it('reads a trace_pipe line with a 5-character flags column', () => {
    const h = parseFtraceHeader('         python3-8470    [000] .....  5261.833501: kmalloc: call_site=do_epoll_create+0x2d/0x1b0 ptr=0000000066e5333a bytes_req=208');
    expect(h).toMatchObject({ instance: undefined, comm: 'python3', pid: 8470, cpu: 0, ts: 5261.833501, event: 'kmalloc' });
  });

  it('keeps colons, dashes and spaces in comm (split on the last dash before the pid)', () => {
    expect(parseFtraceHeader('   test:.sh-1299    [004] .....  2886.040608: kmem_cache_free: call_site=putname+0xa4/0xc8 ptr=000000000f4d22f4 name=names_cache'))
      .toMatchObject({ comm: 'test:.sh', pid: 1299, cpu: 4, event: 'kmem_cache_free' });
    expect(parseFtraceHeader('  kworker/u4:2-x y-77 [001] .... 1.5: kfree: call_site=a ptr=1')).toMatchObject({ comm: 'kworker/u4:2-x y', pid: 77 });
  });

  it('reads 4-character flags, <...> comms and <idle>', () => {
    expect(parseFtraceHeader('           <...>-39771 [000] .... 312444.141944: kmem_cache_alloc: call_site=getname_flags+0x4f/0x1f0 ptr=00000000873301d3'))
      .toMatchObject({ comm: '<...>', pid: 39771, ts: 312444.141944 });
    expect(parseFtraceHeader('          <idle>-0     [003] ..s. 312444.111637: kmem_cache_alloc: x')).toMatchObject({ comm: '<idle>', pid: 0, cpu: 3 });
  });

  it('reads a trace-cmd 2.x line (no flags) and a record-tgid line', () => {
    expect(parseFtraceHeader('          <idle>-0     [003] 58549.289092: kernel_stack:         <stack trace>')).toMatchObject({ cpu: 3, event: 'kernel_stack' });
    expect(parseFtraceHeader('            bash-1234  (   1234) [001] ..... 10.5: kfree: call_site=x ptr=0')).toMatchObject({ comm: 'bash', pid: 1234, cpu: 1 });
  });

  it('reads a body-less <stack trace> record', () => {
    expect(parseFtraceHeader('         python3-2385    [001] .....   268.398475: <stack trace>')).toMatchObject({ event: '<stack trace>', cpu: 1 });
  });

  it.each([
    [''],
    ['cpus=2'],
    ['=> trace_event_raw_event_kmalloc (ffffffff815c8de1)'],
    ['garbage without structure'],
    ['  bash-12 [00x] ..... 1.0: kfree: ptr=1'],
    ['  bash [001] ..... 1.0: kfree: ptr=1'],
    ['  bash-12 [001] ..... notatime: kfree: ptr=1'],
  ])('returns undefined for %j', (line) => {
    expect(parseFtraceHeader(line)).toBeUndefined();
  });
});

describe('parseLostLine', () => {
  it('reads all three spellings', () => {
    expect(parseLostLine('CPU:1 [LOST 23777 EVENTS]')).toEqual({ cpu: 1, count: 23777 });
    expect(parseLostLine('kleak-rec-2608: CPU:0 [870 EVENTS DROPPED]')).toEqual({ cpu: 0, count: 870 });
    expect(parseLostLine('CPU:3 [EVENTS DROPPED]')).toEqual({ cpu: 3, count: 1 });
    expect(parseLostLine('CPU:3 something else')).toBeUndefined();
  });
});
