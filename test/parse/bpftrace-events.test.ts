import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { BpftraceEventsParser, bpftraceEvents } from '../../src/parse/bpftrace-events.js';
import { detectFormat } from '../../src/parse/formats.js';
import { Collector, parseLines } from '../helpers/collect.js';

// Real output of bpftrace 0.17 running bpftrace/kleak-events.bt and kleak-pairs.bt on this VM
// (recordings/bt-events19-stacks.out.gz, bt-pairs17-stacks.out.gz).
const EVENTS = `Attaching 3 probes...
A 2358478591236 1 12644 0xffff888208db2000 4000 4096 - __do_sys_add_key 0xffffffff81a79c23 python3

        __kvmalloc_node_noprof+771
        __do_sys_add_key+227
        do_syscall_64+113
        entry_SYSCALL_64_after_hwframe+118
A 2358478680370 1 12644 0xffff888208db3000 4024 4096 - user_preparse 0xffffffff81a7f28f python3

        __kmalloc_noprof+580
        user_preparse+47
        __key_create_or_update+514
F 2358478701181 1 12644 0xffff888208db2000`;

const PAIRS = `S 2351062180933 17 1
@site_frees[pipe_resize_ring]: 36
@site_frees[user_preparse]: 100

@site_fbytes[pipe_resize_ring]: 159744
@site_fbytes[user_preparse]: 409600

@site_allocs[pipe_resize_ring]: 39
@site_allocs[user_preparse]: 117
@site_allocs[user_preparse]: 3
@site_abytes[pipe_resize_ring]: 159744
@site_abytes[user_preparse]: 479232
@site_abytes[user_preparse]: 12288
@untracked: 0
@ptr[0xffff888208db7000]: (2350359037546, user_preparse, 4024, 4096, 12575, python3)
@ptr[0xffff888208db4000]: (2350359000280, user_preparse, 4024, 4096, 12575, my, odd comm)
@stk[0xffff888208db7000]: 
        __kmalloc_noprof+580
        user_preparse+47
        __key_create_or_update+514
E`;

describe("kleak's bpftrace output", () => {
  it('reads allocation and free records, with the stack that follows an allocation', () => {
    const c = parseLines(bpftraceEvents, EVENTS);
    expect(c.badLines).toEqual([]);
    expect(c.events.map((e) => [e.kind, e.ptr, e.callSite])).toEqual([
      ['alloc', 'ffff888208db2000', '__do_sys_add_key'],
      ['alloc', 'ffff888208db3000', 'user_preparse'],
      ['free', 'ffff888208db2000', ''],
    ]);
    expect(c.events[1]).toMatchObject({ ts: 2358.47868037, cpu: 1, pid: 12644, comm: 'python3', bytesReq: 4024, bytesAlloc: 4096, cache: 'kmalloc-4096', tracepoint: 'kmalloc' });
    expect(c.events[1]!.stack).toEqual(['__kmalloc_noprof', 'user_preparse', '__key_create_or_update']);
    expect(c.events[0]!.stack).toHaveLength(4);
  });

  it('reads a pairs snapshot: site counters summed per function, pointers, their stacks', () => {
    const c = parseLines(bpftraceEvents, PAIRS);
    expect(c.badLines).toEqual([]);
    expect(c.snapshots).toHaveLength(1);
    const s = c.snapshots[0]!;
    expect(s.ts).toBeCloseTo(2351.062180933, 6);
    expect(s.untracked).toBe(0);
    expect(s.sites.find((x) => x.callSite === 'user_preparse')).toMatchObject({ allocs: 120, frees: 100, outstanding: 20, outstandingBytes: 491520 - 409600 });
    // Printed while probes fire, frees first: an object in flight may count as outstanding, never below zero.
    expect(s.sites.find((x) => x.callSite === 'pipe_resize_ring')).toMatchObject({ outstanding: 3, outstandingBytes: 0 });
    expect(s.outstanding!.map((r) => [r.ptr, r.comm])).toEqual([['ffff888208db7000', 'python3'], ['ffff888208db4000', 'my, odd comm']]);
    expect(s.outstanding![0]!.stack).toEqual(['__kmalloc_noprof', 'user_preparse', '__key_create_or_update']);
    expect(s.outstanding![1]!.stack).toBeUndefined();
  });

  it('a snapshot cut short by SIGINT is dropped; the final one that follows counts', () => {
    const c = parseLines(bpftraceEvents, ['S 1000000000 3 1', '@site_allocs[user_preparse]: 3', 'S 2000000000 3 1', '@site_allocs[user_preparse]: 4', '@site_frees[user_preparse]: 1', 'E']);
    expect(c.badLines).toEqual([]);
    expect(c.snapshots).toHaveLength(1);
    expect(c.snapshots[0]).toMatchObject({ ts: 2, sites: [{ callSite: 'user_preparse', allocs: 4, frees: 1, outstanding: 3 }] });
  });

  it('a totals-only snapshot (too many pointers to list) has no pointer list', () => {
    const c = parseLines(bpftraceEvents, ['S 5000000000 250000 0', '@site_allocs[user_preparse]: 250000', 'E']);
    expect(c.snapshots[0]!.outstanding).toBeUndefined();
    expect(c.snapshots[0]!.sites[0]).toMatchObject({ callSite: 'user_preparse', outstanding: 250000 });
  });

  it('counts lost events and ignores bpftrace chatter and maps printed at exit', () => {
    const c = parseLines(bpftraceEvents, ['Attaching 4 probes...', 'Lost 123 events', '@untracked: 0', "WARNING: Total lost event count: 123"]);
    expect(c.lostEvents).toEqual([{ count: 123, cpu: undefined }]);
    expect(c.badLines).toEqual([]);
  });

  it('an unresolved ksym (hex) becomes a hex call site', () => {
    const c = parseLines(bpftraceEvents, 'A 1000000000 0 1 0xffff888100000000 8 8 - 0xffffffffc0a01234 0xffffffffc0a01234 modprobe');
    expect(c.events[0]!.callSite).toBe('ffffffffc0a01234');
  });

  it.each([['A 1 2'], ['F 1 2 3 zzz'], ['S x y z'], ['nonsense'], ['        frame_without_alloc+1']])('reports %j as bad, never throws', (line) => {
    expect(parseLines(bpftraceEvents, line).badLines).toHaveLength(1);
  });

  it('is detected from its first lines', () => {
    expect(detectFormat(EVENTS.split('\n'))?.name).toBe('bpftrace');
    expect(detectFormat(PAIRS.split('\n'))?.name).toBe('bpftrace');
  });
});

