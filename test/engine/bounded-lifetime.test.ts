// A count that rises because a population fills up to its lifetime (TCP TIME_WAIT sockets live 60 s) is bounded
// churn, not a leak; a leak, even one that begins mid-run or frees some of its objects, stays growing. The live
// counterpart (real TIME_WAIT sockets) is in test/live/verdicts.test.ts.
import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import type { KmemEvent } from '../../src/event.js';

const src = { kind: 'replay' as const, format: 'test' };

/**
 * A site allocating `rate` objects a second for `seconds`; `life(i, ts)` is how long object i lives (Infinity:
 * never freed). Events are fed in time order, as a trace has them.
 */
function run(rate: number, seconds: number, life: (i: number, ts: number) => number): Engine {
  const events: KmemEvent[] = [];
  let i = 0;
  for (let ts = 0; ts < seconds; ts += 1 / rate, i++) {
    const ptr = (0xffff888200000000n + BigInt(i) * 256n).toString(16);
    events.push({ kind: 'alloc', ts, ptr, callSite: 'inet_twsk_alloc+0x3a', tracepoint: 'kmem_cache_alloc', bytesAlloc: 256, cache: 'tw_sock_TCP', cpu: 0 });
    const l = life(i, ts);
    if (ts + l < seconds) events.push({ kind: 'free', ts: ts + l, ptr, callSite: 'inet_twsk_put+0x20', tracepoint: 'kmem_cache_free', cpu: 0 });
  }
  // A control site that is freed at once, so the trace has frees from its start.
  events.push({ kind: 'alloc', ts: 0.05, ptr: 'ffff888300000000', callSite: 'other+0x1', tracepoint: 'kmalloc', bytesAlloc: 64, cache: 'kmalloc-64', cpu: 0 });
  events.push({ kind: 'free', ts: 0.06, ptr: 'ffff888300000000', callSite: 'other_put+0x1', tracepoint: 'kfree', cpu: 0 });
  events.sort((a, b) => a.ts - b.ts);
  const e = new Engine();
  for (const ev of events) e.event(ev);
  return e;
}

describe('bounded lifetimes', () => {
  it('TIME_WAIT: 20 a second living 60 s, over 130 s, is bounded churn (was growing at +1,100/min)', () => {
    const site = run(20, 130, () => 60).report(src).sites[0]!;
    expect(site.outstanding).toBe(1200);
    expect(site.verdict).toBe('churn');
    expect(site.boundedLifetimeSec).toBe(60);
  });

  it('short-lived objects (closed after 1-5 s) over 20 s are bounded, never growing', () => {
    const site = run(30, 20, (i) => 1 + (i % 5)).report(src).sites[0]!;
    expect(site.verdict).not.toBe('growing');
  });

  it('a leak that frees half its objects at once stays growing (its oldest is as old as the run)', () => {
    const site = run(20, 130, (i) => (i % 2 ? 0.5 : Infinity)).report(src).sites[0]!;
    expect(site.verdict).toBe('growing');
    expect(site.boundedLifetimeSec).toBeUndefined();
  });

  it('a leak that begins mid-run beside bounded churn stays growing (the count since its oldest keeps rising)', () => {
    const site = run(20, 130, (i, ts) => (ts >= 70 && i % 4 === 0 ? Infinity : 10)).report(src).sites[0]!;
    expect(site.verdict).toBe('growing');
    expect(site.boundedLifetimeSec).toBeUndefined();
  });

  it('a run shorter than the lifetime cannot tell: the rise stays growing', () => {
    const site = run(20, 50, () => 60).report(src).sites[0]!;
    expect(site.verdict).toBe('growing');
  });
});
