// A damaged gzip (cut short, a bad CRC) is not a lost replay: the lines before the damage are reported, and the
// damage is a bad line that says where and why (before: "internal error: unexpected end of file", exit 70). The
// exit code says the input was not whole: 1, after the report.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { describe, expect, it } from 'vitest';
import type { JsonReport } from '../../src/report/json.js';
import { kleak, rec } from '../helpers/cli.js';

const dir = mkdtempSync(`${tmpdir()}/kleak-gz-`);

describe('damaged gzip', () => {
  const whole = readFileSync(rec('keys97.report.gz'));
  const cut = whole.subarray(0, 30000);
  const badCrc = Buffer.from(whole);
  badCrc.writeUInt32LE(0, badCrc.length - 8);
  it.each([
    ['cut short, as a file', cut, false],
    ['cut short, on stdin', cut, true],
    ['with a bad CRC', badCrc, false],
  ] as const)('%s: a partial report, the damage named, exit 1', async (_what, data, stdin) => {
    const f = `${dir}/${_what.replace(/\W/g, '')}.gz`;
    writeFileSync(f, data);
    const r = await kleak(stdin ? ['replay', '-', '--json'] : ['replay', f, '--json'], stdin ? { input: data } : {});
    expect(r.exitCode, String(r.stderr)).toBe(1);
    expect(String(r.stderr)).toMatch(/^kleak: .+ is damaged after line [\d,]+ \(.+\); the report above covers what was read before it\.$/m);
    const report = JSON.parse(String(r.stdout)) as JsonReport;
    expect(report.totals.allocs).toBeGreaterThan(100);
    expect(report.badLines.at(-1)!.reason).toMatch(/the input is damaged here \(.+\): the report covers the [\d,]+ lines before it/);
  });
});
