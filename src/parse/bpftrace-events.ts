// kleak's own bpftrace output. The line grammar is written once, in the header of bpftrace/kleak-events.bt and
// bpftrace/kleak-pairs.bt, and tested against this parser with real output (test/parse/bpftrace-events.test.ts).
//   events:  A <nsecs> <cpu> <pid> 0x<ptr> <bytes_req> <bytes_alloc> <cache|-> <func> 0x<call_site> <comm…>
//            (a blank line and indented kstack frames may follow: that allocation's stack)
//            F <nsecs> <cpu> <pid> 0x<ptr>
//   pairs:   S <nsecs> <tracked> <listed>, bpftrace map prints (@site[func, allocator, what]: N, @untracked: N,
//            @ptr[0xPTR]: (nsecs, func, req, alloc, pid, comm), @stk[0xPTR]: + frames), E; the call sites (func)
//            are addresses in decimal since kleak names them itself (older output: ksym names, and one map per
//            counter, @site_allocs[func]: N …)
//   both:    R (every probe attached), "Lost N events" (bpftrace's ring buffer overflowed)

import { allocatorCaller } from '../engine/stacks.js';
import type { AllocatorName, KernelSnapshot, KmemEvent, LineParser, OutstandingRecord, ParseSink, TraceFormat } from '../event.js';
import { noStackSite } from './allocator-fields.js';
import { kmallocCache, kmallocLabels, normalisePtr, type KmallocLabels } from './kmem-fields.js';

/** Names a kernel address as %pS does ("func+0x2f [module]"); undefined when no symbol covers it. */
export type Symbolizer = (addr: bigint) => string | undefined;

/**
 * A call site as the program printed it: an address (pairs: decimal; events: 0x hex beside ksym's name) named
 * from kallsyms when the parser has them, else kept in hex; or, in older output, ksym()'s function name.
 */
function callSiteOf(symbols: Symbolizer | undefined, sym: string, hex?: string): string {
  let addr: bigint | undefined;
  // bpftrace 0.17 prints the u64 as signed: kernel addresses come out negative (-2122985142 = 0xffffffff8175d14a).
  if (/^-?\d{6,20}$/.test(sym)) addr = BigInt.asUintN(64, BigInt(sym));
  else if (hex !== undefined && /^0x[0-9a-f]+$/.test(hex) && symbols !== undefined) addr = BigInt(hex);
  else if (/^0x[0-9a-f]+$/.test(sym)) return sym.slice(2);
  if (addr === undefined) return sym === '' && hex ? hex.replace(/^0x/, '') : sym;
  return symbols?.(addr) ?? addr.toString(16);
}

/**
 * A kstack frame line: perf mode "\tffffffff8164da2b __kvmalloc_node_noprof+779" (named from kallsyms, module kept),
 * or the older "        user_preparse+47". Offsets are dropped: stacks group by function.
 */
function frameOf(symbols: Symbolizer | undefined, f: string): string {
  const perf = /^([0-9a-f]{8,16}) (\S+)/.exec(f);
  if (perf) {
    const named = symbols?.(BigInt(`0x${perf[1]}`));
    if (named !== undefined) return named.replace(/\+0x[0-9a-f]+/, '');
    f = perf[2]!;
  }
  const plus = f.indexOf('+');
  return plus > 0 ? f.slice(0, plus) : f;
}

interface SiteCounters {
  allocs: number;
  frees: number;
  missed: number;
  abytes: number;
  fbytes: number;
  mbytes: number;
}

/** The counters of the one-map output, by its "what" number (kleak-pairs.bt's header). */
const SITE_WHAT: readonly (keyof SiteCounters)[] = ['allocs', 'frees', 'missed', 'abytes', 'fbytes', 'mbytes'];

/** The counters of older output, one map each. */
const SITE_FIELD: Record<string, keyof SiteCounters> = {
  site_allocs: 'allocs',
  site_frees: 'frees',
  site_missed: 'missed',
  site_abytes: 'abytes',
  site_fbytes: 'fbytes',
  site_mbytes: 'mbytes',
};

interface PendingSnapshot {
  ts: number;
  listed: boolean;
  untracked: number;
  /** By call site and allocator ("site\0allocator"). */
  sites: Map<string, SiteCounters>;
  records: Map<string, OutstandingRecord>;
  stacks: Map<string, string[]>;
  stackPtr: string | undefined;
  /** A stack-keyed site map entry being read: its map name and frames so far (@ssite[\n frames \n, A, what]: N). */
  stackKey: { map: string; frames: string[] } | undefined;
}

