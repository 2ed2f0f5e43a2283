// /proc/kallsyms as a lookup from a kernel address to function+offset [module], for decoding object contents.
import { readFileSync } from 'node:fs';

export interface KernelSymbol {
  name: string;
  offset: bigint;
  module?: string;
}

/**
 * Addresses are kept as offsets from the start of the kernel half (0xffff800000000000), exact in a double, so that
 * loading 120,000+ symbols makes no BigInt per line and a lookup compares numbers (docs/census.md).
 */
const HALF = 0xffff800000000000n;
const HALF_HI = 0xffff8000;
const TWO32 = 4294967296;
const toOffset = (a: bigint): number => (a < HALF ? -1 : Number(a - HALF));
const toAddress = (k: number): bigint => HALF + BigInt(k);

export class Kallsyms {
  private constructor(
    private readonly offs: Float64Array,
    private readonly names: string[],
    private readonly modules: (string | undefined)[],
  ) {}

  /** Text symbols (t, T, w, W) of /proc/kallsyms; addresses are zeros unless kptr_restrict allows (root here). */
  static load(text = readFileSync('/proc/kallsyms', 'utf8')): Kallsyms {
    // Parsed by hand: a regular expression and a BigInt per line took most of the census's setup. A line is
    // "ADDRESS TYPE NAME", with "\t[MODULE]" after the name for a module's symbol.
    const offs: number[] = [];
    const names: string[] = [];
    const modules: (string | undefined)[] = [];
    let sorted = true;
    for (let at = 0; at < text.length; ) {
      let end = text.indexOf('\n', at);
      if (end < 0) end = text.length;
      const line = text.slice(at, end);
      at = end + 1;
      const sp = line.indexOf(' ');
      if (sp !== 16 || line.length < 20 || line[18] !== ' ' || !'tTwW'.includes(line[17]!)) continue;
      const hi = parseInt(line.slice(0, 8), 16);
      const lo = parseInt(line.slice(8, 16), 16);
      // Zeros (kptr_restrict) and anything below the kernel half are no addresses to look up.
      if (!(hi >= HALF_HI) || Number.isNaN(lo)) continue;
      const k = (hi - HALF_HI) * TWO32 + lo;
      const tab = line.indexOf('\t', 19);
      if (offs.length > 0 && k < offs[offs.length - 1]!) sorted = false;
      offs.push(k);
      names.push(line.slice(19, tab >= 0 ? tab : line.length).trimEnd());
      modules.push(tab >= 0 ? /\[(\S+)\]/.exec(line.slice(tab))?.[1] : undefined);
    }
    if (sorted) return new Kallsyms(Float64Array.from(offs), names, modules);
    const order = offs.map((_, i) => i).sort((x, y) => offs[x]! - offs[y]! || x - y);
    return new Kallsyms(Float64Array.from(order, (i) => offs[i]!), order.map((i) => names[i]!), order.map((i) => modules[i]));
  }

  /** The address of a text symbol by name (the first of several with one name), or undefined. */
  address(name: string): bigint | undefined {
    const i = this.names.indexOf(name);
    return i < 0 ? undefined : toAddress(this.offs[i]!);
  }

  /** [start, end) of a text symbol by name: its address up to the next symbol's; undefined when absent. */
  range(name: string): { start: bigint; end: bigint } | undefined {
    const i = this.names.indexOf(name);
    if (i < 0) return undefined;
    const start = this.offs[i]!;
    let j = i + 1;
    while (j < this.offs.length && this.offs[j] === start) j++;
    return { start: toAddress(start), end: j < this.offs.length ? toAddress(this.offs[j]!) : toAddress(start) + 1n };
  }

  /** 'func+0xOFF' or 'func+0xOFF [module]', as the kernel's %pS prints it; raw hex when no symbol covers it. */
  format(addr: bigint): string {
    const s = this.lookup(addr);
    if (!s) return addr.toString(16);
    return `${s.name}+0x${s.offset.toString(16)}${s.module ? ` [${s.module}]` : ''}`;
  }

  get size(): number {
    return this.offs.length;
  }

  /** The symbol an address falls in: the nearest one at or below it, within 1 MiB (past the last, nothing). */
  lookup(addr: bigint): KernelSymbol | undefined {
    const i = this.indexOf(toOffset(addr));
    if (i < 0) return undefined;
    const module = this.modules[i];
    return { name: this.names[i]!, offset: addr - toAddress(this.offs[i]!), ...(module ? { module } : {}) };
  }

  /** The name of the symbol a kernel offset (address - 0xffff800000000000) falls in, without a BigInt. */
  nameAtOffset(k: number): string | undefined {
    const i = this.indexOf(k);
    return i < 0 ? undefined : this.names[i];
  }

  private indexOf(k: number): number {
    const a = this.offs;
    if (k < 0 || a.length === 0 || k < a[0]! || k > a[a.length - 1]! + 0x100000) return -1;
    let lo = 0;
    let hi = a.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (a[mid]! <= k) lo = mid;
      else hi = mid - 1;
    }
    return k - a[lo]! > 0x100000 ? -1 : lo;
  }
}
