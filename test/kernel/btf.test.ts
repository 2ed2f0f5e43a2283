// The BTF reader: on a small BTF blob made here (every kind it must step over), and on the running kernel's.
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Btf } from '../../src/kernel/btf.js';

/** A BTF blob: header, types, strings (include/uapi/linux/btf.h). */
function blob(types: number[][], strings: string[]): Buffer {
  const str = Buffer.from('\0' + strings.map((s) => s + '\0').join(''), 'latin1');
  const t = Buffer.alloc(types.flat().length * 4);
  types.flat().forEach((v, i) => t.writeInt32LE(v | 0, i * 4));
  const h = Buffer.alloc(24);
  h.writeUInt16LE(0xeb9f, 0);
  h.writeUInt8(1, 2);
  h.writeUInt32LE(24, 4);
  h.writeUInt32LE(0, 8);
  h.writeUInt32LE(t.length, 12);
  h.writeUInt32LE(t.length, 16);
  h.writeUInt32LE(str.length, 20);
  return Buffer.concat([h, t, str]);
}
const off = (strings: string[], s: string) => 1 + strings.slice(0, strings.indexOf(s)).reduce((n, x) => n + x.length + 1, 0);
const info = (kind: number, vlen = 0) => ((kind << 24) | vlen) >>> 0;

describe('Btf', () => {
  const names = ['int', 'S', 'a', 'b', 'E', 'X_BIT', 'Y_BIT', 'btf_trace_t', 'f', 'kvfree_call_rcu'];
  const o = (s: string) => off(names, s);
  const data = blob(
    [
      [o('int'), info(1), 4, 0x20], // 1 INT
      [o('S'), info(4, 2), 8, o('a'), 1, 0, o('b'), 1, 32], // 2 STRUCT with 2 members
      [o('E'), info(6, 2), 4, o('X_BIT'), 22, o('Y_BIT'), 3], // 3 ENUM
      [0, info(13, 3), 0, 0, 2, 0, 1, 0, 1], // 4 FUNC_PROTO (void *, S, int)
      [0, info(2), 4], // 5 PTR → proto
      [o('btf_trace_t'), info(8), 5], // 6 TYPEDEF
      [o('kvfree_call_rcu'), info(12), 4], // 7 FUNC
    ],
    names,
  );

  it('reads enumerators, functions and a raw tracepoint argument count past every kind before them', () => {
    const b = new Btf(data);
    expect(b.enumValue('X_BIT')).toBe(22);
    expect(b.enumValue('Y_BIT')).toBe(3);
    expect(b.enumValue('Z_BIT')).toBeUndefined();
    expect(b.hasFunction('kvfree_call_rcu')).toBe(true);
    expect(b.hasFunction('kfree')).toBe(false);
    expect(b.tracepointArgs('t')).toBe(2);
    expect(b.tracepointArgs('u')).toBeUndefined();
  });

  it('refuses what is not BTF with a readable error', () => {
    expect(() => new Btf(Buffer.from('not btf at all, really not'))).toThrow(/not BTF/);
  });

  it("the running kernel's BTF: __GFP_ACCOUNT's bit and the 6.1+ kmem tracepoints", (ctx) => {
    ctx.skip(!existsSync('/sys/kernel/btf/vmlinux'), 'this kernel has no BTF');
    const b = Btf.vmlinux();
    expect(b.enumValue('___GFP_ACCOUNT_BIT')).toBeGreaterThan(10);
    expect(b.tracepointArgs('kfree')).toBe(2);
    expect([5, 6]).toContain(b.tracepointArgs('kmem_cache_alloc'));
  });
});
