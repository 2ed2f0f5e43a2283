// Input is validated before anything runs: options for another command, values out of range, and values that only
// look like something are refused in one sentence, exit 1 (each of these was accepted before).
import { describe, expect, it } from 'vitest';
import { kleak, rec } from '../helpers/cli.js';

describe('options', () => {
  it.each([
    [['replay', rec('keys97.report.gz'), '--duration', '3'], /--duration is not an option of kleak replay/],
    [['replay', rec('keys97.report.gz'), '--backend', 'tracefs'], /--backend is not an option of kleak replay/],
    [['live', '--speed', '2', '--dry-run'], /--speed is not an option of kleak live/],
    [['live', '--format', 'trace-cmd', '--dry-run'], /--format is not an option of kleak live/],
    [['record', '--dry-run', '-o', 'x', '--bytes', '8'], /--dry-run is not an option of kleak record/],
    [['record', '-o', '-', '--bytes', '8'], /needs a file name/],
    [['live', '--pid', '0', '--dry-run'], /--pid needs a whole number from 1/],
    [['live', '--comm=', '--dry-run'], /--comm needs a task name/],
    [['live', '--bytes', '1e20', '--dry-run'], /--bytes needs a whole number from 1 to/],
    [['live', '--duration', '3000000', '--dry-run'], /--duration needs a number from 0\.1 to 2,147,483/],
    [['live', '--interval', '3000000', '--dry-run'], /--interval needs a number from 0\.1 to 2,147,483/],
    [['live', '--max-pointers', '4000000000', '--dry-run'], /--max-pointers needs a whole number from 16 to 4,194,304/],
    [['replay', rec('keys97.report.gz'), '--verdict', '__proto__=1'], /unknown threshold "__proto__"/],
    [['replay', rec('keys97.report.gz'), '--verdict', 'keepFraction=7'], /keepFraction is a fraction from 0 to 1/],
    [['live', '--alloc', 'slab,heap', '--dry-run'], /--alloc takes a comma list of slab, vmalloc, page, percpu/],
    [['live', '--stack-every', '4', '--dry-run'], /--stack-every goes with --stacks/],
    [['live', '--stacks', '--stack-every', '0', '--dry-run'], /--stack-every needs a whole number from 1 to 1,000,000/],
    [['live', '--backend', 'bpftrace', '--stacks', '--stack-every', '4', '--dry-run'], /--stack-every 4 needs the kernel backend: bpftrace records the stack of every allocation/],
  ])('kleak %j → one sentence, exit 1', async (args, said) => {
    const r = await kleak(args as string[]);
    expect(r.exitCode).toBe(1);
    expect(String(r.stderr)).toMatch(said as RegExp);
    expect(String(r.stderr).trim().split('\n').length).toBeLessThanOrEqual(2);
  });
});

it('a file read with the wrong --format gives no all-clear: it says most lines could not be read', async () => {
  const { mkdtempSync, writeFileSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const f = `${mkdtempSync(`${tmpdir()}/kleak-allclear-`)}/x.txt`;
  writeFileSync(f, 'kmalloc: garbage\nmore garbage\n  also this\n');
  const r = await kleak(['replay', f, '--format', 'trace-pipe', '--text']);
  expect(String(r.stdout)).toMatch(/No answer: 3 of the lines could not be read/);
  expect(String(r.stdout)).not.toMatch(/every traced allocation was freed/);
});
