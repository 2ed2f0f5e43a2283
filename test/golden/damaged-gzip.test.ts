// A damaged gzip (cut short, a bad CRC) is not a lost replay: the lines before the damage are reported, and the
// damage is a bad line that says where and why (before: "internal error: unexpected end of file", exit 70). The
// exit code says the input was not whole: 1, after the report.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { gunzipSync, gzipSync } from 'node:zlib';
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

describe('gzip followed by junk, several members, padding (issue 23 item 4)', () => {
  const whole = readFileSync(rec('keys97.report.gz'));
  const wholeText = gunzipSync(whole).toString('utf8');
  const wholeLines = wholeText.split('\n').length - 1;

  it.each([
    ['300 random bytes', Buffer.from(Array.from({ length: 300 }, (_, i) => (i * 131 + 7) & 0xff))],
    ['a line of text', Buffer.from('tail: write error\n')],
  ])('intact data then %s: every line is read, and the junk is named with its byte offset (was line 6,826 of 12,323)', async (_what, junk) => {
    const f = `${dir}/junk-${_what.replace(/\W/g, '')}.gz`;
    writeFileSync(f, Buffer.concat([whole, junk]));
    for (const stdin of [false, true]) {
      const r = await kleak(stdin ? ['replay', '-', '--json'] : ['replay', f, '--json'], stdin ? { input: readFileSync(f) } : {});
      expect(r.exitCode, String(r.stderr)).toBe(1);
      const report = JSON.parse(String(r.stdout)) as JsonReport;
      expect(report.totals.lines).toBe(wholeLines);
      expect(report.sites[0]).toMatchObject({ function: 'user_preparse', outstanding: 97 });
      expect(String(r.stderr)).toContain(`(what follows the gzip data at byte ${whole.length.toLocaleString('en-US')} is not gzip)`);
    }
  });

  it('two members are one input, and zero padding after the last is not damage', async () => {
    const f = `${dir}/two-padded.gz`;
    writeFileSync(f, Buffer.concat([gzipSync(wholeText.slice(0, 1_000_000)), gzipSync(wholeText.slice(1_000_000)), Buffer.alloc(512)]));
    const r = await kleak(['replay', f, '--json']);
    expect(r.exitCode, String(r.stderr)).toBe(0);
    const report = JSON.parse(String(r.stdout)) as JsonReport;
    expect(report.totals.lines).toBe(wholeLines);
    expect(report.sites[0]).toMatchObject({ function: 'user_preparse', outstanding: 97 });
  });

  it('33 damaged copies of a small file: each is a partial report or one sentence that says the damage, never "empty" (12 of 33 were)', async () => {
    const small = gzipSync(wholeText.split('\n').slice(0, 60).join('\n') + '\n');
    const said: string[] = [];
    for (let i = 0; i < 33; i++) {
      const m = Buffer.from(small);
      let data: Buffer;
      if (i < 11) data = m.subarray(0, Math.floor((small.length * (i + 1)) / 12));
      else {
        m[10 + Math.floor(((small.length - 18) * (i - 11)) / 22)]! ^= 0x55;
        data = m;
      }
      const f = `${dir}/small-${i}.gz`;
      writeFileSync(f, data);
      const r = await kleak(['replay', f, '--json']);
      const err = String(r.stderr);
      expect(err).not.toMatch(/is empty|no format kleak knows|internal error/);
      if (r.exitCode === 0) continue; // a flip that inflated to the same bytes would fail the CRC; none is silent
      expect(r.exitCode).toBe(1);
      expect(err).toMatch(/is damaged (after line [\d,]+|before its first line) \(.*(byte [\d,]+|fails its check).*\)/);
      said.push(err);
    }
    expect(said.length).toBeGreaterThanOrEqual(30);
  });
});
