// Bytes → lines for every source. Two splitters, one contract (a synchronous call per line, no per-line promise):
// - forEachLine: replay files, stdin and trace-cmd's report, the hot path. Lines are handed over as byte ranges of
//   the chunk read, found with Buffer.indexOf: no string per line (the parsers of the large formats read bytes;
//   the others take latin1 text). Measured on a 5M-line trace-cmd report (scripts/bench-replay): decoding chunks
//   to strings and splitting those cost ~70 ns a line, this ~25, and replay has to reach 2M events/s. The few
//   strings kleak keeps (comm) are re-decoded as UTF-8 when interned.
// - forEachLineSplit2: child processes (bpftrace, trace-cmd, trace_pipe), whose rate the kernel side bounds;
//   split2 on '\n' with a length limit.

import type { Readable } from 'node:stream';
import split2 from 'split2';

/** Longer lines are cut here and reported as bad by the parser rather than growing memory without bound. */
export const MAX_LINE = 1 << 20;

/** Bytes of one over-long line skipped before another cut piece of it counts as a line. */
const SKIP_LIMIT = 16 * MAX_LINE;

/** One line: bytes [start, end) of `buf`, without its newline. */
export type ByteLineHandler = (buf: Buffer, start: number, end: number, lineNo: number) => void;

/** `o.unterminated`: called when the input's last line had no newline (a file cut short mid-line, often). */
export function forEachLine(stream: Readable, onLine: ByteLineHandler, o: { unterminated?: () => void } = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    let n = 0;
    /** The unfinished last line of the previous chunk(s). */
    let carry: Buffer | undefined;
    /** A line was longer than MAX_LINE: its first MAX_LINE bytes went out as a line, the rest is skipped. */
    let skipping = false;
    let skipped = 0;
    let failed = false;
    const fail = (err: unknown) => {
      if (failed) return;
      failed = true;
      stream.destroy();
      reject(err);
    };
    stream.on('data', (chunk: Buffer | string) => {
      if (failed) return;
      const buf = typeof chunk === 'string' ? Buffer.from(chunk, 'latin1') : chunk;
      try {
        let start = 0;
        if (skipping) {
          const nl = buf.indexOf(10);
          if (nl < 0) {
            // A stream that never has a newline (/dev/zero) still makes lines: one (cut) every SKIP_LIMIT bytes.
            skipped += buf.length;
            if (skipped >= SKIP_LIMIT) {
              skipped = 0;
              onLine(buf, 0, Math.min(buf.length, MAX_LINE), ++n);
            }
            return;
          }
          skipping = false;
          skipped = 0;
          start = nl + 1;
        } else if (carry !== undefined) {
          const nl = buf.indexOf(10);
          if (nl < 0) {
            carry = Buffer.concat([carry, buf.subarray(0, MAX_LINE - carry.length)]);
            if (carry.length >= MAX_LINE) {
              // Too long to be a line of any format: handed over cut (the parser counts it bad), not held until a
              // newline that may never come (diff /dev/zero X never ended).
              onLine(carry, 0, carry.length, ++n);
              carry = undefined;
              skipping = true;
            }
            return;
          }
          const line = Buffer.concat([carry, buf.subarray(0, Math.max(0, Math.min(nl, MAX_LINE - carry.length)))]);
          carry = undefined;
          onLine(line, 0, line.length > 0 && line[line.length - 1] === 13 ? line.length - 1 : line.length, ++n);
          start = nl + 1;
        }
        for (;;) {
          const nl = buf.indexOf(10, start);
          if (nl < 0) break;
          // CRLF files (saved on Windows, pasted from a browser): the CR is not part of the line.
          const end = nl > start && buf[nl - 1] === 13 ? nl - 1 : nl;
          onLine(buf, start, Math.min(end, start + MAX_LINE), ++n);
          start = nl + 1;
        }
        if (buf.length - start >= MAX_LINE) {
          onLine(buf, start, start + MAX_LINE, ++n);
          skipping = true;
        } else if (start < buf.length) {
          // A copy: the chunk may be a view of a buffer its producer reuses.
          carry = Buffer.from(buf.subarray(start));
        }
      } catch (err) {
        // A consumer that gives up (an unknown format, say) stops the reading; the error goes to the caller.
        fail(err);
      }
    });
    stream.on('end', () => {
      if (failed) return;
      try {
        if (carry !== undefined) {
          onLine(carry, 0, carry.length > 0 && carry[carry.length - 1] === 13 ? carry.length - 1 : carry.length, ++n);
          o.unterminated?.();
        }
      } catch (err) {
        return fail(err);
      }
      resolve(n);
    });
    stream.on('error', fail);
  });
}

export function forEachLineSplit2(stream: Readable, onLine: (line: string, lineNo: number) => void): Promise<number> {
  return new Promise((resolve, reject) => {
    let n = 0;
    // skipOverflow is split2's (index.js) but missing from @types/split2.
    const options: split2.Options & { skipOverflow: boolean } = { maxLength: MAX_LINE, skipOverflow: true };
    const splitter = split2('\n', options);
    let failed = false;
    stream.on('error', (err) => {
      splitter.destroy();
      reject(err);
    });
    splitter.on('data', (line: string) => {
      if (failed) return;
      n++;
      try {
        onLine(line, n);
      } catch (err) {
        failed = true;
        stream.unpipe(splitter);
        stream.destroy();
        reject(err);
      }
    });
    splitter.on('end', () => resolve(n));
    splitter.on('error', reject);
    stream.pipe(splitter);
  });
}
