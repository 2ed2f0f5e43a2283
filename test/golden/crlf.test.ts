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

it('a FIFO (process substitution, a named pipe) is read as a stream: plain, gzipped or a trace.dat', async () => {
  const { execa } = await import('execa');
  const { CLI, ROOT } = await import('../helpers/cli.js');
  const { onPath } = await import('../helpers/env.js');
  const run = (feed: string) => execa('bash', ['-c', `"${process.execPath}" "${CLI}" replay <(${feed}) --json`], { cwd: ROOT });
  const totals = async (feed: string) => (JSON.parse((await run(feed)).stdout) as { totals: { outstanding: number } }).totals.outstanding;
  expect(await totals(`zcat ${rec('keys97.report.gz')}`)).toBe(97);
  expect(await totals(`cat ${rec('keys97.report.gz')}`)).toBe(97);
  if (onPath('trace-cmd')) expect(await totals(`cat ${rec('keys53-stacks.dat')}`)).toBe(53);
});
