// The replay path reads bytes: lines are ranges of the chunks read, split at any chunk boundary, and the ftrace
// parsers read those ranges without making strings. Both must give exactly what whole text lines give.
import { Readable } from 'node:stream';
import { gunzipSync } from 'node:zlib';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { forEachLine, MAX_LINE } from '../../src/sources/lines.js';
import { traceCmdReport } from '../../src/parse/trace-cmd-report.js';
import { tracePipe } from '../../src/parse/trace-pipe.js';
import { Collector, parseLines } from '../helpers/collect.js';
import { rec } from '../helpers/cli.js';

/** The bytes in chunks cut at seeded random places (1 byte to 64 KiB). */
function chunked(bytes: Buffer, seed: number): Readable {
  const parts: Buffer[] = [];
  let s = seed;
  for (let o = 0; o < bytes.length; ) {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    const n = 1 + (s % (s % 3 === 0 ? 16 : 65536));
    parts.push(bytes.subarray(o, o + n));
    o += n;
  }
  return Readable.from(parts);
}

async function linesOf(bytes: Buffer, seed: number): Promise<string[]> {
  const out: string[] = [];
  await forEachLine(chunked(bytes, seed), (buf, start, end, n) => {
    expect(n).toBe(out.length + 1);
    out.push(buf.toString('latin1', start, end));
  });
  return out;
}

describe('forEachLine over bytes', () => {
  it('gives the same lines whatever the chunk boundaries, the last line without its newline too', async () => {
    const text = 'one\r\ntwo\n\n  three  \nfour\u00e9\nlast';
    for (let seed = 1; seed < 40; seed++) {
      // A CR before the newline is not part of the line (CRLF files).
      expect(await linesOf(Buffer.from(text, 'latin1'), seed)).toEqual(text.split(/\r?\n/));
    }
  });

  it('cuts a line longer than MAX_LINE and goes on with the next', async () => {
    const long = 'x'.repeat(MAX_LINE + 5000);
    const lines = await linesOf(Buffer.from(`a\n${long}\nb\n`), 3);
    expect(lines.map((l) => l.length)).toEqual([1, MAX_LINE, 1]);
  });
});

describe('ftrace parsers on bytes', () => {
  const cases: [string, typeof traceCmdReport][] = [
    ['keys53-stacks.report.gz', traceCmdReport],
    ['lost-report.report.gz', traceCmdReport],
    ['keys29-hashed-stacks.pipe.gz', tracePipe],
    ['keys41-plain.pipe.gz', tracePipe],
    ['lost-pipe.pipe.gz', tracePipe],
  ];
  for (const [name, format] of cases) {
    it(`${name}: the same events, stacks, losses and bad lines as text lines`, async () => {
      const bytes = gunzipSync(readFileSync(rec(name)));
      const fromText = parseLines(format, bytes.toString('latin1').replace(/\n$/, ''));
      const fromBytes = new Collector();
      const parser = format.createParser(fromBytes);
      await forEachLine(chunked(bytes, name.length), (buf, start, end, n) => parser.bytes!(buf, start, end, n));
      parser.end();
      expect(fromBytes.events.length).toBeGreaterThan(100);
      expect(fromBytes.events).toEqual(fromText.events);
      expect(fromBytes.stacks).toEqual(fromText.stacks);
      expect(fromBytes.lostEvents).toEqual(fromText.lostEvents);
      expect(fromBytes.badLines).toEqual(fromText.badLines);
    });
  }
});
