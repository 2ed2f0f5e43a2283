// A ParseSink that records every call, for parser tests.
import type { KernelSnapshot, KmemEvent, LineParser, ParseSink, TraceFormat } from '../../src/event.js';

export class Collector implements ParseSink {
  events: KmemEvent[] = [];
  stacks: { cpu: number; frames: string[] }[] = [];
  lostEvents: { count: number; cpu: number | undefined }[] = [];
  badLines: { lineNo: number; reason: string }[] = [];
  snapshots: KernelSnapshot[] = [];
  notices: string[] = [];
  event(e: KmemEvent): void {
    // As a recording would hold it: parsers may hand out objects with lazily made fields (parse/kmem-fields.ts).
    this.events.push(JSON.parse(JSON.stringify(e)) as KmemEvent);
  }
  stack(cpu: number, frames: string[]): void {
    this.stacks.push({ cpu, frames: [...frames] });
  }
  lost(count: number, cpu?: number): void {
    this.lostEvents.push({ count, cpu });
  }
  bad(lineNo: number, reason: string): void {
    this.badLines.push({ lineNo, reason });
  }
  snapshot(s: KernelSnapshot): void {
    this.snapshots.push(s);
  }
  notice(text: string): void {
    this.notices.push(text);
  }
}

/** Feeds lines (a string with newlines, or an array) through a fresh parser of the format. */
export function parseLines(format: TraceFormat, lines: string | string[]): Collector {
  const c = new Collector();
  const p: LineParser = format.createParser(c);
  const list = typeof lines === 'string' ? lines.split('\n') : lines;
  list.forEach((l, i) => p.line(l, i + 1));
  p.end();
  return c;
}
