// The registry of trace formats. Adding one is a file exporting a TraceFormat and a line here.

import type { FormatName, TraceFormat } from '../event.js';
import { bpftraceEvents } from './bpftrace-events.js';
import { ndjson } from './ndjson.js';
import { traceCmdReport } from './trace-cmd-report.js';
import { tracePipe } from './trace-pipe.js';

export const FORMATS: readonly TraceFormat[] = [ndjson, bpftraceEvents, traceCmdReport, tracePipe];

export function formatByName(name: string): TraceFormat | undefined {
  return FORMATS.find((f) => f.name === name);
}

/** The format whose sniff() accepts the first lines, or undefined. */
export function detectFormat(head: readonly string[]): TraceFormat | undefined {
  return FORMATS.find((f) => f.sniff(head));
}

/** "A (--format a), B (--format b) and C (--format c)", most common first. */
export function acceptedFormatsSentence(): string {
  const order: FormatName[] = ['trace-cmd', 'trace-pipe', 'bpftrace', 'ndjson'];
  const parts = order.map((n) => formatByName(n)!).map((f) => `${f.describe} (--format ${f.name})`);
  return `${parts.slice(0, -1).join(', ')} and ${parts[parts.length - 1]}`;
}
