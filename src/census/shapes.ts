// Groups a census's objects by what they look like (docs/census.md): each 8-byte word is classed by where it
// points or what it holds; words into kernel text are named by symbol, into the kernel image's data by address.
// Objects of one kind share a shape, and a leak fills a cache with thousands of one shape. Pure: no I/O.
//
// Speed matters here: a cache of a million objects is 24 million words. Each word becomes a small number (a plain
// class, or the interned id of a named pointer), an object's key is a short string of those numbers, and names
// and hex are made once per distinct pointer or group, never per object.

import { type AddressSpace, inRange, kernelOffset, offsetToHex } from '../linux/address-space.js';

export interface Symbolizer {
  /** The function a text address is in, or undefined. */
  name(k: number): string | undefined;
}

export interface CensusGroup {
  /**
   * What makes objects one group, stable from one census to the next: its named pointers and their word positions
   * ("3=text:single_start,…"), or its whole shape when it has none.
   */
  key: string;
  /** The names of the group's kernel pointers (functions, data addresses), or its shape when it has none. */
  label: string;
  /** One class per word: 0, int, text:NAME, data@ADDR, module:NAME, self, heap, kptr, user, ascii, bits. */
  shape: string[];
  count: number;
  /** A few object addresses (kernel heap addresses, for kleak inspect); never their contents. */
  samples: string[];
}

const SAMPLES = 5;

/** Plain classes; codes from NAMED upwards are interned pointers into the kernel image or modules. */
const PLAIN = ['0', 'int', 'self', 'heap', 'kptr', 'user', 'ascii', 'bits'] as const;
const [ZERO, INT, SELF, HEAP, KPTR, USER, ASCII, BITS] = [0, 1, 2, 3, 4, 5, 6, 7];
const NAMED = PLAIN.length;

interface Group {
  codes: Uint16Array;
  named: boolean;
  count: number;
  samples: number[];
}

export class ShapeGrouper {
  private readonly groups = new Map<string, Group>();
  /** Interned named pointers: kernel offset → code, and code - NAMED → class string. */
  private readonly pointerCode = new Map<number, number>();
  private readonly pointerClass: string[] = [];
  private readonly codes: Uint16Array;
  private readonly named: Uint16Array;
  objects = 0;

  constructor(
    private readonly space: AddressSpace,
    private readonly sym: Symbolizer,
    /** Words classed per object: the object's size, up to what the walk copied. */
    private readonly words: number,
  ) {
    this.codes = new Uint16Array(words);
    this.named = new Uint16Array(words * 2);
  }

  /** Adds the records of one walk batch: each is an 8-byte address, then the object's first bytes. */
  addBatch(buf: Buffer, used: number, recordBytes: number): void {
    const aligned = buf.byteOffset % 4 === 0 && recordBytes % 4 === 0;
    const u32 = aligned ? new Uint32Array(buf.buffer, buf.byteOffset, used >>> 2) : undefined;
    for (let at = 0; at + recordBytes <= used; at += recordBytes) this.add(buf, u32, at);
  }

  private add(buf: Buffer, u32: Uint32Array | undefined, at: number): void {
    this.objects++;
    const w = at >>> 2;
    const objK = kernelOffset(u32 ? u32[w]! : buf.readUInt32LE(at), u32 ? u32[w + 1]! : buf.readUInt32LE(at + 4));
    // Objects that point into the kernel image are grouped by those pointers alone (where and what): the other
    // words (counters, times, heap pointers) differ between objects of one kind. Others by their whole shape.
    let nNamed = 0;
    for (let i = 0; i < this.words; i++) {
      const p = at + 8 + i * 8;
      const lo = u32 ? u32[(p >>> 2)]! : buf.readUInt32LE(p);
      const hi = u32 ? u32[(p >>> 2) + 1]! : buf.readUInt32LE(p + 4);
      const c = this.classify(buf, p, lo, hi, objK + i * 8);
      this.codes[i] = c;
      if (c >= NAMED) {
        this.named[nNamed++] = i;
        this.named[nNamed++] = c;
      }
    }
    const key = nNamed > 0 ? 'n' + String.fromCharCode.apply(null, this.named.subarray(0, nNamed) as unknown as number[]) : String.fromCharCode.apply(null, this.codes as unknown as number[]);
    let g = this.groups.get(key);
    if (!g) this.groups.set(key, (g = { codes: this.codes.slice(), named: nNamed > 0, count: 0, samples: [] }));
    g.count++;
    if (g.samples.length < SAMPLES) g.samples.push(objK);
  }

