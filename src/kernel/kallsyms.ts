// /proc/kallsyms as a lookup from a kernel address to function+offset [module], for decoding object contents.
import { readFileSync } from 'node:fs';

export interface KernelSymbol {
  name: string;
  offset: bigint;
  module?: string;
}

export class Kallsyms {
  private constructor(
    private readonly addrs: bigint[],
    private readonly names: string[],
    private readonly modules: (string | undefined)[],
  ) {}

  /** Text symbols (t, T, w, W) of /proc/kallsyms; addresses are zeros unless kptr_restrict allows (root here). */
  static load(text = readFileSync('/proc/kallsyms', 'utf8')): Kallsyms {
    const rows: [bigint, string, string | undefined][] = [];
    for (const line of text.split('\n')) {
      const m = /^([0-9a-f]+) ([tTwW]) (\S+)(?:\s+\[(\S+)\])?/.exec(line);
      if (!m) continue;
      const a = BigInt(`0x${m[1]}`);
      if (a !== 0n) rows.push([a, m[3]!, m[4]]);
    }
    rows.sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0));
    return new Kallsyms(rows.map((r) => r[0]), rows.map((r) => r[1]), rows.map((r) => r[2]));
  }

  /** The address of a text symbol by name (the first of several with one name), or undefined. */
  address(name: string): bigint | undefined {
    const i = this.names.indexOf(name);
    return i < 0 ? undefined : this.addrs[i];
  }

  /** [start, end) of a text symbol by name: its address up to the next symbol's; undefined when absent. */
  range(name: string): { start: bigint; end: bigint } | undefined {
    const i = this.names.indexOf(name);
    if (i < 0) return undefined;
    const start = this.addrs[i]!;
    let j = i + 1;
    while (j < this.addrs.length && this.addrs[j] === start) j++;
    return { start, end: j < this.addrs.length ? this.addrs[j]! : start + 1n };
  }

  /** 'func+0xOFF' or 'func+0xOFF [module]', as the kernel's %pS prints it; raw hex when no symbol covers it. */
  format(addr: bigint): string {
    const s = this.lookup(addr);
    if (!s) return addr.toString(16);
    return `${s.name}+0x${s.offset.toString(16)}${s.module ? ` [${s.module}]` : ''}`;
  }

  get size(): number {
    return this.addrs.length;
  }

  /** The symbol an address falls in: the nearest one at or below it, within 1 MiB (past the last, nothing). */
  lookup(addr: bigint): KernelSymbol | undefined {
    const a = this.addrs;
    if (a.length === 0 || addr < a[0]! || addr > a[a.length - 1]! + 0x100000n) return undefined;
    let lo = 0;
    let hi = a.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (a[mid]! <= addr) lo = mid;
      else hi = mid - 1;
    }
    const offset = addr - a[lo]!;
    if (offset > 0x100000n) return undefined;
    const module = this.modules[lo];
    return { name: this.names[lo]!, offset, ...(module ? { module } : {}) };
  }
}
