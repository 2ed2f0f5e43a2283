// kleak's own NDJSON recordings: one JSON object a line, each a ParseSink call (sources/recording-writer.ts
// writes them), so a recording replays to exactly what the live run saw.
//   {"kleak":1,"kind":"header",...}   {"kind":"alloc"|"free",...KmemEvent}   {"kind":"stack","cpu":1,"frames":[…]}
//   {"kind":"lost","count":12,"cpu":0}   {"kind":"snapshot",...KernelSnapshot}

import type { AllocatorName, KernelSnapshot, KmemEvent, LineParser, ParseSink, RecordedRun, TraceFormat } from '../event.js';

const ALLOCATOR_NAMES: readonly AllocatorName[] = ['slab', 'vmalloc', 'page', 'percpu'];

type Rec = { kind?: unknown; [k: string]: unknown };

const size = (v: unknown) => v === undefined || (typeof v === 'number' && Number.isFinite(v) && v >= 0);
const strings = (v: unknown) => v === undefined || (Array.isArray(v) && v.every((x) => typeof x === 'string'));

/** An event whose every field has the type the engine counts on (a flipped byte must not become a wrong number). */
function isEvent(r: Rec): r is Rec & KmemEvent {
  return (
    (r.kind === 'alloc' || r.kind === 'free') && typeof r.ts === 'number' && Number.isFinite(r.ts) && typeof r.ptr === 'string' && typeof r.callSite === 'string' &&
    size(r.bytesAlloc) && size(r.bytesReq) && strings(r.stack) && (r.pid === undefined || typeof r.pid === 'number') && (r.comm === undefined || typeof r.comm === 'string') && (r.cgroup === undefined || typeof r.cgroup === 'string') &&
    (r.cache === undefined || typeof r.cache === 'string') && (r.allocator === undefined || ALLOCATOR_NAMES.includes(r.allocator as AllocatorName)) && (r.cpu === undefined || (typeof r.cpu === 'number' && Number.isInteger(r.cpu) && r.cpu >= 0 && r.cpu < 65536))
  );
}

function isSnapshot(r: Rec): r is Rec & KernelSnapshot {
  const site = (s: unknown) => typeof s === 'object' && s !== null && typeof (s as { callSite?: unknown }).callSite === 'string' &&
    ['allocs', 'frees', 'outstanding', 'outstandingBytes'].every((k) => size((s as Record<string, unknown>)[k]) && (s as Record<string, unknown>)[k] !== undefined);
  const out = (o: unknown) => typeof o === 'object' && o !== null && typeof (o as { ptr?: unknown }).ptr === 'string' && typeof (o as { ts?: unknown }).ts === 'number' &&
    typeof (o as { callSite?: unknown }).callSite === 'string' && size((o as { bytesAlloc?: unknown }).bytesAlloc) && strings((o as { stack?: unknown }).stack) &&
    ((o as { cgroup?: unknown }).cgroup === undefined || typeof (o as { cgroup?: unknown }).cgroup === 'string');
  return typeof r.ts === 'number' && Number.isFinite(r.ts) && Array.isArray(r.sites) && r.sites.every(site) && size(r.untracked) &&
    (r.outstanding === undefined || (Array.isArray(r.outstanding) && r.outstanding.every(out)));
}

export class NdjsonParser implements LineParser {
  private header: RecordedRun | undefined;
  private sawEnd = false;

  constructor(private readonly sink: ParseSink) {}

  line(text: string, lineNo: number): void {
    if (text.trim() === '') return;
    let r: Rec;
    try {
      const v: unknown = JSON.parse(text);
      if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not an object');
      r = v as Rec;
    } catch {
      this.sink.bad(lineNo, 'not a JSON object');
      return;
    }
    if (isEvent(r)) {
      this.sink.event(r);
    } else if (r.kind === 'stack' && typeof r.cpu === 'number' && strings(r.frames) && Array.isArray(r.frames)) {
      this.sink.stack(r.cpu, r.frames as string[]);
    } else if (r.kind === 'lost' && typeof r.count === 'number' && Number.isInteger(r.count) && r.count >= 0) {
      this.sink.lost(r.count, typeof r.cpu === 'number' ? r.cpu : undefined);
    } else if (r.kind === 'snapshot' && isSnapshot(r)) {
      this.sink.snapshot?.(r);
    } else if (r.kind === 'header') {
      this.header = r as RecordedRun;
      this.sink.recorded?.(this.header);
    } else if (r.kind === 'end') {
      this.sawEnd = true;
    } else {
      this.sink.bad(lineNo, r.kind === 'alloc' || r.kind === 'free' || r.kind === 'snapshot' || r.kind === 'lost' || r.kind === 'stack' ? `a ${String(r.kind)} record with fields of the wrong type` : `unknown record kind ${JSON.stringify(r.kind)}`);
    }
  }

  /** A recording with a header and no end record was cut short (kleak killed, a disk full): say so. */
  end(): void {
    if (this.header && !this.sawEnd) this.sink.recorded?.({ ...this.header, cutShort: true });
  }
}

export const ndjson: TraceFormat = {
  name: 'ndjson',
  describe: 'kleak NDJSON recordings',
  sniff: (head) => head.some((l) => l.startsWith('{') && l.includes('"kleak"')),
  createParser: (sink) => new NdjsonParser(sink),
};
