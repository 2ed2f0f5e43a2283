// The tracefs backend's binary reader (src/sources/tracefs-raw.ts), on real sub-buffers of this VM's ring buffer and
// on pages built by hand for the encodings a short capture does not show.
//
// fixtures/raw-keys5: a private instance (trace_clock mono, hash-ptr 0) with kmem:kmalloc filtered to
// bytes_alloc == 4096 plus a stacktrace trigger, and every kmem:kfree, read from per_cpu/cpuN/trace_pipe_raw while
// scripts/workload-keys.py --hold 5 --churn 3 ran (pid 12424): each add_key kvmallocs its 4000-byte payload at
// __do_sys_add_key and frees it at once, and kmallocs 4024 bytes at user_preparse for the key; the 3 churned keys
// were freed by the key GC before the capture ended. The event format files and the kallsyms lines of the addresses
// in it are this kernel's (Linux 6.18).
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import type { KmemEvent } from '../../src/event.js';
import { Kallsyms } from '../../src/kernel/kallsyms.js';
import { parseEventFormat, RawMerger, RawRingDecoder, type EventFormat } from '../../src/sources/tracefs-raw.js';

const F = new URL('fixtures/raw-keys5/', import.meta.url);
const formats = ['kmalloc', 'kfree', 'kernel_stack'].map((n) => parseEventFormat(readFileSync(new URL(`${n}.format`, F), 'utf8'))!);
const syms = Kallsyms.load(readFileSync(new URL('kallsyms.txt', F), 'utf8'));

function decodeFixture(): { decoder: RawRingDecoder; byCpu: KmemEvent[][] } {
  const decoder = new RawRingDecoder(formats, { syms, pageSize: 4096, slab: 'slub', gfpAccount: 1 << 22, comm: (pid) => (pid === 12424 ? 'python3' : undefined) });
  const byCpu = [0, 1].map((cpu) => {
    const b = gunzipSync(readFileSync(new URL(`cpu${cpu}.raw.gz`, F)));
    const out: KmemEvent[] = [];
    for (let o = 0; o < b.length; o += 4096) decoder.page(b.subarray(o, o + 4096), 4096, cpu, out);
    return out;
  });
  return { decoder, byCpu };
}

