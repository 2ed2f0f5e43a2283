// Outstanding allocations, one slot each, in parallel typed arrays, found through an open-addressing index on
// numeric pointer keys: with a million outstanding pointers a JS object per allocation (or a Map entry with a boxed
// number key) costs several times more; scripts/bench-replay measures the bytes per outstanding allocation.

/**
 * A pointer as a Map key. Kernel pointers are 64-bit, too wide for a double, but nearly all are either
 * "fff…" (the kernel half) or short/zero-padded (hashed pointers are 32-bit): both fit 52 bits exactly.
 * Numbers also keep the key from pinning the whole trace line a sliced string would retain.
 */
export type PtrKey = number | string;

/** Value of hex digits [from, to) of s, or NaN; no slicing, no parseInt (this runs for every event). */
function hexValue(s: string, from: number, to: number): number {
  let v = 0;
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i);
    const d = c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : -1;
    if (d < 0) return NaN;
    v = v * 16 + d;
  }
  return v;
}

export function ptrKey(ptr: string): PtrKey {
  const n = ptr.length;
  if (n <= 13) {
    const v = hexValue(ptr, 0, n);
    return Number.isNaN(v) ? ptr : -v - 1;
  }
  if (n === 16) {
    const c0 = ptr.charCodeAt(0);
    const c1 = ptr.charCodeAt(1);
    const c2 = ptr.charCodeAt(2);
    const high = c0 === 102 && c1 === 102 && c2 === 102; // "fff"
    const zero = c0 === 48 && c1 === 48 && c2 === 48; // "000"
    if (high || zero) {
      const v = hexValue(ptr, 3, 16);
      if (!Number.isNaN(v)) return high ? v : -v - 1;
    }
  }
  return ptr;
}

/** Byte → hex digit value, -1 for anything else (one load instead of three range tests). */
const HEX_DIGIT = new Int8Array(256).fill(-1);
for (let c = 0; c < 16; c++) {
  HEX_DIGIT['0123456789abcdef'.charCodeAt(c)] = c;
  HEX_DIGIT['0123456789ABCDEF'.charCodeAt(c)] = c;
}

/** Where the pointer text read by the last ptrKeyFromBytes call ended (a space or the line's end). */
export let ptrKeyEnd = 0;

/**
 * ptrKey of the pointer printed from `start` up to the next space (or `end`) of a line ("0x" prefix allowed, either
 * case), without making its text; ptrKeyEnd tells where it ended. NaN when it is not hex or has no numeric key
 * (the parser then makes the text, and ptrKey decides). A null pointer (all zeros) is NULL_PTR_KEY.
 */
export function ptrKeyFromBytes(buf: Uint8Array, start: number, end: number): number {
  let s = start;
  if (buf[s] === 48 && (buf[s + 1] === 120 || buf[s + 1] === 88)) s += 2;
  // The digits: 16 of them start "fff" (kernel half) or "000"; the first 3 are kept apart to tell which.
  let v = 0;
  let top = 0;
  let i = s;
  for (; i < end; i++) {
    const c = buf[i]!;
    const d = HEX_DIGIT[c]!;
    if (d < 0) {
      if (c === 32) break;
      while (i < end && buf[i] !== 32) i++;
      ptrKeyEnd = i;
      return NaN;
    }
    if (i - s === 3) {
      top = v; // digits 0-2, set aside
      v = 0;
    }
    v = v * 16 + d;
  }
  ptrKeyEnd = i;
  const n = i - s;
  if (n === 0) return NaN;
  if (n <= 3) return v === 0 ? NULL_PTR_KEY : -v - 1;
  // More than 3 digits: top holds the first 3 (0 if they were zeros), v the rest.
  if (n <= 13) {
    const all = top * 16 ** (n - 3) + v;
    return all === 0 ? NULL_PTR_KEY : -all - 1;
  }
  if (n !== 16) return NaN;
  if (top === 0xfff) return v;
  if (top === 0) return v === 0 ? NULL_PTR_KEY : -v - 1;
  return NaN;
}

/** What ptrKeyFromBytes says of a null pointer; no pointer has this key. */
export const NULL_PTR_KEY = -Infinity;

export function ptrFromKey(k: PtrKey): string {
  if (typeof k === 'string') return k;
  // By bytes from a table: Number#toString(16) of a 52-bit value cost 450 ns, and recordings write every pointer.
  const v = k >= 0 ? k : -k - 1;
  const hi = hex32(Math.floor(v / 4294967296));
  const lo = hex32(v >>> 0);
  return k >= 0 ? `fff${hi.slice(3)}${lo}` : hi + lo;
}

const HEX_BYTE: readonly string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

/** Eight hex digits of a 32-bit value. */
function hex32(v: number): string {
  return HEX_BYTE[v >>> 24]! + HEX_BYTE[(v >>> 16) & 255]! + HEX_BYTE[(v >>> 8) & 255]! + HEX_BYTE[v & 255]!;
}

/**
 * Numeric pointer key → slot, linear probing over typed arrays, load factor at most 1/2, backward-shift deletion
 * (no tombstones). About 24-48 bytes an entry, nothing for the garbage collector to trace.
 */
export class PtrIndex {
  private keys = new Float64Array(0);
  private vals = new Int32Array(0);
  private mask = 0;
  size = 0;

  constructor(capacity = 1024) {
    this.alloc(capacity);
  }

  private alloc(capacity: number): void {
    this.keys = new Float64Array(capacity);
    this.vals = new Int32Array(capacity).fill(-1);
    this.mask = capacity - 1;
  }

  private home(k: number): number {
    const lo = k >>> 0;
    const hi = (k / 4294967296) | 0;
    let h = Math.imul(lo ^ Math.imul(hi, 0x9e3779b1), 0x85ebca6b);
    h ^= h >>> 15;
    return h & this.mask;
  }

