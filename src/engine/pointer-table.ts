// Outstanding allocations, one slot each, in parallel typed arrays: with a million outstanding pointers a JS object
// per allocation would cost several hundred bytes; this costs about 120 (scripts/bench-replay measures it).

/**
 * A pointer as a Map key. Kernel pointers are 64-bit, too wide for a double, but nearly all are either
 * "fff…" (the kernel half) or short/zero-padded (hashed pointers are 32-bit): both fit 52 bits exactly.
 * Numbers also keep the key from pinning the whole trace line a sliced string would retain.
 */
export type PtrKey = number | string;

const TWO52 = 2 ** 52;

export function ptrKey(ptr: string): PtrKey {
  const n = ptr.length;
  if (n <= 13) {
    const v = parseInt(ptr, 16);
    return Number.isNaN(v) ? ptr : -v - 1;
  }
  if (n === 16) {
    const high = ptr.charCodeAt(0) === 102 && ptr.charCodeAt(1) === 102 && ptr.charCodeAt(2) === 102; // "fff"
    const zero = ptr.charCodeAt(0) === 48 && ptr.charCodeAt(1) === 48 && ptr.charCodeAt(2) === 48; // "000"
    if (high || zero) {
      const v = parseInt(ptr.slice(3), 16);
      if (!Number.isNaN(v) && v < TWO52) return high ? v : -v - 1;
    }
  }
  return ptr;
}

export function ptrFromKey(k: PtrKey): string {
  if (typeof k === 'string') return k;
  return k >= 0 ? 'fff' + k.toString(16).padStart(13, '0') : (-k - 1).toString(16).padStart(16, '0');
}

const FREE = -1;

export class PointerTable {
  private index = new Map<PtrKey, number>();
  /** Slots whose key is not numeric (rare): their key lives here. */
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
  stack = new Int32Array(0);
  /** Bumped each time a slot is reused, so "the last allocation on CPU n" can be checked for staleness. */
  serial = new Int32Array(0);

  constructor(initialCapacity = 1024) {
    this.grow(initialCapacity);
  }

  get size(): number {
    return this.index.size;
  }

  /** One past the highest slot ever used: iterate 0..slotLimit and skip free slots. */
  get slotLimit(): number {
    return this.high;
  }

  find(k: PtrKey): number {
    const s = this.index.get(k);
    return s === undefined ? -1 : s;
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
    this.index.set(k, slot);
    if (typeof k === 'number') this.key[slot] = k;
    else {
      this.key[slot] = NaN;
      this.stringKeys.set(slot, k);
    }
    this.serial[slot] = (this.serial[slot]! + 1) | 0;
    this.stack[slot] = -1;
    return slot;
  }

  remove(k: PtrKey, slot: number): void {
    this.index.delete(k);
    if (typeof k === 'string') this.stringKeys.delete(slot);
    this.callSite[slot] = FREE;
    this.freeSlots[this.freeTop++] = slot;
  }

  clear(): void {
    this.index.clear();
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
    this.stack = i32(this.stack);
    this.serial = i32(this.serial);
    this.freeSlots = i32(this.freeSlots);
    this.capacity = n;
  }
}
