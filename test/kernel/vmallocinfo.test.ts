// /proc/vmallocinfo: this machine's real file, and the documented layout's variants (module, pages, phys, unpurged).
import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { WatchModel } from '../../src/engine/watch.js';
import { parseVmallocinfo } from '../../src/kernel/vmallocinfo.js';

// Layout of mm/vmalloc.c s_show (docs/formats.md); the module line is of the documented shape, not from this VM.
const SAMPLE = [
  '0x000000004ec505e8-0x00000000068d88ad   20480 irq_init_percpu_irqstack+0xed/0x120 vmap',
  '0x00000000068d88ad-0x00000000aa2b9765    8192 acpi_os_map_iomem+0x1bc/0x1e0 phys=0x00000000000a0000 ioremap',
  '0x00000000d4c05a8e-0x00000000637818db   20480 kernel_clone+0xb8/0x400 pages=4 vmalloc N0=4',
  '0x00000000d4c05a8e-0x00000000637818db   20480 kernel_clone+0xb8/0x400 pages=4 vmalloc N0=4',
  '0xffffc90000c6d000-0xffffc90000d6f000 1056768 drv_ring_init+0x2d/0x70 [drv] pages=257 vmalloc vpages N0=257',
  '0xffffc90000d6f000-0xffffc90000d71000    8192 unpurged vm_area',
  'garbage that is not an area',
  '0xffffc90000d71000-0xffffc90000d73000 notanumber kernel_clone+0xb8/0x400 vmalloc',
].join('\n');

describe('vmallocinfo', () => {
  it('groups areas by caller, module and type, and counts what it cannot read with line numbers', () => {
    const r = parseVmallocinfo(SAMPLE);
    const by = (c: string) => r.groups.find((g) => g.caller === c);
    expect(by('kernel_clone')).toEqual({ caller: 'kernel_clone', type: 'vmalloc', areas: 2, bytes: 40960, pages: 8 });
    expect(by('drv_ring_init')).toEqual({ caller: 'drv_ring_init', module: 'drv', type: 'vmalloc', areas: 1, bytes: 1056768, pages: 257 });
    expect(by('acpi_os_map_iomem')?.type).toBe('ioremap');
    expect(by('(no caller)')?.type).toBe('vm_area');
    expect(r.badLines).toEqual([7, 8]);
  });

  it("this machine's /proc/vmallocinfo reads with no bad line", (ctx) => {
    ctx.skip(!existsSync('/proc/vmallocinfo'), 'no /proc/vmallocinfo');
    let text: string;
    try {
      text = readFileSync('/proc/vmallocinfo', 'utf8');
    } catch {
      return ctx.skip(true, '/proc/vmallocinfo is not readable here (needs root)');
    }
    const r = parseVmallocinfo(text);
    expect(r.badLines).toEqual([]);
    expect(r.groups.reduce((n, g) => n + g.areas, 0)).toBe(text.trim().split('\n').length);
  });

  it('a caller that gains areas every sample is growing in watch; one that comes and goes is not', () => {
    const m = new WatchModel();
    for (let i = 0; i < 12; i++) {
      const leak = { caller: 'drv_ring_init', module: 'drv', type: 'vmalloc', areas: 3 + 2 * i, bytes: (3 + 2 * i) * 1056768, pages: (3 + 2 * i) * 257 };
      const burst = { caller: 'kernel_clone', type: 'vmalloc', areas: i % 2 ? 40 : 4, bytes: (i % 2 ? 40 : 4) * 20480, pages: 0 };
      m.add({ ts: i * 2, meminfo: { MemTotal: 1000, VmallocUsed: 1000 + 2000 * i }, slabs: [], vmalloc: [leak, burst] });
    }
    const r = m.report();
    expect(r.vmallocCallers![0]).toMatchObject({ caller: 'drv_ring_init', module: 'drv', verdict: 'growing', areas: 25 });
    expect(r.vmallocCallers!.find((c) => c.caller === 'kernel_clone')!.verdict).not.toBe('growing');
    expect(r.meminfo.find((x) => x.name === 'VmallocUsed')).toMatchObject({ verdict: 'growing', next: 'sudo kleak live --alloc vmalloc' });
  });
});