  get(k: number): number {
    const { keys, vals, mask } = this;
    for (let i = this.home(k); ; i = (i + 1) & mask) {
      const v = vals[i]!;
      if (v < 0) return -1;
      if (keys[i] === k) return v;
    }
  }

  set(k: number, v: number): void {
    if ((this.size + 1) * 2 > this.vals.length) this.grow();
    const { keys, vals, mask } = this;
    for (let i = this.home(k); ; i = (i + 1) & mask) {
      if (vals[i]! < 0) {
        keys[i] = k;
        vals[i] = v;
        this.size++;
        return;
      }
      if (keys[i] === k) {
        vals[i] = v;
        return;
      }
    }
  }

  delete(k: number): boolean {
    const { keys, vals, mask } = this;
    let i = this.home(k);
    for (; ; i = (i + 1) & mask) {
      if (vals[i]! < 0) return false;
      if (keys[i] === k) break;
    }
    // Backward shift: move later entries of the probe run into the hole so lookups never stop early.
    let hole = i;
    for (let j = (i + 1) & mask; vals[j]! >= 0; j = (j + 1) & mask) {
      const h = this.home(keys[j]!);
      // Entry j may move to the hole when its home is not cyclically within (hole, j].
      if (hole <= j ? h <= hole || h > j : h <= hole && h > j) {
        keys[hole] = keys[j]!;
        vals[hole] = vals[j]!;
        hole = j;
      }
    }
    vals[hole] = -1;
    this.size--;
    return true;
  }

  clear(): void {
    this.vals.fill(-1);
    this.size = 0;
  }

  private grow(): void {
    const { keys, vals } = this;
    this.alloc(vals.length * 2);
    this.size = 0;
    for (let i = 0; i < vals.length; i++) if (vals[i]! >= 0) this.set(keys[i]!, vals[i]!);
  }
}

const FREE = -1;

export class PointerTable {
  private index = new PtrIndex();
  /** Keys that are not numeric (rare): their own index, and each such slot's key. */
  private stringIndex = new Map<string, number>();
  private stringKeys = new Map<number, string>();
  private capacity = 0;
  private high = 0;
  private freeSlots = new Int32Array(0);
  private freeTop = 0;

  key = new Float64Array(0);
  ts = new Float64Array(0);
  /** Call-site id; FREE marks an unused slot. */
  callSite = new Int32Array(0);
  cache = new Int32Array(0);
  bytesAlloc = new Int32Array(0);
  bytesReq = new Int32Array(0);
  pid = new Int32Array(0);
  comm = new Int32Array(0);
  /** Interned memory cgroup path, -1 when the source gave none. */
  cgroup = new Int32Array(0);
  stack = new Int32Array(0);
  /** Bumped each time a slot is reused, so "the last allocation on CPU n" can be checked for staleness. */
  serial = new Int32Array(0);

  constructor(initialCapacity = 1024) {
    this.grow(initialCapacity);
  }

  get size(): number {
    return this.index.size + this.stringIndex.size;
  }

  /** One past the highest slot ever used: iterate 0..slotLimit and skip free slots. */
  get slotLimit(): number {
    return this.high;
  }

  find(k: PtrKey): number {
    if (typeof k === 'number') return this.index.get(k);
    return this.stringIndex.get(k) ?? -1;
  }

  isLive(slot: number): boolean {
    return this.callSite[slot] !== FREE;
  }

  keyOf(slot: number): PtrKey {
    const k = this.key[slot]!;
    return Number.isNaN(k) ? this.stringKeys.get(slot)! : k;
  }

  /** Adds a pointer that is not in the table; the caller fills the slot's fields. */
  insert(k: PtrKey): number {
    let slot: number;
    if (this.freeTop > 0) slot = this.freeSlots[--this.freeTop]!;
    else {
      if (this.high === this.capacity) this.grow(this.capacity * 2);
      slot = this.high++;
    }
    if (typeof k === 'number') {
      this.index.set(k, slot);
      this.key[slot] = k;
    } else {
      this.stringIndex.set(k, slot);
      this.key[slot] = NaN;
      this.stringKeys.set(slot, k);
    }
    this.serial[slot] = (this.serial[slot]! + 1) | 0;
    this.stack[slot] = -1;
    return slot;
  }

  remove(k: PtrKey, slot: number): void {
    if (typeof k === 'number') this.index.delete(k);
    else {
      this.stringIndex.delete(k);
      this.stringKeys.delete(slot);
    }
    this.callSite[slot] = FREE;
    this.freeSlots[this.freeTop++] = slot;
  }

  clear(): void {
    this.index.clear();
    this.stringIndex.clear();
    this.stringKeys.clear();
    this.callSite.fill(FREE);
    this.high = 0;
    this.freeTop = 0;
  }

  private grow(n: number): void {
    const f64 = (a: Float64Array) => {
      const b = new Float64Array(n);
      b.set(a);
      return b;
    };
    const i32 = (a: Int32Array, fill = 0) => {
      const b = new Int32Array(n);
      if (fill !== 0) b.fill(fill);
      b.set(a);
      return b;
    };
    this.key = f64(this.key);
    this.ts = f64(this.ts);
    this.callSite = i32(this.callSite, FREE);
    this.cache = i32(this.cache);
    this.bytesAlloc = i32(this.bytesAlloc);
    this.bytesReq = i32(this.bytesReq);
    this.pid = i32(this.pid);
    this.comm = i32(this.comm);
    this.cgroup = i32(this.cgroup);
    this.stack = i32(this.stack);
    this.serial = i32(this.serial);
    this.freeSlots = i32(this.freeSlots);
    this.capacity = n;
  }
}
