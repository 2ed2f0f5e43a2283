import { describe, expect, it } from 'vitest';
import { tracePipe } from '../../src/parse/trace-pipe.js';
import { Engine } from '../../src/engine/engine.js';
import { detectFormat } from '../../src/parse/formats.js';
import { kleak } from '../helpers/cli.js';
import { Collector, parseLines } from '../helpers/collect.js';
import type { ParserOptions } from '../../src/event.js';

// From recordings/keys29-hashed-stacks.pipe.gz and keys41-plain.pipe.gz (this VM), docs/formats.md, and the older
// kernels' lines quoted verbatim in docs/formats.md.
describe('trace_pipe', () => {
  it('reads hashed pointers and %pS call sites with /size dropped', () => {
    const c = parseLines(tracePipe, '         python3-2385    [001] .N...   268.398500: kmalloc: call_site=user_preparse+0x2f/0x70 ptr=00000000f6a9e940 bytes_req=4024 bytes_alloc=4096 gfp_flags=GFP_KERNEL node=-1 accounted=false');
    expect(c.events[0]).toMatchObject({ kind: 'alloc', ptr: '00000000f6a9e940', callSite: 'user_preparse+0x2f', bytesReq: 4024, bytesAlloc: 4096, cpu: 1, pid: 2385 });
  });

  it('reads plain pointers and treats the all-zero pointer as null', () => {
    const c = parseLines(tracePipe, [
      '            bash-5335    [001] .....  2841.662273: kfree: call_site=ida_alloc_range+0x39b/0x400 ptr=0000000000000000',
      '         python3-2500    [000] .....   270.1: kfree: call_site=user_destroy+0x14/0x30 ptr=ffff88810aa14000',
    ]);
    expect(c.events).toHaveLength(1);
    expect(c.events[0]).toMatchObject({ kind: 'free', ptr: 'ffff88810aa14000', callSite: 'user_destroy+0x14' });
  });

  it('attaches a <stack trace> block to its CPU', () => {
    const c = parseLines(tracePipe, [
      '         python3-2385    [001] .N...   268.398500: kmalloc: call_site=user_preparse+0x2f/0x70 ptr=00000000f6a9e940 bytes_req=4024 bytes_alloc=4096 gfp_flags=GFP_KERNEL node=-1 accounted=false',
      '         python3-2385    [001] .N...   268.398505: <stack trace>',
      ' => trace_event_raw_event_kmalloc',
      ' => __kmalloc_noprof',
      ' => user_preparse',
      ' => __key_create_or_update+0x1f2/0x560',
      '         python3-2385    [001] .N...   268.398510: kfree: call_site=key_user_lookup+0x158/0x1b0 ptr=0000000000000000',
    ]);
    expect(c.stacks).toEqual([{ cpu: 1, frames: ['trace_event_raw_event_kmalloc', '__kmalloc_noprof', 'user_preparse', '__key_create_or_update'] }]);
    expect(c.badLines).toEqual([]);
  });

  it('reads pre-5.4 lines: hex call site, real pointers, padded (null)', () => {
    const c = parseLines(tracePipe, [
      'syz-executor0-2711  [000] ....    17.294958: kmalloc: call_site=ffffffff813c8fd6 ptr=ffff88005ee19a80 bytes_req=64 bytes_alloc=96 gfp_flags=GFP_KERNEL',
      'syz-executor0-2711  [000] ....    17.295150: kfree: call_site=ffffffff816a1b7d ptr=          (null)',
    ]);
    expect(c.events).toHaveLength(1);
    expect(c.events[0]).toMatchObject({ comm: 'syz-executor0', callSite: 'ffffffff813c8fd6', bytesAlloc: 96, cache: 'kmalloc-96' });
    expect(c.badLines).toEqual([]);
  });

  it('reads 32-bit ARM lines and kmalloc_node of old kernels', () => {
    const c = parseLines(tracePipe, [
      '  RTW_CMD_THREAD-1984  [000] ....   681.302707: kmalloc: call_site=c0779cdc ptr=e2379a00 bytes_req=40 bytes_alloc=64 gfp_flags=GFP_NOIO|__GFP_ZERO',
      '  <...>-22558 [002] ..s2 11747.300450: kfree: call_site=c0383550 ptr=ddc1e740',
      '  kworker/0:1-12 [000] .... 5.0: kmalloc_node: call_site=alloc_fdtable+0x5e/0x100 ptr=ffff88011234 bytes_req=512 bytes_alloc=512 gfp_flags=GFP_KERNEL node=0',
    ]);
    expect(c.events.map((e) => [e.kind, e.ptr, e.tracepoint])).toEqual([
      ['alloc', 'e2379a00', 'kmalloc'],
      ['free', 'ddc1e740', 'kfree'],
      ['alloc', 'ffff88011234', 'kmalloc_node'],
    ]);
  });

  it('keeps a module suffix on the call site', () => {
    const c = parseLines(tracePipe, '  kworker/1:0-99 [001] ..... 9.0: kmalloc: call_site=xfs_buf_alloc+0x10/0x20 [xfs] ptr=ffff888100000000 bytes_req=100 bytes_alloc=128 gfp_flags=GFP_NOFS node=-1 accounted=false');
    expect(c.events[0]!.callSite).toBe('xfs_buf_alloc+0x10 [xfs]');
  });

  it('reads options/fields output (value then "(decimal)")', () => {
    const c = parseLines(tracePipe, '  rcuc-1 [000] ..... 1.0: kmem_cache_free: call_site=rcu_do_batch+0x3d1/0x14a0 (-1768960207) ptr=0xffff888132ea5ed0 (854220496) name=kmemleak_object');
    expect(c.events[0]).toMatchObject({ kind: 'free', ptr: 'ffff888132ea5ed0', callSite: 'rcu_do_batch+0x3d1', cache: 'kmemleak_object' });
  });

  it('counts [LOST n EVENTS] and skips # header lines', () => {
    const c = parseLines(tracePipe, ['# tracer: nop', '#', 'CPU:1 [LOST 23777 EVENTS]']);
    expect(c.lostEvents).toEqual([{ count: 23777, cpu: 1 }]);
    expect(c.badLines).toEqual([]);
  });

  it.each([
    ['  bash-12 [001] ..... 1.0: kmalloc: call_site=foo+0x1/0x2 ptr=ffff888100000000 bytes_req=8 bytes_alloc=eight'],
    ['  bash-12 [001] ..... 1.0: kfree: call_site=foo+0x1/0x2'],
    ['  bash-12 [001] ..... 1.0: kfree: ptr=ffff888100000000'],
    ['\u0000\u0001binary'],
    ['x'.repeat(5000)],
  ])('reports a degenerate line as bad, never throws: %#', (line) => {
    const c = parseLines(tracePipe, ['# tracer: nop', line]);
    expect(c.events).toEqual([]);
    expect(c.badLines.map((b) => b.lineNo)).toEqual([2]);
  });
});