describe('tracefs raw ring buffers', () => {
  it('reads format files: each field at its offset, with its size (the name is the last word; arrays and __data_loc too)', () => {
    const [kmalloc, , stack] = formats as [EventFormat, EventFormat, EventFormat];
    expect(kmalloc.name).toBe('kmalloc');
    expect(kmalloc.fields.get('call_site')).toEqual({ offset: 8, size: 8 });
    expect(kmalloc.fields.get('bytes_alloc')).toEqual({ offset: 32, size: 8 });
    expect(kmalloc.fields.get('gfp_flags')).toEqual({ offset: 40, size: 8 });
    expect(stack.fields.get('caller')).toEqual({ offset: 16, size: 64 });
    expect(parseEventFormat('not a format')).toBeUndefined();
  });

  it('decodes real sub-buffers: every kmalloc with its call site, sizes, cache, comm and stack; each CPU in time order', () => {
    const { decoder, byCpu } = decodeFixture();
    expect(decoder.malformed).toBe(0);
    const all = byCpu.flat();
    const allocs = all.filter((e) => e.kind === 'alloc');
    const keys = allocs.filter((e) => e.callSite === 'user_preparse+0x2f');
    expect(keys).toHaveLength(8);
    expect(keys[0]).toMatchObject({ bytesReq: 4024, bytesAlloc: 4096, cache: 'kmalloc-4096', pid: 12424, comm: 'python3', tracepoint: 'kmalloc' });
    expect(keys[0]!.stack!.slice(0, 3)).toEqual(['trace_event_raw_event_kmalloc', '__kmalloc_noprof', 'user_preparse']);
    expect(allocs.filter((e) => e.callSite === '__do_sys_add_key+0x106')).toHaveLength(8);
    expect(keys.every((e) => /^ffff8[0-9a-f]{11}$/.test(e.ptr.slice(0, 16)) && e.ptr.length === 16)).toBe(true);
    for (const events of byCpu) for (let i = 1; i < events.length; i++) expect(events[i]!.ts).toBeGreaterThanOrEqual(events[i - 1]!.ts);
    expect(all.filter((e) => e.kind === 'free').length).toBeGreaterThan(900);
  });

  it('merged into time order and paired, exactly the 5 held keys are outstanding (payloads and churned keys freed)', () => {
    const { byCpu } = decodeFixture();
    const merger = new RawMerger();
    byCpu.forEach((events, cpu) => merger.queue(cpu).push(...events));
    const engine = new Engine();
    merger.take(Number.POSITIVE_INFINITY, (e) => engine.event(e));
    const r = engine.report({ kind: 'live' });
    expect(r.sites.map((s) => [s.function, s.outstanding])).toEqual([['user_preparse', 5]]);
    expect(r.totals.matchedFrees).toBe(8 + 3);
  });

  it('the merger hands on only what is before the horizon, in time order across CPUs; the rest waits', () => {
    const ev = (ts: number, cpu: number): KmemEvent => ({ kind: 'free', ts, ptr: `${cpu}${ts}`, callSite: '', tracepoint: 'kfree', cpu });
    const m = new RawMerger();
    const take = (horizon: number) => {
      const out: number[] = [];
      m.take(horizon, (e) => out.push(e.ts));
      return out;
    };
    m.queue(0).push(ev(1, 0), ev(4, 0), ev(6, 0));
    m.queue(1).push(ev(2, 1), ev(5, 1));
    expect(take(5)).toEqual([1, 2, 4]);
    expect(m.size).toBe(2);
    m.queue(2).push(ev(3, 2)); // another CPU's late event before the next horizon
    m.queue(0).push(ev(7, 0));
    expect(take(10)).toEqual([3, 5, 6, 7]);
    expect(m.size).toBe(0);
  });

  it('hand-built pages: a long record (type_len 0), a time extend, padding; a record past the data is counted, never thrown', () => {
    const decoder = new RawRingDecoder(formats, { syms, pageSize: 4096, slab: 'slub', gfpAccount: 1 << 22, comm: () => 'sh' });
    const kfree = formats[1]!;
    const page = Buffer.alloc(4096);
    page.writeBigUInt64LE(1_000_000_000n, 0); // the page's time stamp, ns
    let at = 16;
    const head = (typeLen: number, delta: number) => page.writeUInt32LE(((delta << 5) | typeLen) >>> 0, at);
    const kfreeRecord = (ptrLo: number) => {
      const r = Buffer.alloc(24);
      r.writeUInt16LE(kfree.id, 0);
      r.writeInt32LE(77, 4);
      r.writeUInt32LE(0x81000000, 8);
      r.writeUInt32LE(0xffffffff, 12);
      r.writeUInt32LE(ptrLo, 16);
      r.writeUInt32LE(0xffff8881, 20);
      return r;
    };
    // 1: a 24-byte record with type_len 6 (24 / 4), 100 ns after the page's stamp
    head(6, 100);
    kfreeRecord(0x1000).copy(page, at + 4);
    at += 4 + 24;
    // 2: a time extend of 2^27 + 5 ns
    head(30, 5);
    page.writeUInt32LE(1, at + 4);
    at += 8;
    // 3: padding (a discarded event of 12 bytes)
    head(29, 1);
    page.writeUInt32LE(12, at + 4);
    at += 4 + 12;
    // 4: the same record with its length in the next word (type_len 0; the length counts that word)
    head(0, 0);
    page.writeUInt32LE(24 + 4, at + 4);
    kfreeRecord(0x2000).copy(page, at + 8);
    at += 8 + 24;
    // 5: a record claiming 28 words, past the data's end
    head(28, 0);
    at += 4;
    page.writeBigUInt64LE(BigInt(at - 16), 8); // commit: the data's length
    const out: KmemEvent[] = [];
    decoder.page(page, 4096, 3, out);
    expect(out.map((e) => [e.ptr, e.pid, e.cpu])).toEqual([['ffff888100001000', 77, 3], ['ffff888100002000', 77, 3]]);
    expect(out[0]!.ts).toBeCloseTo(1.0000001, 9);
    expect(out[1]!.ts * 1e9 - out[0]!.ts * 1e9).toBeCloseTo(2 ** 27 + 5 + 1, 0);
    expect(decoder.malformed).toBe(1);
    // A page shorter than its header, and garbage, decode to nothing without throwing.
    expect(() => decoder.page(Buffer.alloc(8), 8, 0, out)).not.toThrow();
    const junk = Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 2654435761) & 255));
    expect(() => decoder.page(junk, 4096, 0, out)).not.toThrow();
  });

  it('damaged records (cut short, flipped pages) are counted, never events with NaN sizes (1,999 of a crafted set were)', () => {
    const decoder = new RawRingDecoder(formats, { syms, pageSize: 4096, slab: 'slub', gfpAccount: 1 << 22, comm: () => 'sh' });
    const kmalloc = formats[0]!;
    const page = Buffer.alloc(4096);
    page.writeBigUInt64LE(1_000_000_000n, 0);
    // A kmalloc record of 12 bytes: its id, flags, pid and half a call site; every other field is past its end.
    page.writeUInt32LE(((1 << 5) | 3) >>> 0, 16);
    page.writeUInt16LE(kmalloc.id, 20);
    page.writeInt32LE(77, 24);
    page.writeBigUInt64LE(16n, 8);
    const out: KmemEvent[] = [];
    decoder.page(page, 4096, 0, out);
    expect(out).toEqual([]);
    expect(decoder.badRecords).toBe(1);
    // The real capture with bytes flipped in every page: whatever decodes has real numbers.
    const flipped: KmemEvent[] = [];
    const b = gunzipSync(readFileSync(new URL('cpu0.raw.gz', F)));
    for (let o = 0; o < b.length; o += 4096) {
      const p = Buffer.from(b.subarray(o, o + 4096));
      for (let i = 16; i < 4096; i += 97) p[i] = p[i]! ^ 0x5a;
      decoder.page(p, 4096, 0, flipped);
    }
    for (const e of flipped) {
      if (e.kind !== 'alloc') continue;
      expect(Number.isFinite(e.bytesAlloc)).toBe(true);
      expect(Number.isFinite(e.ts)).toBe(true);
    }
  });
});
