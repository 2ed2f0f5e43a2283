// What kernel objects hold, as a person with a crash dump would read them: a hex dump, each 8-byte word named
// (a function pointer as function+offset, a pointer into the direct map as a kernel object), printable text
// shown as text, and objects that look alike grouped.

import type { Kallsyms } from '../kernel/kallsyms.js';

/** x86-64 direct map (where slab objects live) and vmalloc/vmemmap ranges, 4-level paging. */
const DIRECT_MAP: [bigint, bigint] = [0xffff888000000000n, 0xffffc87fffffffffn];
const VMALLOC: [bigint, bigint] = [0xffffc90000000000n, 0xffffe8ffffffffffn];

export type WordKind = 'zero' | 'function' | 'object' | 'vmalloc' | 'text' | 'value';

export interface Word {
  offset: number;
  value: bigint;
  kind: WordKind;
  /** function+0xoff [module], "→ kernel object", the text, or the value. */
  label: string;
}

function printable(b: number): boolean {
  return b >= 0x20 && b < 0x7f;
}

export function decodeWords(bytes: Buffer, syms: Kallsyms): Word[] {
  const words: Word[] = [];
  for (let off = 0; off + 8 <= bytes.length; off += 8) {
    const value = bytes.readBigUInt64LE(off);
    const chunk = bytes.subarray(off, off + 8);
    let kind: WordKind;
    let label: string;
    const sym = value >= 0xffffffff80000000n ? syms.lookup(value) : undefined;
    if (value === 0n) [kind, label] = ['zero', '0'];
    else if (sym) [kind, label] = ['function', `${sym.name}${sym.offset ? `+0x${sym.offset.toString(16)}` : ''}${sym.module ? ` [${sym.module}]` : ''}`];
    else if (value >= DIRECT_MAP[0] && value <= DIRECT_MAP[1]) [kind, label] = ['object', '→ kernel object'];
    else if (value >= VMALLOC[0] && value <= VMALLOC[1]) [kind, label] = ['vmalloc', '→ vmalloc'];
    else if ([...chunk].every((b) => printable(b) || b === 0) && chunk.some(printable)) [kind, label] = ['text', JSON.stringify(chunk.toString('latin1').replace(/\0+$/, ''))];
    else [kind, label] = ['value', `0x${value.toString(16)}`];
    words.push({ offset: off, value, kind, label });
  }
  return words;
}

/** A shape that identical-looking objects share: each word's kind, and the function it names if any. */
export function signature(words: readonly Word[]): string {
  return words.map((w) => (w.kind === 'function' ? `f:${w.label}` : w.kind === 'text' ? `t:${w.label}` : w.kind)).join(' ');
}

/** hexdump -C lines with the two words of each line named when they are functions, objects or text. */
export function hexDump(bytes: Buffer, words: readonly Word[]): string[] {
  const out: string[] = [];
  for (let off = 0; off < bytes.length; off += 16) {
    const row = bytes.subarray(off, off + 16);
    const hex = [...row].map((b) => b.toString(16).padStart(2, '0')).join(' ').padEnd(47);
    const ascii = [...row].map((b) => (printable(b) ? String.fromCharCode(b) : '.')).join('');
    const notes = words.filter((w) => w.offset >= off && w.offset < off + 16 && (w.kind === 'function' || w.kind === 'object' || w.kind === 'vmalloc')).map((w) => w.label);
    out.push(`${off.toString(16).padStart(4, '0')}  ${hex}  ${ascii.padEnd(16)}${notes.length ? `  ${notes.join(', ')}` : ''}`);
  }
  return out;
}
