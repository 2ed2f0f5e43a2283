// Modules are first-class: a site in a module says so, and the report sums bytes by module, the kernel as one row.
import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';

describe('modules', () => {
  it('a module call site (func+0x10/0x40 [drv]) names its module; the by-module rows add up', () => {
    const e = new Engine();
    for (let i = 0; i < 7; i++) e.event({ kind: 'alloc', ts: i / 100, ptr: (0xffff888100000000n + BigInt(i * 512)).toString(16), callSite: 'drv_rx_refill+0x64/0x120 [drv]', tracepoint: 'kmalloc', bytesAlloc: 512 });
    for (let i = 0; i < 3; i++) e.event({ kind: 'alloc', ts: i / 100, ptr: (0xffff888200000000n + BigInt(i * 64)).toString(16), callSite: 'single_open+0x2d', tracepoint: 'kmalloc', bytesAlloc: 64 });
    const r = e.report({ kind: 'replay', format: 'test' });
    expect(r.sites.find((s) => s.function.startsWith('drv_rx_refill'))).toMatchObject({ module: 'drv', outstanding: 7 });
    expect(r.sites.find((s) => s.function === 'single_open')!.module).toBeUndefined();
    expect(r.modules).toEqual([
      { module: 'drv', outstanding: 7, outstandingBytes: 3584, growthPerMin: 0, growingSites: 0 },
      { module: 'the kernel itself', outstanding: 3, outstandingBytes: 192, growthPerMin: 0, growingSites: 0 },
    ]);
  });
});

describe('one label per size', () => {
  it('a function allocating 64, 256 and 64 bytes is labelled by each cache, most first', async () => {
    const { cacheLabel } = await import('../../src/report/text.js');
    const e = new Engine();
    const sizes = [64, 256, 64];
    sizes.forEach((b, i) => e.event({ kind: 'alloc', ts: i, ptr: (0xffff888100000000n + BigInt(i * 4096)).toString(16), callSite: 'multi_alloc+0x10', tracepoint: 'kmalloc', bytesAlloc: b, cache: `kmalloc-${b}` }));
    const s = e.report({ kind: 'replay', format: 'test' }).sites[0]!;
    expect(s.cache).toBe('kmalloc-64');
    expect(s.caches).toEqual([{ cache: 'kmalloc-64', outstanding: 2 }, { cache: 'kmalloc-256', outstanding: 1 }]);
    expect(cacheLabel(s)).toBe('kmalloc-64 +1');
    const one = new Engine();
    one.event({ kind: 'alloc', ts: 0, ptr: 'ffff888100000000', callSite: 'single+0x1', tracepoint: 'kmalloc', bytesAlloc: 64, cache: 'kmalloc-64' });
    expect(one.report({ kind: 'replay', format: 'test' }).sites[0]!.caches).toBeUndefined();
  });
});

describe('samples across kinds', () => {
  it('a site holding two kinds of object (by requested size) samples both, even when one kind is all of the oldest', () => {
    const e = new Engine();
    // ten old 32-byte objects (say uptime's seq_file), then two newer 64-byte ones (cmdline's)
    for (let i = 0; i < 10; i++) e.event({ kind: 'alloc', ts: i, ptr: (0xffff888100000000n + BigInt(i * 4096)).toString(16), callSite: 'single_open+0x2d', tracepoint: 'kmalloc', bytesReq: 32, bytesAlloc: 32, comm: 'cat' });
    for (let i = 0; i < 2; i++) e.event({ kind: 'alloc', ts: 20 + i, ptr: (0xffff888200000000n + BigInt(i * 4096)).toString(16), callSite: 'single_open+0x2d', tracepoint: 'kmalloc', bytesReq: 64, bytesAlloc: 64, comm: 'cat' });
    const samples = e.report({ kind: 'replay', format: 'test' }).sites[0]!.samples;
    expect(samples).toHaveLength(5);
    expect(new Set(samples.map((x) => x.bytesReq))).toEqual(new Set([32, 64]));
    expect(samples[0]!.bytesReq).toBe(32); // oldest first
  });

  it('13 objects from one path then 6 from another that looks alike (same comm and size): the samples reach the second (the 5 oldest did not)', () => {
    const e = new Engine();
    const at = (base: bigint, i: number) => (base + BigInt(i * 4096)).toString(16);
    for (let i = 0; i < 13; i++) e.event({ kind: 'alloc', ts: i, ptr: at(0xffff888100000000n, i), callSite: 'user_preparse+0x2f', tracepoint: 'kmalloc', bytesReq: 4024, bytesAlloc: 4096, comm: 'python3' });
    for (let i = 0; i < 6; i++) e.event({ kind: 'alloc', ts: 100 + i, ptr: at(0xffff888200000000n, i), callSite: 'user_preparse+0x2f', tracepoint: 'kmalloc', bytesReq: 4024, bytesAlloc: 4096, comm: 'python3' });
    const samples = e.report({ kind: 'replay', format: 'test' }).sites[0]!.samples;
    expect(samples).toHaveLength(5);
    expect(samples[0]!.ptr).toBe(at(0xffff888100000000n, 0)); // the oldest still first
    expect(samples.some((x) => x.ptr.startsWith('ffff8882'))).toBe(true);
  });
});