/** The allocator numbers of kleak-pairs.bt (0 is slab). */
const ALLOCATOR_OF: readonly AllocatorName[] = ['slab', 'vmalloc', 'page', 'percpu'];

/** A pointer as printed: 0x hex (a pointer type), or a decimal u64 printed signed (a cast to uint64). */
function ptrOf(text: string): string | null | undefined {
  if (/^-?\d+$/.test(text)) {
    const v = BigInt.asUintN(64, BigInt(text));
    return v === 0n ? null : v.toString(16);
  }
  return normalisePtr(text);
}

/** Which counter a site map line adds to: its "what" number in the one-map output, else its map's name. */
function fieldOf(map: string, what: string | undefined): keyof SiteCounters | undefined {
  if (map === 'site' || map === 'ssite') return what !== undefined && /^[0-5]$/.test(what) ? SITE_WHAT[Number(what)] : undefined;
  return what === undefined ? SITE_FIELD[map.replace(/^ssite_/, 'site_')] : undefined;
}

const MAP_LINE = /^@(\w+)(?:\[(.*)\])?: ?(.*)$/;

export class BpftraceEventsParser implements LineParser {
  private pending: KmemEvent | undefined;
  private frames: string[] = [];
  private snap: PendingSnapshot | undefined;

  constructor(
    private readonly sink: ParseSink,
    /** Names call sites and frames from this host's kallsyms (live runs); replays of raw output keep addresses. */
    private readonly symbols?: Symbolizer,
    /** The kmem_cache a --cache run traced: its slab objects' cache (the pointer records do not print it). */
    private readonly cacheName?: string,
    /** How the traced machine serves each kmalloc size (its slab allocator and page size). */
    private readonly labels?: KmallocLabels,
  ) {}

  line(text: string, lineNo: number): void {
    const c0 = text.charCodeAt(0);
    if (c0 === 9 || c0 === 32) {
      // A kstack frame
      const f = text.trim();
      const frame = frameOf(this.symbols, f);
      if (this.snap?.stackKey !== undefined) this.snap.stackKey.frames.push(frame);
      else if (this.snap?.stackPtr !== undefined) this.snap.stacks.get(this.snap.stackPtr)!.push(frame);
      else if (this.pending !== undefined) this.frames.push(frame);
      else if (f !== '') this.sink.bad(lineNo, 'stack frame without an allocation');
      return;
    }
    if (text === '') return; // kstack's leading newline, and the blank lines between map prints
    // A new snapshot while one is open: bpftrace stopped mid-snapshot (SIGINT runs END, whose final snapshot
    // follows). The unfinished one is dropped; the final one is complete.
    if (this.snap && !text.startsWith('S ')) return this.snapshotLine(text, lineNo);
    this.snap = undefined;
    this.flush();
    if (text === 'R' || text.startsWith('Attaching ')) return; // attached: the source watches for R
    switch (text.charCodeAt(0)) {
      case 65 /* A */:
        return this.alloc(text, lineNo);
      case 70 /* F */:
        return this.free(text, lineNo);
      case 83 /* S */: {
        const sp = text.split(' ');
        const ts = Number(sp[1]);
        if (sp.length !== 4 || !Number.isFinite(ts)) return this.sink.bad(lineNo, 'malformed snapshot start');
        this.snap = { ts: ts / 1e9, listed: sp[3] === '1', untracked: 0, sites: new Map(), records: new Map(), stacks: new Map(), stackPtr: undefined, stackKey: undefined };
        return;
      }
    }
    const lost = /^Lost (\d+) events/.exec(text);
    if (lost) return this.sink.lost(Number(lost[1]));
    // bpftrace's own chatter and maps printed at exit are not data.
    if (text.startsWith('WARNING') || text.startsWith('@') || text.startsWith('ERROR: Unknown error -1: couldn')) return;
    this.sink.bad(lineNo, 'not a kleak bpftrace record');
  }

  end(): void {
    this.flush();
  }