describe('trace_pipe text in other shapes', () => {
  // options/fields on (this VM, Linux 6.18): every number as hex with its decimal after it, call sites with their raw value
  const FIELDS = [
    '         python3-2352    [001] ..... 14592.996680: kmalloc: call_site=__do_sys_add_key+0x106/0x220 (-2119483994) ptr=0xffff8881040be000 (-131387276664832) bytes_req=0xfa0 (4000) bytes_alloc=0x1000 (4096) gfp_flags=0xcc0 (3264) node=0xffffffff (-1)',
    '            bash-2347    [001] ..... 14592.835452: kfree: call_site=ida_alloc_range+0x39b/0x400 (-2111644197) ptr=0x0 (0)',
    '         python3-2352    [001] ..... 14593.100000: kfree: call_site=user_destroy+0x14/0x30 (-2119483000) ptr=0xffff8881040be000 (-131387276664832)',
  ];

  it('reads options/fields output: hex numbers with their decimal after them, call sites with their raw value', () => {
    const c = parseLines(tracePipe, FIELDS);
    expect(c.badLines).toEqual([]);
    expect(c.events).toHaveLength(2);
    expect(c.events[0]).toMatchObject({ kind: 'alloc', callSite: '__do_sys_add_key+0x106', ptr: 'ffff8881040be000', bytesReq: 4000, bytesAlloc: 4096, cache: 'kmalloc-4096', pid: 2352 });
    expect(c.events[1]).toMatchObject({ kind: 'free', ptr: 'ffff8881040be000' });
  });

  it('reads excerpts whose "comm-pid [cpu] flags ts:" prefix was trimmed, without time, and says so', () => {
    const lines = [
      'kmalloc: call_site=user_preparse+0x2f/0x70 ptr=ffff88810aa14000 bytes_req=4024 bytes_alloc=4096 gfp_flags=GFP_KERNEL node=-1 accounted=false',
      '  kmalloc: call_site=user_preparse+0x2f/0x70 ptr=ffff88810aa15000 bytes_req=4024 bytes_alloc=4096 gfp_flags=GFP_KERNEL node=-1 accounted=false',
      'kfree: call_site=user_destroy+0x14/0x30 ptr=ffff88810aa14000',
      'kmalloc: call_site=user_preparse+0x2f/0x70 ptr=ffff88810aa16000 bytes_req=56bytes_alloc=64',
    ];
    expect(detectFormat(lines)?.name).toBe('trace-pipe');
    const e = new Engine();
    const p = tracePipe.createParser(e);
    lines.forEach((l, i) => p.line(l, i + 1));
    p.end();
    const r = e.report({ kind: 'replay' });
    expect(r.sites.find((s) => s.function === 'user_preparse')?.outstanding).toBe(1);
    expect(r.totals.badLines).toBe(1); // the glued bytes_req=56bytes_alloc=64: a bad line, never 0 bytes requested
    expect(e.badSamples[0]).toMatchObject({ line: 4, reason: expect.stringMatching(/bytes_req=56bytes_alloc=64 is not a number/) });
    expect(r.notices.some((n) => /without their "comm-pid \[cpu\] flags timestamp:" prefix/.test(n.text))).toBe(true);
  });
});

