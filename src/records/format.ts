// What a reader of a kernel record is: one file per record, one line in formats.ts (as parse/ is for traces).
import type { Reading, SiteCount } from './model.js';

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

/**
 * Dumps that each start with a header line (allocinfo's, slabinfo's), one after another, with separator lines between
 * them that may say when. `row` reads a line of a dump (undefined: not a row); a line that is neither a row, a
 * header, a comment, a blank, nor a separator goes to `bad` with `reason` — unless `separator` calls it one.
 */
export function readDumps(
  text: string,
  header: RegExp,
  row: (line: string) => SiteCount | undefined,
  bad: (line: number, reason: string) => void,
  reason: string,
  separator: (line: string, inDump: boolean) => boolean,
): Reading[] {
  const readings: Reading[] = [];
  let cur: Reading | undefined;
  let ts: number | undefined;
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/\r$/, '');
    if (header.test(line)) {
      cur = { ...(ts !== undefined ? { ts } : {}), sites: [] };
      readings.push(cur);
      ts = undefined;
      return;
    }
    if (line.trim() === '' || line.startsWith('#')) return;
    const site = cur ? row(line) : undefined;
    if (site) {
      cur!.sites.push(site);
      return;
    }
    const t = timeOf(line);
    if (t !== undefined) ts = t;
    else if (!separator(line, cur !== undefined)) bad(i + 1, reason);
  });
  return readings;
}
