// What a reader of a kernel record is: one file per record, one line in formats.ts (as parse/ is for traces).
import { SiteTally, type Reading, type SiteCount } from './model.js';

export type RecordFormatName = 'kmemleak' | 'allocinfo' | 'slabinfo' | 'alloc_traces' | 'vmallocinfo';

export type BadLine = (line: number, reason: string) => void;

/** Reads one file line by line: files of gigabytes are streamed, never held whole (docs/safety.md). */
export interface RecordReader {
  /** One line, without its newline (a CR before it is removed by the caller). */
  line(line: string, lineNo: number): void;
  /** The input ended: the reading in progress is complete. */
  end(): void;
}

export interface RecordFormat {
  name: RecordFormatName;
  /** Used in "kleak reads: …". */
  describe: string;
  sniff(head: readonly string[]): boolean;
  /**
   * A reader of one file: each reading it completes goes to `reading`, in order; a line it cannot read goes to `bad`
   * with its number, never a throw.
   */
  reader(bad: BadLine, reading: (r: Reading) => void): RecordReader;
}

/** The readings of a whole text (a /proc file read at once by watch). */
export function readAll(format: RecordFormat, text: string, bad: BadLine): Reading[] {
  const readings: Reading[] = [];
  const r = format.reader(bad, (x) => readings.push(x));
  text.split('\n').forEach((raw, i) => r.line(raw.replace(/\r$/, ''), i + 1));
  r.end();
  return readings;
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
 * A reader of dumps that each start with a header line (allocinfo's, slabinfo's), one after another, with separator lines between
 * them that may say when. `row` reads a line of a dump (undefined: not a row); a line that is neither a row, a
 * header, a comment, a blank, nor a separator goes to `bad` with `reason` — unless `separator` calls it one.
 */
export function dumpsReader(
  header: RegExp,
  row: (line: string) => SiteCount | undefined,
  bad: BadLine,
  reason: string,
  separator: (line: string, inDump: boolean) => boolean,
  emit: (r: Reading) => void,
): RecordReader {
  let cur: { ts: number | undefined; sites: SiteTally } | undefined;
  let ts: number | undefined;
  const close = () => {
    if (cur) emit(cur.sites.reading(cur.ts));
    cur = undefined;
  };
  return {
    line(line, lineNo) {
      if (header.test(line)) {
        close();
        cur = { ts, sites: new SiteTally() };
        ts = undefined;
        return;
      }
      if (line.trim() === '' || line.startsWith('#')) return;
      const site = cur ? row(line) : undefined;
      if (site) {
        cur!.sites.add(site);
        return;
      }
      const t = timeOf(line);
      if (t !== undefined) ts = t;
      else if (!separator(line, cur !== undefined)) bad(lineNo, reason);
    },
    end: close,
  };
}
