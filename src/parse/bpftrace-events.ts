// kleak's own bpftrace output (bpftrace/kleak-events.bt and kleak-pairs.bt; the line grammar is written once,
// in the header of those files, and tested against this parser):
//   A <ts_ns> <cpu> <pid> <ptr_hex> <bytes_req> <bytes_alloc> <cache|-> <call_site_sym> <call_site_hex> <comm…>
//   F <ts_ns> <cpu> <pid> <ptr_hex>
//   <tab-indented kstack frames, then a blank line>      (--stacks: the stack of the A line before)
//   Lost <n> events                                      (bpftrace's own: its ring buffer overflowed)
// Pairs mode (pointer table in the kernel) prints, every interval:
//   S <ts_ns> <untracked> <full 0|1>                     snapshot begins
//   T <call_site_hex> <call_site_sym> <allocs> <frees> <outstanding> <outstanding_bytes>   per call site
//   O <ptr_hex> <ts_ns> <pid> <bytes_req> <bytes_alloc> <call_site_sym> <call_site_hex> <comm…>  one outstanding pointer
//   E                                                    snapshot ends

import type { KernelSnapshot, KmemEvent, LineParser, ParseSink, TraceFormat } from '../event.js';
import { kmallocCache, normalisePtr } from './kmem-fields.js';

function callSiteOf(sym: string, hex: string): string {
  // ksym() gives the function without offset; an unresolved address prints as hex.
  return sym === '' || sym === hex || /^0x/.test(sym) ? hex.replace(/^0x/, '') : sym;
}

export class BpftraceEventsParser implements LineParser {
  private pending: KmemEvent | undefined;
  private frames: string[] = [];
  private snap: KernelSnapshot | undefined;

  constructor(private readonly sink: ParseSink) {}

  line(text: string, lineNo: number): void {
    const c0 = text.charCodeAt(0);
    if (c0 === 9 || c0 === 32) {
      // A kstack frame: "        user_preparse+47"
      const f = text.trim();
      if (this.pending !== undefined && f !== '') {
        const plus = f.indexOf('+');
        this.frames.push(plus > 0 ? f.slice(0, plus) : f);
        return;
      }
      if (f === '') return;
    }
    this.flush();
    if (text === '') return;
    const sp = text.split(' ');
    switch (sp[0]) {
      case 'A': {
        if (sp.length < 11) return this.sink.bad(lineNo, 'short allocation record');
        const ptr = normalisePtr(sp[4]!);
        if (ptr === null) return;
        const bytesAlloc = Number(sp[6]);
        if (ptr === undefined || !Number.isFinite(bytesAlloc)) return this.sink.bad(lineNo, 'malformed allocation record');
        const cache = sp[7] === '-' ? kmallocCache(bytesAlloc, false) : sp[7]!;
        this.pending = {
          kind: 'alloc', ts: Number(sp[1]) / 1e9, cpu: Number(sp[2]), pid: Number(sp[3]), ptr,
          bytesReq: Number(sp[5]), bytesAlloc, cache, callSite: callSiteOf(sp[8]!, sp[9]!),
          tracepoint: sp[7] === '-' ? 'kmalloc' : 'kmem_cache_alloc', comm: sp.slice(10).join(' '),
        };
        return;
      }
      case 'F': {
        if (sp.length < 5) return this.sink.bad(lineNo, 'short free record');
        const ptr = normalisePtr(sp[4]!);
        if (ptr === null) return;
        if (ptr === undefined) return this.sink.bad(lineNo, 'malformed free record');
        this.sink.event({ kind: 'free', ts: Number(sp[1]) / 1e9, cpu: Number(sp[2]), pid: Number(sp[3]), ptr, callSite: '', tracepoint: 'kfree' });
        return;
      }
      case 'Lost': {
        const n = Number(sp[1]);
        if (Number.isFinite(n)) this.sink.lost(n);
        return;
      }
      case 'S':
        this.snap = { ts: Number(sp[1]) / 1e9, untracked: Number(sp[2]), sites: [], ...(sp[3] === '1' ? { outstanding: [] } : {}) };
        return;
      case 'T':
        if (this.snap && sp.length >= 7) {
          this.snap.sites.push({
            callSite: callSiteOf(sp[2]!, sp[1]!), allocs: Number(sp[3]), frees: Number(sp[4]),
            outstanding: Number(sp[5]), outstandingBytes: Number(sp[6]),
          });
        } else this.sink.bad(lineNo, 'site total outside a snapshot');
        return;
      case 'O': {
        const ptr = normalisePtr(sp[1] ?? '');
        if (this.snap?.outstanding && ptr && sp.length >= 8) {
          const bytesAlloc = Number(sp[5]);
          this.snap.outstanding.push({
            ptr, ts: Number(sp[2]) / 1e9, pid: Number(sp[3]), bytesReq: Number(sp[4]), bytesAlloc,
            cache: kmallocCache(bytesAlloc, false), callSite: callSiteOf(sp[6]!, sp[7]!), comm: sp.slice(8).join(' '),
          });
        } else this.sink.bad(lineNo, 'malformed outstanding record');
        return;
      }
      case 'E':
        if (this.snap) this.sink.snapshot?.(this.snap);
        this.snap = undefined;
        return;
      default:
        // bpftrace's own chatter ("Attaching 4 probes...") is not data.
        if (/^Attaching \d+ probes?/.test(text) || text.startsWith('WARNING') || text.startsWith('@')) return;
        this.sink.bad(lineNo, 'not a kleak bpftrace record');
    }
  }

  end(): void {
    this.flush();
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
  sniff: (head) => head.some((l) => /^(?:A \d+ \d+ \d+ \S+ \d+ \d+ |F \d+ \d+ \d+ \S+$|S \d+ \d+ [01]$)/.test(l)),
  createParser: (sink) => new BpftraceEventsParser(sink),
};
