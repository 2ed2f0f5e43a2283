// Strings seen over and over (call sites, comms, caches, stacks) stored once and referred to by a small integer.

export class Interner {
  private ids = new Map<string, number>();
  readonly values: string[] = [];

  /** utf8: the text arrives latin1-decoded (sources/lines.ts) and is stored re-decoded as UTF-8 when valid. */
  constructor(private readonly utf8 = false) {}

  id(s: string): number {
    const id = this.ids.get(s);
    if (id !== undefined) return id;
    // A parser hands out slices of the trace line; copy so the table does not pin whole lines in memory.
    const key = Buffer.from(s, 'utf8').toString('utf8');
    let own = key;
    if (this.utf8 && /[\x80-\xff]/.test(s) && !/[^\x00-\xff]/.test(s)) {
      const bytes = Buffer.from(s, 'latin1');
      const decoded = bytes.toString('utf8');
      if (!decoded.includes('\ufffd')) own = decoded;
    }
    this.values.push(own);
    this.ids.set(key, this.values.length - 1);
    return this.values.length - 1;
  }

  get size(): number {
    return this.values.length;
  }
}