describe('kmalloc labels follow the traced machine\'s page size', () => {
  const line = '         python3-1    [000] ..... 1.000000: kmalloc: call_site=big_alloc+0x10/0x40 ptr=ffff888100000000 bytes_req=16000 bytes_alloc=16384 gfp_flags=GFP_KERNEL node=-1 accounted=false';

  it('16 KiB is a page allocation with 4 KiB pages (SLUB caches end at two pages), a kmalloc cache with 64 KiB pages', () => {
    const c4 = parseLines(tracePipe, [line]);
    expect(c4.events[0]!.cache).toBe('pages-16384');
    const c64 = new Collector();
    const p = tracePipe.createParser(c64, { pageSize: 65536 });
    p.line(line, 1);
    p.end();
    expect(c64.events[0]!.cache).toBe('kmalloc-16384');
  });

  it('replay --page-size takes a power of two only, and labels by it', async () => {
    const { mkdtempSync, writeFileSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const f = `${mkdtempSync(`${tmpdir()}/kleak-ps-`)}/arm64.pipe`;
    writeFileSync(f, line + '\n');
    const ok = await kleak(['replay', f, '--page-size', '65536', '--json']);
    expect(JSON.parse(ok.stdout).sites[0].cache).toBe('kmalloc-16384');
    const bad = await kleak(['replay', f, '--page-size', '5000']);
    expect(bad.exitCode).toBe(1);
    expect(bad.stderr).toMatch(/--page-size needs a power of two/);
  });
});

describe("kmalloc labels follow the traced kernel's slab allocator (--slab-allocator)", () => {
  // SLOB (removed in 6.4) reports a kmalloc below a page as size + alignment (13 bytes → 21) from its one heap, and
  // pages from a page up; SLAB (removed in 6.8) serves every kmalloc from a kmalloc-N cache, up to 4-32 MiB.
  const at = (bytesReq: number, bytesAlloc: number, ptr: string) =>
    `         python3-1    [000] ..... 1.000000: kmalloc: call_site=drv_alloc+0x10/0x40 ptr=${ptr} bytes_req=${bytesReq} bytes_alloc=${bytesAlloc} gfp_flags=GFP_KERNEL node=-1 accounted=false`;
  const lines = [at(13, 21, 'ffff888100000000'), at(16000, 16384, 'ffff888100010000'), at(1000000, 1048576, 'ffff888100100000')];
  const labels = (o: ParserOptions) => {
    const c = new Collector();
    const p = tracePipe.createParser(c, o);
    lines.forEach((l, i) => p.line(l, i + 1));
    p.end();
    return { caches: c.events.map((e) => e.cache), notices: c.notices };
  };

  it('SLUB (the default): kmalloc-N up to two pages, pages-N above; a size no cache has is said once, with its line', () => {
    const r = labels({});
    expect(r.caches).toEqual(['kmalloc-21', 'pages-16384', 'pages-1048576']);
    expect(r.notices).toEqual([expect.stringMatching(/^line 1 has a kmalloc of 21 bytes allocated, a size no kmalloc-N cache has: a SLOB kernel's \(replay with --slab-allocator slob/)]);
  });

  it('SLAB: every kmalloc is kmalloc-N; SLOB: "slob" below a page, pages-N from a page up, and no notice', () => {
    expect(labels({ slab: 'slab' }).caches).toEqual(['kmalloc-21', 'kmalloc-16384', 'kmalloc-1048576']);
    const slob = labels({ slab: 'slob' });
    expect(slob.caches).toEqual(['slob', 'pages-16384', 'pages-1048576']);
    expect(slob.notices).toEqual([]);
  });

  it('replay --slab-allocator takes slub, slab or slob only, and labels by it', async () => {
    const { mkdtempSync, writeFileSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const f = `${mkdtempSync(`${tmpdir()}/kleak-slab-`)}/slob.pipe`;
    writeFileSync(f, lines.join('\n') + '\n');
    const slob = JSON.parse(String((await kleak(['replay', f, '--slab-allocator', 'slob', '--json'])).stdout));
    expect(slob.sites[0].caches.map((c: { cache: string }) => c.cache).sort()).toEqual(['pages-1048576', 'pages-16384', 'slob']);
    const slub = await kleak(['replay', f, '--text']);
    expect(slub.stdout).toMatch(/a size no kmalloc-N cache has/);
    const bad = await kleak(['replay', f, '--slab-allocator', 'slab-debug']);
    expect(bad.exitCode).toBe(1);
    expect(bad.stderr).toMatch(/--slab-allocator takes slub, slab, slob, not "slab-debug"/);
  });

  it("this host's allocator is read from its tree: /sys/kernel/slab is SLUB, slabinfo tunables SLAB, neither SLOB", async () => {
    const { mkdirSync, mkdtempSync, writeFileSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { hostSlabAllocator } = await import('../../src/kernel/slabinfo.js');
    expect(hostSlabAllocator()).toBe('slub'); // Linux 6.18 has no other
    const slab = mkdtempSync(`${tmpdir()}/kleak-slabroot-`);
    mkdirSync(`${slab}/proc`);
    writeFileSync(`${slab}/proc/slabinfo`, 'slabinfo - version: 2.1\n# name <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>\nkmalloc-64 1024 1088 64 64 1 : tunables 120 60 8 : slabdata 17 17 0\n');
    expect(hostSlabAllocator(slab)).toBe('slab');
    writeFileSync(`${slab}/proc/slabinfo`, 'slabinfo - version: 2.1\nkmalloc-64 1024 1088 64 64 1 : tunables 0 0 0 : slabdata 17 17 0\n');
    expect(hostSlabAllocator(slab)).toBe('slub');
    expect(hostSlabAllocator(mkdtempSync(`${tmpdir()}/kleak-sloberoot-`))).toBe('slob');
  });
});
