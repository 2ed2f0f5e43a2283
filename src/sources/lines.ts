// Bytes → lines for every source (files, stdin, child processes). split2 on '\n' with large reads: about
// 3 million lines a second here, measured in scripts/bench-replay.

import type { Readable } from 'node:stream';
import split2 from 'split2';

/** A line longer than this is dropped by split2 (skipOverflow) instead of growing without bound. */
export const MAX_LINE = 1 << 20;

/**
 * Calls onLine for each line of the stream, synchronously as data arrives (no per-line promise).
 * Resolves with the number of lines when the stream ends; rejects on a read error or when onLine throws.
 */
export function forEachLine(stream: Readable, onLine: (line: string, lineNo: number) => void): Promise<number> {
  return new Promise((resolve, reject) => {
    let n = 0;
    // skipOverflow is split2's (index.js) but missing from @types/split2.
    const options: split2.Options & { skipOverflow: boolean } = { maxLength: MAX_LINE, skipOverflow: true };
    const splitter = split2('\n', options);
    stream.on('error', (err) => {
      splitter.destroy();
      reject(err);
    });
    let failed = false;
    splitter.on('data', (line: string) => {
      if (failed) return;
      n++;
      try {
        onLine(line, n);
      } catch (err) {
        // A consumer that gives up (an unknown format, say) stops the reading; the error goes to the caller.
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
