// /proc/vmallocinfo as data: one line per vmap area, `START-END SIZE CALLER [module] [pages=N] [phys=…] TYPE… [N0=…]`
// (mm/vmalloc.c s_show). kleak watch groups the areas by (caller function, module, type): a gauge per caller,
// judged like a slab cache. Lines it cannot read are counted with their numbers, never fatal.

export interface VmallocGroup {
  /** The caller's function (offset dropped), or "(no caller)" for `unpurged vm_area` lines. */
  caller: string;
  module?: string;
  /** vmalloc, vmap, ioremap, user, vpages, dma-coherent, vm_area (unpurged), or "-" when none is printed. */
  type: string;
  areas: number;
  bytes: number;
  pages: number;
}

export interface VmallocReading {
  groups: VmallocGroup[];
  badLines: number[];
}

const TYPES = new Set(['vmalloc', 'vmap', 'ioremap', 'user', 'vpages', 'dma-coherent', 'vm_area', 'vm_map_ram']);

export function parseVmallocinfo(text: string): VmallocReading {
  const groups = new Map<string, VmallocGroup>();
  const badLines: number[] = [];
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    const f = line.trim().split(/\s+/);
    const size = Number(f[1]);
    if (f.length < 2 || !/^0x[0-9a-f]+-0x[0-9a-f]+$/.test(f[0]!) || !Number.isInteger(size) || size < 0) {
      badLines.push(i + 1);
      return;
    }
    let k = 2;
    let caller = '(no caller)';
    if (f[k] !== undefined && /\+0x[0-9a-f]+\/0x[0-9a-f]+$/.test(f[k]!)) caller = f[k++]!.replace(/\+0x.*$/, '');
    let module: string | undefined;
    if (f[k]?.startsWith('[') && f[k]!.endsWith(']')) module = f[k++]!.slice(1, -1);
    let pages = 0;
    let type = '-';
    for (; k < f.length; k++) {
      const w = f[k]!;
      if (w.startsWith('pages=')) pages = Number(w.slice(6)) || 0;
      else if (type === '-' && TYPES.has(w)) type = w;
    }
    const key = `${caller}\0${module ?? ''}\0${type}`;
    let g = groups.get(key);
    if (!g) groups.set(key, (g = { caller, ...(module ? { module } : {}), type, areas: 0, bytes: 0, pages: 0 }));
    g.areas++;
    g.bytes += size;
    g.pages += pages;
  });
  return { groups: [...groups.values()], badLines };
}
