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

/** What a word says about an object's shape: its kind, and the function or text it holds if any. */
function shapeToken(w: Word): string {
  return w.kind === 'function' ? `f:${w.label}` : w.kind === 'text' ? `t:${w.label}` : w.kind;
}

/** Share of words that must agree for two objects to look alike. Not all: kmalloc does not zero, so an rcu_head
 *  or padding a kernel struct never writes keeps whatever the slab's last user left there. */
export const ALIKE_FRACTION = 0.75;

export interface AlikeGroup {
  /** Indices into the input, the first one shown for the group. */
  members: number[];
  /** Byte offsets of the words whose shape differs inside the group. */
  differAt: number[];
}

/** Groups objects whose words have the same shape at ALIKE_FRACTION of their offsets, largest group first. */
export function groupAlike(objects: readonly (readonly Word[])[]): AlikeGroup[] {
  const tokens = objects.map((ws) => ws.map(shapeToken));
  const groups: AlikeGroup[] = [];
  for (let i = 0; i < objects.length; i++) {
    const mine = tokens[i]!;
    const home = groups.find((g) => {
      const theirs = tokens[g.members[0]!]!;
      if (theirs.length !== mine.length || mine.length === 0) return false;
      let same = 0;
      for (let k = 0; k < mine.length; k++) if (mine[k] === theirs[k]) same++;
      return same >= ALIKE_FRACTION * mine.length;
    });
    if (!home) {
      groups.push({ members: [i], differAt: [] });
      continue;
    }
    home.members.push(i);
    const first = tokens[home.members[0]!]!;
    for (let k = 0; k < mine.length; k++) {
      const off = objects[i]![k]!.offset;
      if (mine[k] !== first[k] && !home.differAt.includes(off)) home.differAt.push(off);
    }
  }
  for (const g of groups) g.differAt.sort((a, b) => a - b);
  return groups.sort((a, b) => b.members.length - a.members.length);
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