describe('bpftrace output with raw call sites (kleak names them from kallsyms, modules kept)', () => {
  // Lines as bpftrace 0.17 prints them on this VM: a u64 map key comes out signed, perf-mode frames carry addresses.
  const PAIRS = [
    'S 12000000000 0 1',
    '@site_allocs[-2122985142]: 423',
    '@site_frees[-2122985142]: 346',
    '@ptr[0xffff888104758000]: (11000000000, -2122985142, 200, 256, 6946, python3)',
    '@stk[0xffff888104758000]: ',
    '\tffffffff8164da2b __kvmalloc_node_noprof+779',
    '\tffffffff8175d14a timerfd_thing+42',
    '\tffffffff8225a6c1 do_syscall_64+113',
    '',
    'E',
  ];
  // A fake kallsyms: 0xffffffff8175d14a is in a module's function (this VM has no modules to load).
  const symbols = (a: bigint) =>
    a === 0xffffffff8175d14an ? 'drv_open+0x2a [mydrv]' : a === 0xffffffff8164da2bn ? '__kvmalloc_node_noprof+0x30b' : a === 0xffffffff8225a6c1n ? 'do_syscall_64+0x71' : undefined;

  it('names the signed decimal call site and the perf-mode frames, module included', () => {
    const c = new Collector();
    const p = new BpftraceEventsParser(c, symbols);
    PAIRS.forEach((l, i) => p.line(l, i + 1));
    p.end();
    expect(c.badLines).toEqual([]);
    const snap = c.snapshots[0]!;
    expect(snap.sites).toEqual([expect.objectContaining({ callSite: 'drv_open+0x2a [mydrv]', allocs: 423, frees: 346 })]);
    expect(snap.outstanding![0]).toMatchObject({ callSite: 'drv_open+0x2a [mydrv]', bytesAlloc: 256, comm: 'python3' });
    expect(snap.outstanding![0]!.stack).toEqual(['__kvmalloc_node_noprof', 'drv_open [mydrv]', 'do_syscall_64']);
  });

  it('without symbols (a replay elsewhere) the addresses stay, in hex, for --kallsyms to name', () => {
    const c = parseLines(bpftraceEvents, PAIRS);
    expect(c.snapshots[0]!.sites[0]!.callSite).toBe('ffffffff8175d14a');
    expect(c.snapshots[0]!.outstanding![0]!.stack).toEqual(['__kvmalloc_node_noprof', 'timerfd_thing', 'do_syscall_64']);
  });
});

