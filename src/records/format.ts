// What a reader of a kernel record is: one file per record, one line in formats.ts (as parse/ is for traces).
import type { Reading } from './model.js';

export type RecordFormatName = 'kmemleak' | 'allocinfo' | 'slabinfo' | 'alloc_traces' | 'vmallocinfo';

export interface RecordFormat {
  name: RecordFormatName;
  /** Used in "kleak reads: …". */
  describe: string;
  sniff(head: readonly string[]): boolean;
  /** The readings a text holds, in order; a line it cannot read goes to `bad` with its number, never a throw. */
  read(text: string, bad: (line: number, reason: string) => void): Reading[];
}

/** A separator line between readings that says when: `date` output, ISO times, epoch seconds. */
export function timeOf(line: string): number | undefined {
  const t = line.replace(/^[=#\-\s]+|[=#\-\s]+$/g, '');
  if (/^\d{9,10}(\.\d+)?$/.test(t)) return Number(t);
  if (!/\d{1,2}:\d{2}/.test(t)) return undefined;
  const ms = Date.parse(t.replace(/ ([A-Z]{3,4}) (\d{4})$/, ' $2 $1'));
  return Number.isFinite(ms) ? ms / 1000 : undefined;
}
