// Input that would make kleak hold too much: blank lines before the format is known, and more distinct allocating
// functions than a site table should keep. Both are bounded, and the report says what was folded.
import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import { DetectingParser } from '../../src/parse/detect.js';

describe('bounded input', () => {
  it('blank lines before the first event are not kept while the format is detected', () => {
    const e = new Engine();
    const p = new DetectingParser(e, 'test');
    for (let i = 1; i <= 200_000; i++) p.line('', i);
    // What detection still holds: nothing for the blank lines (they were 1.36 GB for 20 MiB of them).
    expect((p as unknown as { head: unknown[] }).head).toHaveLength(0);
    p.line('         python3-1    [000] ..... 1.000000: kmalloc: call_site=f+0x1/0x2 ptr=ffff888100000000 bytes_req=8 bytes_alloc=8 gfp_flags=GFP_KERNEL node=-1 accounted=false', 200_001);
    p.end();
    expect(e.report({ kind: 'replay' }).sites[0]).toMatchObject({ function: 'f', outstanding: 1 });
    const empty = new DetectingParser(new Engine(), 'blank.txt');
    for (let i = 1; i <= 1000; i++) empty.line('', i);
    expect(() => empty.end()).toThrow(/blank\.txt is empty/);
  });

  it('more than 50,000 allocating functions: the rest are counted together, and the report says so', () => {
    const e = new Engine();
    for (let i = 0; i < 60_000; i++) {
      e.event({ kind: 'alloc', ts: 1 + i * 1e-6, ptr: (0xffff888100000000n + BigInt(i * 64)).toString(16), callSite: `fn${i}+0x10`, tracepoint: 'kmalloc', bytesAlloc: 64, cache: 'kmalloc-64' });
    }
    const r = e.report({ kind: 'replay' });
    expect(r.siteCount).toBe(50_001);
    expect(r.totals.outstanding).toBe(60_000);
    expect(r.sites.find((s) => s.function === '(other call sites)')).toMatchObject({ outstanding: 10_000, callSite: '(other call sites)' });
    expect(r.notices.some((n) => /more than 50,000 allocating functions: 10,000 more were counted together/.test(n.text))).toBe(true);
  });
});
