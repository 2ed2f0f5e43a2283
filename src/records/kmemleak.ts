// /sys/kernel/debug/kmemleak reports (docs/formats.md "Kernel records"): blocks of `unreferenced object 0xADDR (size N):`, a comm line
// (older kernels add `(age S.SSSs)`), a hex dump, `backtrace:` (newer `backtrace (crc HEX):`) and one frame a line
// (older `[<ADDR>] func+0xOFF/0xSIZE [module]`, newer without the address). People cat it every few minutes into
// one file or many; an object reported again is the same object (deduplicated by address within a reading), and a
// reading ends at a separator line or when an address it already holds comes again.

import type { RecordFormat } from './format.js';
import { timeOf } from './format.js';
import { SiteTally } from './model.js';

/** Allocator and kmemleak frames at the top of a backtrace: the site is the first frame after them. */
const ALLOCATOR = /^(?:kmemleak_\w+|__kmalloc\w*|kmalloc\w*|kmem_cache_alloc\w*|__kmem_cache_alloc\w*|slab_post_alloc_hook|slab_alloc\w*|kzalloc\w*|kcalloc\w*|krealloc\w*|kmemdup\w*|kstrdup\w*|__do_kmalloc_node|__vmalloc\w*|vmalloc\w*|vzalloc\w*|kvmalloc\w*|__kvmalloc\w*|pcpu_alloc\w*|__alloc_percpu\w*|alloc_pages\w*|__alloc_pages\w*|\w+_noprof)$/;

const OBJECT = /^unreferenced object 0x([0-9a-f]+) \(size (\d+)\):\s*$/;
const FRAME = /^\s+(?:\[<[0-9a-f]+>\]\s+)?([\w.]+)\+0x[0-9a-f]+\/0x[0-9a-f]+(?:\s+\[([\w-]+)\])?\s*$/;

interface Obj {
  size: number;
  frames: { fn: string; module?: string }[];
}

export const kmemleak: RecordFormat = {
  name: 'kmemleak',
  describe: 'kmemleak reports (/sys/kernel/debug/kmemleak)',
  sniff: (head) => head.some((l) => OBJECT.test(l)),
  reader(bad, emit) {
    // An object is added to its site as soon as its backtrace is complete (the next object or separator): a
    // reading keeps its objects' addresses (to see the next report begin) and per-site sums, not the objects.
    let seen = new Set<string>();
    let sites = new SiteTally();
    let ts: number | undefined;
    let obj: Obj | undefined;
    let inBacktrace = false;
    const finish = () => {
      if (obj) addTo(sites, obj);
      obj = undefined;
    };
    const close = () => {
      finish();
      if (seen.size > 0) emit(sites.reading(ts));
      seen = new Set();
      sites = new SiteTally();
      ts = undefined;
    };
    const line = (line: string, lineNo: number) => {
      const o = OBJECT.exec(line);
      if (o) {
        const addr = o[1]!;
        if (seen.has(addr)) close(); // the next report of the same objects
        finish();
        obj = { size: Number(o[2]), frames: [] };
        seen.add(addr);
        inBacktrace = false;
        return;
      }
      if (line.trim() === '') return;
      if (!/^\s/.test(line)) {
        // Not part of an object: a separator between readings (and maybe when it was taken).
        finish();
        if (seen.size > 0) close();
        ts = timeOf(line) ?? ts;
        return;
      }
      if (!obj) return bad(lineNo, 'an indented line outside an unreferenced object');
      const t = line.trim();
      if (/^backtrace( \(crc [0-9a-f]+\))?:$/.test(t)) {
        inBacktrace = true;
        return;
      }
      if (/^comm "/.test(t) || /^hex dump/.test(t) || (!inBacktrace && /^[0-9a-f]{2}( [0-9a-f]{2})*/.test(t))) return;
      if (inBacktrace) {
        const f = FRAME.exec(line);
        if (!f) return bad(lineNo, 'a backtrace frame not of the form func+0xOFF/0xSIZE [module]');
        if (obj.frames.length < MAX_FRAMES) obj.frames.push({ fn: f[1]!, ...(f[2] ? { module: f[2] } : {}) });
        return;
      }
      bad(lineNo, 'a line kmemleak does not print inside an object');
    };
    return { line, end: close };
  },
};

/** kmemleak prints at most 16 frames; a longer backtrace is not kmemleak's and is not kept longer. */
const MAX_FRAMES = 64;

/** Counts an object at its site: the first frame after the allocator's, keyed by the backtrace from there. */
function addTo(sites: SiteTally, o: Obj): void {
  const at = o.frames.findIndex((f) => !ALLOCATOR.test(f.fn));
  const site = o.frames[at < 0 ? 0 : at];
  const frames = o.frames.slice(at < 0 ? 0 : at).map((f) => (f.module ? `${f.fn} [${f.module}]` : f.fn));
  const key = frames.join(' ← ') || '(no backtrace)';
  sites.add({ key, label: site?.fn ?? '(no backtrace)', ...(site?.module ? { module: site.module } : {}), where: key, count: 1, bytes: o.size });
}
