// Grouping of inspected objects, on the bytes of real key payloads read on this VM (the CI run of 2026-11-23):
// kmalloc does not zero, so a payload's rcu_head and datalen padding hold what the slab's last user left.
import { describe, expect, it } from 'vitest';
import { decodeWords, groupAlike } from '../../src/engine/object-decode.js';
import { Kallsyms } from '../../src/kernel/kallsyms.js';

const syms = Kallsyms.load('ffffffff81000000 T _stext\nffffffff81234560 T single_start\n');
const payload = Buffer.from('kleak-hold-payload|'.repeat(6)).subarray(0, 104);
const key = (head: string) => decodeWords(Buffer.concat([Buffer.from(head.replace(/ /g, ''), 'hex'), payload]), syms);

const clean = '0000000000000000 0000000000000000 a00f000000000000';
const stale = '00057e0400eaffff 40057e0400eaffff a00f7e0400eaffff';

describe('groupAlike', () => {
  it('puts payloads with stale bytes in their head with the clean ones, naming the words whose shape differs', () => {
    const groups = groupAlike([key(clean), key(clean), key(stale), key(clean), key(clean)]);
    expect(groups).toEqual([{ members: [0, 1, 2, 3, 4], differAt: [0x0, 0x8] }]); // +0x10 is a plain value in both
  });

  it('keeps objects of another shape apart', () => {
    const ops = decodeWords(Buffer.from('60452381ffffffff'.repeat(16), 'hex'), syms); // 16 × single_start
    const zeros = decodeWords(Buffer.alloc(128), syms);
    const groups = groupAlike([key(clean), ops, key(clean), zeros, ops]);
    expect(groups.map((g) => g.members)).toEqual([[0, 2], [1, 4], [3]]);
    expect(groups.every((g) => g.differAt.length === 0)).toBe(true);
  });

  it('does not group objects that share fewer than 3 in 4 words', () => {
    const half = key('0000000000000000 '.repeat(3)).map((w, i) => (i < 8 ? { ...w, kind: 'value' as const } : w));
    expect(groupAlike([key(clean), half]).map((g) => g.members)).toEqual([[0], [1]]);
  });
});
