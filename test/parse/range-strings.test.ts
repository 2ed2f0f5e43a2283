import { describe, expect, it } from 'vitest';
import { RangeStrings } from '../../src/parse/range-strings.js';

describe('RangeStrings', () => {
  it('hands out one value per distinct text, wherever the bytes are, deriving it once', () => {
    let derived = 0;
    const t = new RangeStrings((s) => (derived++, { s }));
    const buf = Buffer.from('  user_preparse+0x2f xx user_preparse+0x2f yy user_preparse+0x2e');
    const a = t.get(buf, 2, 20);
    const b = t.getTo(buf, 24, buf.length, 32);
    expect(t.lastEnd).toBe(42);
    expect(b).toBe(a);
    expect(a.s).toBe('user_preparse+0x2f');
    expect(t.get(buf, 46, buf.length).s).toBe('user_preparse+0x2e');
    expect(derived).toBe(2);
  });

  it('stays right past many entries (its table grows) and does not keep long texts', () => {
    let derived = 0;
    const t = new RangeStrings((s) => (derived++, s));
    const names = Array.from({ length: 5000 }, (_, i) => `site_${i}+0x${(i * 7).toString(16)}`);
    for (let round = 0; round < 2; round++) {
      for (const n of names) {
        const buf = Buffer.from(`x ${n} y`);
        expect(t.get(buf, 2, 2 + n.length)).toBe(n);
      }
    }
    expect(derived).toBe(5000);
    expect(t.size).toBe(5000);
    const long = Buffer.from('z'.repeat(1000));
    t.get(long, 0, long.length);
    t.get(long, 0, long.length);
    expect(derived).toBe(5002);
    expect(t.size).toBe(5000);
  });
});
