// Groups a census's objects by what they look like (docs/census.md): each 8-byte word is classed by where it
// points or what it holds; words into kernel text are named by symbol, into the kernel image's data by address.
// Objects of one kind share a shape, and a leak fills a cache with thousands of one shape. Pure: no I/O.

import { type AddressSpace, inRange, kernelOffset, offsetToHex } from '../linux/address-space.js';

export interface Symbolizer {
  /** The function a text address is in, or undefined. */
  name(k: number): string | undefined;
}

export interface CensusGroup {
  /** The names of the group's kernel pointers (functions, data addresses), or its shape when it has none. */
  label: string;
  /** One class per word: 0, int, text:NAME, data@ADDR, module, self, heap, kptr, user, ascii, bits. */
  shape: string[];
  count: number;
  /** A few object addresses (kernel heap addresses, for kleak inspect); never their contents. */
  samples: string[];
}

const SAMPLES = 5;

export class ShapeGrouper {
  private readonly groups = new Map<string, { shape: string[]; count: number; samples: string[] }>();
  private readonly names = new Map<number, string>();
  objects = 0;

  constructor(
    private readonly space: AddressSpace,
    private readonly sym: Symbolizer,
    /** Words classed per object: the object's size, up to what the walk copied. */
    private readonly words: number,
  ) {}

  /** Adds the records of one walk batch: each is an 8-byte address, then the object's first bytes. */
  addBatch(buf: Buffer, used: number, recordBytes: number): void {
    for (let at = 0; at + recordBytes <= used; at += recordBytes) this.add(buf, at);
  }

  private add(buf: Buffer, at: number): void {
    this.objects++;
    const objLo = buf.readUInt32LE(at);
    const objHi = buf.readUInt32LE(at + 4);
    const objK = kernelOffset(objLo, objHi);
    // Objects that point into the kernel image are grouped by those pointers alone (where and what): the other
    // words (counters, times, heap pointers) differ between objects of one kind. Others by their whole shape.
    let named = '';
    let key = '';
    const shape: string[] = [];
    for (let i = 0; i < this.words; i++) {
      const p = at + 8 + i * 8;
      const c = this.classify(buf, p, objK + i * 8);
      shape.push(c);
      key += c + ',';
      if (c.startsWith('text:') || c.startsWith('data@') || c.startsWith('module:')) named += `${i}=${c},`;
    }
    if (named !== '') key = named;
    let g = this.groups.get(key);
    if (!g) this.groups.set(key, (g = { shape, count: 0, samples: [] }));
    g.count++;
    if (g.samples.length < SAMPLES) g.samples.push(offsetToHex(objK));
  }

  /** The class of the word at buf[p]; `selfK` is the word's own address (a list head pointing to itself). */
  private classify(buf: Buffer, p: number, selfK: number): string {
    const lo = buf.readUInt32LE(p);
    const hi = buf.readUInt32LE(p + 4);
    if (lo === 0 && hi === 0) return '0';
    if (hi === 0 && lo < 0x10000) return 'int';
    const k = kernelOffset(lo, hi);
    if (k >= 0) {
      const s = this.space;
      if (inRange(k, s.text)) return `text:${this.nameOf(k)}`;
      if (inRange(k, s.image)) return `data@${offsetToHex(k)}`;
      if (inRange(k, s.modules)) return `module:${this.nameOf(k)}`;
      if (k === selfK) return 'self';
      if (inRange(k, s.directMap)) return 'heap';
      return 'kptr';
    }
    if (printable(buf, p)) return 'ascii';
    if (hi < 0x8000 && hi > 0) return 'user';
    return hi === 0 ? 'int' : 'bits';
  }

  private nameOf(k: number): string {
    let n = this.names.get(k);
    if (n === undefined) this.names.set(k, (n = this.sym.name(k) ?? offsetToHex(k)));
    return n;
  }

  /** Groups, most objects first. */
  result(): CensusGroup[] {
    return [...this.groups.values()]
      .sort((a, b) => b.count - a.count)
      .map((g) => ({ label: labelOf(g.shape), shape: g.shape, count: g.count, samples: g.samples }));
  }
}

/** 8 bytes of printable ASCII (or a NUL-terminated run): text, shown only as such, never its bytes. */
function printable(buf: Buffer, p: number): boolean {
  let n = 0;
  for (let i = 0; i < 8; i++) {
    const b = buf[p + i]!;
    if (b === 0 && n > 0) return true;
    if (b < 0x20 || b > 0x7e) return false;
    n++;
  }
  return true;
}

/** The kernel names an object points to, in order, once each; or a run-length summary of its shape. */
export function labelOf(shape: readonly string[]): string {
  const names: string[] = [];
  for (const c of shape) {
    const n = c.startsWith('text:') ? c.slice(5) : c.startsWith('data@') || c.startsWith('module:') ? c : undefined;
    if (n !== undefined && !names.includes(n)) names.push(n);
  }
  if (names.length > 0) return names.slice(0, 4).join(' ') + (names.length > 4 ? ` +${names.length - 4}` : '');
  return 'shape ' + runs(shape);
}

/** "0×3 int heap×2": a shape, shortened. */
export function runs(shape: readonly string[]): string {
  const out: string[] = [];
  for (let i = 0; i < shape.length; ) {
    let j = i;
    while (j < shape.length && shape[j] === shape[i]) j++;
    out.push(j - i > 1 ? `${shape[i]}×${j - i}` : shape[i]!);
    i = j;
  }
  return out.join(' ');
}
