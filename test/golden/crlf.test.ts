// CRLF line endings (a trace saved on Windows, pasted from a browser) read exactly as LF: the CR is not part of the
// line. Before, a bpftrace-output replay with CRLF read 119 outstanding instead of 19, and pairs output was "no format".
import { describe, expect, it } from 'vitest';
import { gunzipSync } from 'node:zlib';
import { readFileSync } from 'node:fs';
import { kleak, rec } from '../helpers/cli.js';

describe('CRLF', () => {
  it.each(['bt-pairs17-stacks.out.gz', 'bt-events19-stacks.out.gz', 'keys97.report.gz', 'keys29-hashed-stacks.pipe.gz'])('%s with CRLF replays to the same totals', async (name) => {
    const lf = await kleak(['replay', rec(name), '--json']);
    const crlf = await kleak(['replay', '-', '--json'], { input: gunzipSync(readFileSync(rec(name))).toString('latin1').replace(/\n/g, '\r\n') });
    expect(crlf.exitCode, String(crlf.stderr)).toBe(0);
    expect(JSON.parse(String(crlf.stdout)).totals).toEqual(JSON.parse(String(lf.stdout)).totals);
  });
});