describe('bpftrace output of the vmalloc, page and percpu probes (kleak-pairs.bt with --alloc)', () => {
  // As bpftrace 0.17 printed them on this VM: (site, allocator) keys, stack-keyed sites over several lines, u64
  // pointer keys in signed decimal, and a 7th element in each pointer record (the allocator).
  const LINES = [
    'S 14193953477637 0 1',
    '@site_allocs[-2126417710, 3]: 71',
    '@site_frees[-2126417710, 3]: 60',
    '@site_abytes[-2126417710, 3]: 2272',
    '@site_fbytes[-2126417710, 3]: 1920',
    '@ssite_frees[',
    '\tffffffff816214cc alloc_vmap_area+1676',
    '\tffffffff8162439d __get_vm_area_node+205',
    '\tffffffff81624d75 __vmalloc_node_range_noprof+325',
    '\tffffffff814e3add __bpf_map_area_alloc+125',
    '\tffffffff81535ad2 array_map_alloc+146',
    ', 1]: 40',
    '@ssite_allocs[',
    '\tffffffff816214cc alloc_vmap_area+1676',
    '\tffffffff8162439d __get_vm_area_node+205',
    '\tffffffff81624d75 __vmalloc_node_range_noprof+325',
    '\tffffffff814e3add __bpf_map_area_alloc+125',
    '\tffffffff81535ad2 array_map_alloc+146',
    ', 1]: 47',
    '@ptr[-60473113956352]: (13930055646598, 0, 1056768, 1056768, 29795, python3, 1)',
    '@ptr[106093123354856]: (13930055646600, -2126417710, 8, 32, 29795, python3, 3)',
    '@stk[-60473113956352]: ',
    '\tffffffff816214cc alloc_vmap_area+1676',
    '\tffffffff8162439d __get_vm_area_node+205',
    '\tffffffff81624d75 __vmalloc_node_range_noprof+325',
    '\tffffffff814e3add __bpf_map_area_alloc+125',
    '',
    'E',
  ];

  it('names the stack-keyed vmalloc site by its first frame outside vmalloc; percpu by its call site; records carry their allocator', () => {
    const c = new Collector();
    const p = new BpftraceEventsParser(c, (a) => (a === 0xffffffff814170d2n ? 'bpf_map_alloc_percpu+0x5a' : undefined));
    LINES.forEach((l, i) => p.line(l, i + 1));
    p.end();
    expect(c.badLines).toEqual([]);
    const snap = c.snapshots[0]!;
    expect(snap.sites).toEqual(expect.arrayContaining([
      expect.objectContaining({ callSite: 'bpf_map_alloc_percpu+0x5a', allocator: 'percpu', allocs: 71, frees: 60, outstanding: 11, outstandingBytes: 352 }),
      expect.objectContaining({ callSite: '__bpf_map_area_alloc', allocator: 'vmalloc', allocs: 47, frees: 40, outstanding: 7 }),
    ]));
    const byPtr = new Map(snap.outstanding!.map((r) => [r.ptr, r]));
    expect(byPtr.get('ffffc90001863000')).toMatchObject({ allocator: 'vmalloc', callSite: '__bpf_map_area_alloc', bytesAlloc: 1056768, comm: 'python3', cache: 'vmalloc' });
    expect(byPtr.get('607dbaee40e8')).toMatchObject({ allocator: 'percpu', callSite: 'bpf_map_alloc_percpu+0x5a', bytesAlloc: 32, comm: 'python3' });
  });
});

describe('bpftrace output of kleak-pairs.bt with one site map (@site[site, allocator, what], @ssite)', () => {
  // The final snapshot of a real run on this VM (bpftrace 0.17, --alloc vmalloc,percpu --comm python3) while
  // scripts/workload-alloc.py held 3 BPF array maps of 1 MiB (vmalloc) and 2 per-CPU maps, after making and closing 4
  // and 3 more. Decimal keys are as bpftrace printed them (signed); 0xffffffff814e8ff9 is bpf_map_alloc_percpu+0x59.
  const LINES = readFileSync(new URL('fixtures/bpftrace-pairs-alloc.txt', import.meta.url), 'utf8').split('\n');

  it('adds each counter by its "what" number: the held areas and chunks come out exact', () => {
    const c = new Collector();
    const p = new BpftraceEventsParser(c, (a) => (a === 0xffffffff814e8ff9n ? 'bpf_map_alloc_percpu+0x59' : undefined));
    LINES.forEach((l, i) => p.line(l, i + 1));
    p.end();
    expect(c.badLines).toEqual([]);
    const snap = c.snapshots[0]!;
    expect(snap.sites).toEqual(expect.arrayContaining([
      expect.objectContaining({ callSite: '__bpf_map_area_alloc', allocator: 'vmalloc', allocs: 7, frees: 4, outstanding: 3, outstandingBytes: 3 * 1056768 }),
      expect.objectContaining({ callSite: 'bpf_map_alloc_percpu+0x59', allocator: 'percpu', allocs: 5, frees: 3, outstanding: 2, outstandingBytes: 64 }),
    ]));
    expect(snap.outstanding!.filter((r) => r.allocator === 'vmalloc')).toHaveLength(3);
    expect(snap.outstanding!.filter((r) => r.callSite === 'bpf_map_alloc_percpu+0x59')).toHaveLength(2);
  });

  it('a "what" number it does not know is a bad line, never a silent count', () => {
    const c = parseLines(bpftraceEvents, ['S 1000000000 0 1', '@site[-2125557767, 3, 0]: 5', '@site[-2125557767, 3, 9]: 5', '@site[-2125557767, 3]: 5', 'E']);
    expect(c.badLines.map((b) => b.lineNo)).toEqual([3, 4]);
    expect(c.snapshots[0]!.sites[0]).toMatchObject({ allocs: 5, allocator: 'percpu' });
  });
});
