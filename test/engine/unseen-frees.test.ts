// Sites whose objects leave by paths no kmem tracepoint shows one by one (kfree_rcu batches, bulk frees): their
// count is "not seen freed", and their verdict never says growing from that count alone.
import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import type { KmemEvent } from '../../src/event.js';

const src = { kind: 'replay' as const, format: 'test' };
const ev = (kind: 'alloc' | 'free', ts: number, ptr: string, callSite: string): KmemEvent =>
  kind === 'alloc'
    ? { kind, ts, ptr, callSite, tracepoint: 'kmalloc', bytesAlloc: 256, bytesReq: 216, cache: 'kmalloc-256', cpu: 0 }
    : { kind, ts, ptr, callSite, tracepoint: 'kfree', cpu: 0 };

/** 60 s of a site allocating 2 objects a second; `freeVia` frees 1 in 10 of them visibly, from that call site. */
function run(site: string, freeVia: string | undefined, reuse: boolean): Engine {
  const e = new Engine();
  let n = 0;
  for (let ts = 0; ts < 60; ts += 0.5) {
    const ptr = (0xffff888200000000n + BigInt((reuse && n > 20 ? n % 20 : n) * 256)).toString(16); // reuse: slab hands the same addresses out again
    e.event(ev('alloc', ts, ptr, `${site}+0x5a`));
    if (freeVia && n % 10 === 0) e.event(ev('free', ts + 0.1, ptr, `${freeVia}+0x12`));
    n++;
  }
  return e;
}

describe('unseen frees', () => {
  it('a site that only ever allocates is growing (the control), in a trace that has frees', () => {
    const e = run('leaky_alloc', undefined, false);
    e.event(ev('alloc', 1, 'ffff888400000000', 'other+0x1'));
    e.event(ev('free', 2, 'ffff888400000000', 'other_release+0x1'));
    const s = e.report(src).sites.find((x) => x.function === 'leaky_alloc')!;
    expect(s.verdict).toBe('growing');
    expect(s.unseenFrees).toBeUndefined();
  });

  it('a site some of whose objects are seen freed from kvfree_rcu_list is marked rcu and not growing', () => {
    const s = run('__do_sys_timerfd_create', 'kvfree_rcu_list', false).report(src).sites[0]!;
    expect(s.unseenFrees).toBe('rcu');
    expect(s.verdict).not.toBe('growing');
    expect(s.outstanding).toBeGreaterThan(90);
  });

  it('frees from an ordinary caller do not mark the site', () => {
    const s = run('leaky_alloc', 'some_release', false).report(src).sites[0]!;
    expect(s.unseenFrees).toBeUndefined();
    expect(s.verdict).toBe('growing');
  });

  it('a site whose pointers come back while outstanding is marked reused and not growing', () => {
    const s = run('inet_bind_bucket_create', undefined, true).report(src).sites[0]!;
    expect(s.missedFrees).toBeGreaterThan(0);
    expect(s.unseenFrees).toBe('reused');
    expect(s.verdict).not.toBe('growing');
  });
});

it('an allocation-only trace gets no growing verdict, and a notice that it has no frees', () => {
  const e = new Engine();
  for (let i = 0; i < 40; i++) e.event({ kind: 'alloc', ts: i, ptr: (0xffff888300000000n + BigInt(i * 64)).toString(16), callSite: 'leaky+0x1', tracepoint: 'kmalloc', bytesAlloc: 64 });
  const r = e.report({ kind: 'replay', format: 'test' });
  expect(r.sites[0]!.outstanding).toBe(40);
  expect(r.sites[0]!.verdict).not.toBe('growing');
  expect(r.notices.map((n) => n.text).join(' ')).toMatch(/no free events/);
});

describe('the slab allocator\'s own metadata', () => {
  it('alloc_slab_obj_exts rising with the slabs is said to be slab metadata, never called growing', () => {
    const e = run('alloc_slab_obj_exts', undefined, false);
    e.event(ev('alloc', 1, 'ffff888400000000', 'other+0x1'));
    e.event(ev('free', 2, 'ffff888400000000', 'other_release+0x1'));
    const r = e.report(src);
    expect(r.sites.find((x) => x.function === 'alloc_slab_obj_exts')!.verdict).not.toBe('growing');
    expect(r.notices.some((n) => /alloc_slab_obj_exts: the slab allocator's own metadata/.test(n.text))).toBe(true);
  });
});