  private alloc(text: string, lineNo: number): void {
    const sp = text.split(' ');
    if (sp.length < 11) return this.sink.bad(lineNo, 'short allocation record');
    const ptr = normalisePtr(sp[4]!);
    if (ptr === null) return;
    const bytesAlloc = Number(sp[6]);
    const ts = Number(sp[1]);
    if (ptr === undefined || !Number.isFinite(bytesAlloc) || !Number.isFinite(ts)) return this.sink.bad(lineNo, 'malformed allocation record');
    const kmalloc = sp[7] === '-';
    this.pending = {
      kind: 'alloc', ts: ts / 1e9, ptr, callSite: callSiteOf(this.symbols, sp[8]!, sp[9]), tracepoint: kmalloc ? 'kmalloc' : 'kmem_cache_alloc',
      pid: Number(sp[3]), comm: bufText(sp.slice(10).join(' ')), cpu: Number(sp[2]),
      bytesReq: Number(sp[5]), bytesAlloc, cache: kmalloc ? kmallocCache(bytesAlloc, false, this.labels) : sp[7]!,
    };
  }

  private free(text: string, lineNo: number): void {
    const sp = text.split(' ');
    const ts = Number(sp[1]);
    if (sp.length !== 5 || !Number.isFinite(ts)) return this.sink.bad(lineNo, 'malformed free record');
    const ptr = normalisePtr(sp[4]!);
    if (ptr === null) return;
    if (ptr === undefined) return this.sink.bad(lineNo, 'malformed free record');
    this.sink.event({ kind: 'free', ts: ts / 1e9, ptr, callSite: '', tracepoint: 'kfree', pid: Number(sp[3]), cpu: Number(sp[2]) });
  }

  private snapshotLine(text: string, lineNo: number): void {
    const s = this.snap!;
    if (text === 'E') {
      this.snap = undefined;
      return this.emitSnapshot(s);
    }
    // A stack-keyed site: "@ssite[" … frames … ", 1, 0]: 3" (older output: "@ssite_allocs[" … ", 1]: 3")
    const open = /^@(ssite(?:_\w+)?)\[$/.exec(text);
    if (open) {
      s.stackPtr = undefined;
      s.stackKey = { map: open[1]!, frames: [] };
      return;
    }
    if (s.stackKey !== undefined) {
      const close = /^, (\d+)(?:, (\d+))?\]: (\d+)$/.exec(text);
      const k = s.stackKey;
      s.stackKey = undefined;
      const field = close ? fieldOf(k.map, close[2]) : undefined;
      if (!close || field === undefined) return this.sink.bad(lineNo, `malformed stack-keyed site: ${JSON.stringify(text.slice(0, 60))}`);
      const allocator = ALLOCATOR_OF[Number(close[1])] ?? 'slab';
      const by = allocator === 'vmalloc' || allocator === 'page' ? allocator : undefined;
      const site = by ? (allocatorCaller(by, k.frames) ?? noStackSite(by)) : (k.frames[0] ?? noStackSite(allocator));
      return this.count(s, field, site, allocator, Number(close[3]));
    }
    const m = MAP_LINE.exec(text);
    if (!m) return this.sink.bad(lineNo, `malformed snapshot line: ${JSON.stringify(text.slice(0, 60))}`);
    const [, map, key, value] = m as unknown as [string, string, string | undefined, string];
    s.stackPtr = undefined;
    if ((map === 'site' || SITE_FIELD[map] !== undefined) && key !== undefined) {
      // "call site, allocator, what" keys; older output: "call site, allocator" or the call site alone (slab),
      // with the counter in the map's name
      const parts = key.split(', ');
      const shape = map === 'site' ? parts.length === 3 : parts.length <= 2;
      const field = fieldOf(map, map === 'site' ? parts.pop() : undefined);
      if (field === undefined || !shape) return this.sink.bad(lineNo, `malformed site counter: ${JSON.stringify(text.slice(0, 60))}`);
      const allocator = parts.length === 2 ? (ALLOCATOR_OF[Number(parts[1]) & 15] ?? 'slab') : 'slab';
      this.count(s, field, callSiteOf(this.symbols, parts[0]!), allocator, Number(value));
    } else if (map === 'untracked') {
      s.untracked = Number(value);
    } else if (map === 'ptr' && key !== undefined) {
      // (nsecs, site, bytes_req, bytes_alloc, pid, comm[, allocator]) — comm may hold ", ".
      const inner = value.replace(/^\(/, '').replace(/\)$/, '').split(', ');
      const ptr = ptrOf(key);
      if (inner.length < 6 || !ptr) return this.sink.bad(lineNo, 'malformed pointer record');
      const withAllocator = inner.length >= 7 && /^\d{1,2}$/.test(inner[inner.length - 1]!);
      // The allocator number, plus 16 for an accounted kmalloc (kmalloc-cg-N).
      const tag = withAllocator ? Number(inner[inner.length - 1]) : 0;
      const allocator = ALLOCATOR_OF[tag & 15] ?? 'slab';
      const bytesAlloc = Number(inner[3]);
      s.records.set(ptr, {
        ptr, ts: Number(inner[0]) / 1e9, callSite: allocator === 'vmalloc' || allocator === 'page' ? noStackSite(allocator) : callSiteOf(this.symbols, inner[1]!),
        bytesReq: Number(inner[2]), bytesAlloc, cache: allocator === 'slab' ? (this.cacheName ?? kmallocCache(bytesAlloc, (tag & 16) !== 0, this.labels)) : allocator, pid: Number(inner[4]),
        comm: bufText(inner.slice(5, withAllocator ? -1 : undefined).join(', ')), ...(allocator !== 'slab' ? { allocator } : {}),
      });
    } else if (map === 'stk' && key !== undefined) {
      const ptr = ptrOf(key);
      if (ptr) {
        s.stacks.set(ptr, []);
        s.stackPtr = ptr;
      }
    }
  }

