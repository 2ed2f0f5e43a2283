// A live run traces frees: one whose filter let no free through saw a pure leak, not an allocation-only capture
// (issue 22, item 4). Only a source that may not have traced frees (a replayed capture) gets the notice.
import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';

function leak(freesTraced: boolean) {
  const e = new Engine({ freesTraced });
  // 8 allocations a second for 10 s, none freed.
  for (let i = 0; i < 80; i++) {
    e.event({ kind: 'alloc', ts: 100 + i / 8, ptr: (0xffff888100000000n + BigInt(i) * 1024n).toString(16), callSite: 'user_preparse+0x2f', bytesAlloc: 1024, bytesReq: 1024, tracepoint: 'kmalloc' });
  }
  return e.report({ kind: 'live', backend: 'tracefs', mode: 'events' });
}

describe('a run with no free seen', () => {
  it('from a live source (frees traced): the leak is growing, and no "allocation-only" notice', () => {
    const r = leak(true);
    expect(r.sites[0]).toMatchObject({ function: 'user_preparse', outstanding: 80, verdict: 'growing' });
    expect(r.notices.map((n) => n.text).join(' ')).not.toMatch(/no free events/);
  });

  it('from a capture that may hold allocations only: steady, and said', () => {
    const r = leak(false);
    expect(r.sites[0]!.verdict).toBe('steady');
    expect(r.notices.map((n) => n.text).join(' ')).toMatch(/no free events/);
  });
});