  /** The class of the word (lo, hi) at buf[p]; `selfK` is the word's own address (a list head pointing to itself). */
  private classify(buf: Buffer, p: number, lo: number, hi: number, selfK: number): number {
    if (hi === 0) return lo === 0 ? ZERO : lo < 0x10000 ? INT : printable(buf, p) ? ASCII : INT;
    const k = kernelOffset(lo, hi);
    if (k >= 0) {
      const s = this.space;
      if (k === selfK) return SELF;
      if (inRange(k, s.directMap)) return HEAP;
      if (inRange(k, s.image) || inRange(k, s.modules)) return this.pointer(k);
      return KPTR;
    }
    if (printable(buf, p)) return ASCII;
    return hi < 0x8000 ? USER : BITS;
  }

  private pointer(k: number): number {
    let code = this.pointerCode.get(k);
    if (code === undefined) {
      const s = this.space;
      const cls = inRange(k, s.text) ? `text:${this.sym.name(k) ?? offsetToHex(k)}` : inRange(k, s.image) ? `data@${offsetToHex(k)}` : `module:${this.sym.name(k) ?? offsetToHex(k)}`;
      // Past 65,000 distinct pointers (never seen: a cache's objects share few), the rest count as kernel pointers.
      if (this.pointerClass.length >= 0xffff - NAMED) return KPTR;
      code = NAMED + this.pointerClass.length;
      this.pointerClass.push(cls);
      this.pointerCode.set(k, code);
    }
    return code;
  }

  private classOf(code: number): string {
    return code < NAMED ? PLAIN[code]! : this.pointerClass[code - NAMED]!;
  }

  /** Groups, most objects first. */
  result(): CensusGroup[] {
    return [...this.groups.values()]
      .sort((a, b) => b.count - a.count)
      .map((g) => {
        const shape = Array.from(g.codes, (c) => this.classOf(c));
        const key = g.named ? shape.flatMap((c, i) => (isNamed(c) ? [`${i}=${c}`] : [])).join(',') : shape.join(',');
        return { key, label: labelOf(shape), shape, count: g.count, samples: g.samples.map(offsetToHex) };
      });
  }
}

const isNamed = (c: string) => c.startsWith('text:') || c.startsWith('data@') || c.startsWith('module:');

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

/**
 * The kernel names an object points to, in order, once each; or a run-length summary of its shape. `tables` names a
 * data pointer by the functions found where it points (an ops table or a key type: `&{fn1,fn2,fn3}`).
 */
export function labelOf(shape: readonly string[], tables: ReadonlyMap<string, string> = new Map()): string {
  const names: string[] = [];
  for (const c of shape) {
    const n = c.startsWith('text:') ? c.slice(5) : c.startsWith('data@') ? (tables.get(c) ?? c) : c.startsWith('module:') ? c : undefined;
    if (n !== undefined && !names.includes(n)) names.push(n);
  }
  if (names.length > 0) return names.slice(0, 4).join(' ') + (names.length > 4 ? ` +${names.length - 4}` : '');
  return 'shape ' + runs(shape);
}

/** The data pointers (`data@ADDRESS` classes) of the given groups, once each. */
export function dataPointers(groups: readonly CensusGroup[]): string[] {
  const seen = new Set<string>();
  for (const g of groups) for (const c of g.shape) if (c.startsWith('data@')) seen.add(c);
  return [...seen];
}

/** `&{fn1,fn2,fn3}`: a data pointer named by the first distinct functions in the words it points to. */
export function tableName(functions: readonly (string | undefined)[], most = 3): string | undefined {
  const names: string[] = [];
  for (const f of functions) if (f !== undefined && !names.includes(f) && names.length < most) names.push(f);
  return names.length > 0 ? `&{${names.join(',')}}` : undefined;
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
