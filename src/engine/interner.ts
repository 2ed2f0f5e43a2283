// Strings seen over and over (call sites, comms, caches, stacks) stored once and referred to by a small integer.

export class Interner {
  private ids = new Map<string, number>();
  readonly values: string[] = [];

  id(s: string): number {
    const id = this.ids.get(s);
    if (id !== undefined) return id;
    // A parser hands out slices of the trace line; copy so the table does not pin whole lines in memory.
    const own = Buffer.from(s, 'utf8').toString('utf8');
    this.values.push(own);
    this.ids.set(own, this.values.length - 1);
    return this.values.length - 1;
  }

  get size(): number {
    return this.values.length;
  }
}