  private count(s: PendingSnapshot, field: keyof SiteCounters, callSite: string, allocator: AllocatorName, value: number): void {
    const key = `${callSite}\0${allocator}`;
    let c = s.sites.get(key);
    if (!c) s.sites.set(key, (c = { allocs: 0, frees: 0, missed: 0, abytes: 0, fbytes: 0, mbytes: 0 }));
    c[field] += value;
  }

  private emitSnapshot(s: PendingSnapshot): void {
    const snap: KernelSnapshot = {
      ts: s.ts,
      untracked: s.untracked,
      sites: [...s.sites].map(([key, c]) => ({
        callSite: key.slice(0, key.indexOf('\0')),
        ...(key.endsWith('\0slab') ? {} : { allocator: key.slice(key.indexOf('\0') + 1) as AllocatorName }),
        allocs: c.allocs, frees: c.frees, missedFrees: c.missed,
        outstanding: Math.max(0, c.allocs - c.frees - c.missed), outstandingBytes: Math.max(0, c.abytes - c.fbytes - c.mbytes),
      })),
    };
    if (s.listed) {
      snap.outstanding = [...s.records.values()];
      for (const r of snap.outstanding) {
        const st = s.stacks.get(r.ptr);
        if (st && st.length > 0) r.stack = st;
        // vmalloc areas and pages are named by the first frame of their stack outside the allocator.
        if ((r.allocator === 'vmalloc' || r.allocator === 'page') && st) r.callSite = allocatorCaller(r.allocator, st) ?? r.callSite;
      }
    }
    this.sink.snapshot?.(snap);
  }

  private flush(): void {
    if (this.pending === undefined) return;
    if (this.frames.length > 0) {
      this.pending.stack = this.frames;
      this.frames = [];
    }
    this.sink.event(this.pending);
    this.pending = undefined;
  }
}

export const bpftraceEvents: TraceFormat = {
  name: 'bpftrace',
  describe: "kleak's bpftrace output",
  sniff: (head) => head.some((l) => /^(?:A \d+ \d+ \d+ 0x[0-9a-f]+ \d+ \d+ |F \d+ \d+ \d+ 0x[0-9a-f]+$|S \d+ \d+ [01]$)/.test(l)),
  createParser: (sink, o) => new BpftraceEventsParser(sink, undefined, undefined, kmallocLabels(o?.slab, o?.pageSize)),
};

/**
 * A task name as bpftrace prints buf(comm, 16): printable bytes as they are, any other byte as \xNN, the padding as
 * \x00. Only escapes of bytes bpftrace would not print raw are read back, so a name that holds the text "\x41"
 * stays as it is; the bytes are UTF-8.
 */
export function bufText(printed: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < printed.length; i++) {
    const m = printed.charCodeAt(i) === 92 ? /^\\x([0-9a-f]{2})/.exec(printed.slice(i, i + 4)) : null;
    const b = m ? parseInt(m[1]!, 16) : -1;
    if (m && (b < 0x20 || b >= 0x7f)) {
      if (b === 0) break;
      bytes.push(b);
      i += 3;
    } else bytes.push(printed.charCodeAt(i) & 0xff);
  }
  return Buffer.from(bytes).toString('utf8');
}
