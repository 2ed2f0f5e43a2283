// Bytes → lines for every source. Two splitters, one contract (onLine(line, lineNo), synchronous, no per-line
// promise):
// - forEachLine: replay files and stdin, the hot path. Chunks are decoded as latin1 (a byte copy) and split with
//   indexOf('\n'). Measured on a 1M-line trace-cmd report (scripts/bench-replay): split2 with UTF-8 decoding costs
//   ~540 ms per million lines here, this ~100 ms, and replay has to reach 2M events/s. Non-ASCII bytes survive
//   as latin1 characters; the few strings kleak keeps (comm) are re-decoded as UTF-8 when interned.
// - forEachLineSplit2: child processes (bpftrace, trace-cmd, trace_pipe), whose rate the kernel side bounds;
//   split2 on '\n' with a length limit.

import type { Readable } from 'node:stream';
import split2 from 'split2';

/** Longer lines are cut here and reported as bad by the parser rather than growing memory without bound. */
export const MAX_LINE = 1 << 20;

export function forEachLine(stream: Readable, onLine: (line: string, lineNo: number) => void): Promise<number> {
  return new Promise((resolve, reject) => {
    let n = 0;
    let rest = '';
    let failed = false;
    // Streams of text chunks (sources/input.ts readAhead) are already decoded.
    if (!stream.readableObjectMode) stream.setEncoding('latin1');
    const fail = (err: unknown) => {
      if (failed) return;
      failed = true;
      stream.destroy();
      reject(err);
    };
    stream.on('data', (chunk: string) => {
      if (failed) return;
      try {
        let start = 0;
        let text = chunk;
        if (rest.length > 0) {
          const nl = chunk.indexOf('\n');
          if (nl < 0) {
            rest = (rest + chunk).slice(0, MAX_LINE);
            return;
          }
          onLine(rest + chunk.slice(0, nl), ++n);
          rest = '';
          start = nl + 1;
        }
        for (;;) {
          const nl = text.indexOf('\n', start);
          if (nl < 0) break;
          onLine(text.slice(start, nl), ++n);
          start = nl + 1;
        }
        if (start < text.length) rest = text.slice(start, start + MAX_LINE);
        text = '';
      } catch (err) {
        // A consumer that gives up (an unknown format, say) stops the reading; the error goes to the caller.
        fail(err);
      }
    });
    stream.on('end', () => {
      if (failed) return;
      try {
        if (rest.length > 0) onLine(rest, ++n);
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
