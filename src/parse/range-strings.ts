// The same string (or a value derived from it once) for the same bytes of a line, found without making a string.
// A trace repeats a few hundred call sites and comms millions of times. Making a string for each occurrence costs
// a native call and an allocation, and later a hash of the new string in every Map it meets (the engine's
// interners); handing back one stored string, whose hash V8 keeps, costs neither (scripts/bench-replay).

/** Entries kept at most: past that, values are derived per call (a trace with unbounded distinct comms). */
const MAX_ENTRIES = 1 << 16;
/** Longer texts are not kept: call sites and comms are short, and a malformed line's rest is not worth keeping. */
const MAX_KEY = 256;

export class RangeStrings<V> {
  private keys: Buffer[] = [];
  private values: V[] = [];
  private hashes: number[] = [];
  /** Slot → entry index + 1; 0 is empty. Open addressing, at most half full. */
  private slots = new Int32Array(1024);
  private mask = 1023;

  /** `derive` turns the text (the bytes as latin1) into what is handed out, once per distinct text. */
  constructor(private readonly derive: (text: string) => V) {}

  /** Where the text of the last getTo call ended. */
  lastEnd = 0;

  get(buf: Buffer, start: number, end: number): V {
    let h = 0;
    for (let i = start; i < end; i++) h = (Math.imul(h, 31) + buf[i]!) | 0;
    return this.lookup(buf, start, end, h);
  }

  /** get() of the text from `start` up to the next `stop` byte (or `end`), found and hashed in one pass; see lastEnd. */
  getTo(buf: Buffer, start: number, end: number, stop: number): V {
    let h = 0;
    let i = start;
    for (; i < end; i++) {
      const c = buf[i]!;
      if (c === stop) break;
      h = (Math.imul(h, 31) + c) | 0;
    }
    this.lastEnd = i;
    return this.lookup(buf, start, i, h);
  }

  private lookup(buf: Buffer, start: number, end: number, h: number): V {
    const len = end - start;
    const mask = this.mask;
    for (let s = h & mask; ; s = (s + 1) & mask) {
      const e = this.slots[s]!;
      if (e === 0) break;
      if (this.hashes[e - 1] !== h) continue;
      const key = this.keys[e - 1]!;
      if (key.length !== len) continue;
      let k = 0;
      while (k < len && key[k] === buf[start + k]) k++;
      if (k === len) return this.values[e - 1]!;
    }
    const key = Buffer.from(buf.subarray(start, end)); // a copy: the line's chunk is not kept alive
    const value = this.derive(key.toString('latin1'));
    if (this.keys.length >= MAX_ENTRIES || len > MAX_KEY) return value;
    this.keys.push(key);
    this.values.push(value);
    this.hashes.push(h);
    if (this.keys.length * 2 > this.slots.length) this.resize(this.slots.length * 2);
    else this.place(this.keys.length - 1);
    return value;
  }

  get size(): number {
    return this.keys.length;
  }

  private place(entry: number): void {
    let s = this.hashes[entry]! & this.mask;
    while (this.slots[s] !== 0) s = (s + 1) & this.mask;
    this.slots[s] = entry + 1;
  }

  private resize(slots: number): void {
    this.slots = new Int32Array(slots);
    this.mask = slots - 1;
    for (let e = 0; e < this.keys.length; e++) this.place(e);
  }
}
