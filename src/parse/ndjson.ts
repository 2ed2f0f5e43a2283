// kleak's own NDJSON recordings: one JSON object a line, each a ParseSink call (sources/recording-writer.ts
// writes them), so a recording replays to exactly what the live run saw.
//   {"kleak":1,"kind":"header",...}   {"kind":"alloc"|"free",...KmemEvent}   {"kind":"stack","cpu":1,"frames":[…]}
//   {"kind":"lost","count":12,"cpu":0}   {"kind":"snapshot",...KernelSnapshot}

import type { KernelSnapshot, KmemEvent, LineParser, ParseSink, RecordedRun, TraceFormat } from '../event.js';

type Rec = { kind?: unknown; [k: string]: unknown };

function isEvent(r: Rec): r is Rec & KmemEvent {
  return (r.kind === 'alloc' || r.kind === 'free') && typeof r.ts === 'number' && typeof r.ptr === 'string' && typeof r.callSite === 'string';
}

export class NdjsonParser implements LineParser {
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
    } else if (r.kind === 'stack' && typeof r.cpu === 'number' && Array.isArray(r.frames)) {
      this.sink.stack(r.cpu, r.frames.map(String));
    } else if (r.kind === 'lost' && typeof r.count === 'number') {
      this.sink.lost(r.count, typeof r.cpu === 'number' ? r.cpu : undefined);
    } else if (r.kind === 'snapshot' && typeof r.ts === 'number' && Array.isArray(r.sites)) {
      this.sink.snapshot?.(r as unknown as KernelSnapshot);
    } else if (r.kind === 'header') {
      this.sink.recorded?.(r as RecordedRun);
    } else if (r.kind !== 'end') {
      this.sink.bad(lineNo, `unknown record kind ${JSON.stringify(r.kind)}`);
    }
  }

  end(): void {}
}

export const ndjson: TraceFormat = {
  name: 'ndjson',
  describe: 'kleak NDJSON recordings',
  sniff: (head) => head.some((l) => l.startsWith('{') && l.includes('"kleak"')),
  createParser: (sink) => new NdjsonParser(sink),
};
