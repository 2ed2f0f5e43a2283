// What a kernel address is, by where it points: the one place that knows an architecture's virtual memory layout
// (docs/census.md). Addresses are handled as "kernel offsets": value - KERNEL_HALF, exact in a double (< 2^47),
// so that millions of words are classified without a BigInt each.

/** The start of the kernel half of the address space on 48-bit x86-64 and arm64 (4-level page tables). */
export const KERNEL_HALF_HI = 0xffff8000;
const TWO32 = 4294967296;

/** A kernel address as an offset into the kernel half, or -1 for a user address or a non-canonical value. */
export function kernelOffset(lo: number, hi: number): number {
  return hi >= KERNEL_HALF_HI ? (hi - KERNEL_HALF_HI) * TWO32 + lo : -1;
}

/** Back to the address, as 16 hex digits. */
export function offsetToHex(k: number): string {
  const hi = Math.floor(k / TWO32) + KERNEL_HALF_HI;
  const lo = k - (hi - KERNEL_HALF_HI) * TWO32;
  return hi.toString(16).padStart(8, '0') + lo.toString(16).padStart(8, '0');
}

export function hexToOffset(hex: string): number {
  const v = BigInt(`0x${hex}`);
  return kernelOffset(Number(v & 0xffffffffn), Number(v >> 32n));
}

export type Arch = 'x86_64' | 'arm64';

/**
 * The regions a word can point into. Measured on x86-64 (this project's VM, 6.18, CONFIG_RANDOMIZE_MEMORY): the direct
 * map and vmemmap bases are found at run time (findBases in src/census/walker.ts); the kernel image and modules sit at fixed
 * places. arm64 (48-bit VA, 4 KiB pages; Documentation/arch/arm64/memory.rst): the linear map starts at
 * 0xffff000000000000 (before 5.4: 0xffff800000000000) and the kernel image, modules and vmalloc share
 * 0xffff800000000000 upwards. The arm64 rows are written from that document and are untested here.
 */
export interface AddressSpace {
  arch: Arch;
  /** Kernel text [start, end) (from _stext and _etext). */
  text: [number, number];
  /** The whole kernel image, text to end of data and bss. */
  image: [number, number];
  /** Modules' area. */
  modules: [number, number];
  /** The direct (linear) map of physical memory. Other kernel addresses (vmalloc, vmemmap, per-CPU) are not told apart. */
  directMap: [number, number];
}

/** x86-64 with 4-level paging: modules and vmalloc live at their documented (Documentation/arch/x86/x86_64/mm.rst) places. */
export function x86AddressSpace(text: [number, number], imageEnd: number, directMap: [number, number]): AddressSpace {
  return {
    arch: 'x86_64',
    text,
    image: [hexToOffset('ffffffff80000000'), imageEnd],
    modules: [hexToOffset('ffffffffa0000000'), hexToOffset('fffffffffeffffff')],
    directMap,
  };
}

/** x86-64 4-level paging's bases when CONFIG_RANDOMIZE_MEMORY does not move them (Documentation/arch/x86/x86_64/mm.rst). */
export const X86_64_DEFAULT_BASES = { pageOffset: 0xffff888000000000n, vmemmap: 0xffffea0000000000n } as const;

export const inRange = (k: number, r: readonly [number, number]) => k >= r[0] && k < r[1];
