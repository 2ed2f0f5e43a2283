// The registry of trace formats. Adding one is a file exporting a TraceFormat and a line here.

import type { FormatName, TraceFormat } from '../event.js';
import { bpftraceEvents } from './bpftrace-events.js';
import { ndjson } from './ndjson.js';
import { traceCmdReport } from './trace-cmd-report.js';
import { tracePipe } from './trace-pipe.js';

export const FORMATS: readonly TraceFormat[] = [ndjson, bpftraceEvents, traceCmdReport, tracePipe];

export const FORMAT_NAMES: readonly FormatName[] = FORMATS.map((f) => f.name);

export function formatByName(name: string): TraceFormat | undefined {
  return FORMATS.find((f) => f.name === name);
}

/** The format whose sniff() accepts the first lines, or undefined. */
export function detectFormat(head: readonly string[]): TraceFormat | undefined {
  return FORMATS.find((f) => f.sniff(head));
}

export function acceptedFormatsSentence(): string {
  return FORMATS.map((f) => `${f.describe} (--format ${f.name})`).join(', ');
}
