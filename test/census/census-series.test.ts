// Censuses over time and read back, on the real kernel: a slow leak that began before kleak is called growing while
// a churning population of the same cache is not; a recording replays to the same verdicts and says what is damaged;
// kleak diff of two censuses ranks the group that appeared first. Every figure is derived from the workload.
import { appendFileSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { afterAll, describe, expect, it } from 'vitest';
import { kleak } from '../helpers/cli.js';
import { isRoot } from '../helpers/env.js';
import { startWorkload } from '../helpers/live.js';
import type { CensusReport, CensusSite } from '../../src/census/model.js';
import type { DiffReport } from '../../src/commands/diff.js';

const canCensus = isRoot && existsSync('/sys/kernel/btf/vmlinux');
const dir = mkdtempSync(`${tmpdir()}/kleak-census-series-`);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The group of seq_operations that single_open makes for a /proc file shown by `show`. */
const seqOps = (r: CensusReport, show: string): CensusSite | undefined =>
  r.sites.find((s) => s.cache === 'kmalloc-cg-32' && [...s.label.split(' ')].sort().join(' ') === ['single_next', 'single_start', 'single_stop', show].sort().join(' '));

describe.skipIf(!canCensus)('kleak census over time (needs root and the kernel\'s BTF)', () => {
  const recording = `${dir}/leak.census.ndjson`;

  it('calls a slow leak that began before kleak growing at its rate, and a churning population of the same cache not', async () => {
    // 30 /proc/version files held before the census starts, 3 more a second for 9 s; 40 /proc/loadavg files kept open,
    // 20 a second closed and opened again: both are 32-byte seq_operations in kmalloc-cg-32.
    const w = startWorkload(['--hold-proc', '30', '--leak-proc-rate', '3', '--churn-proc', '40', '--churn-proc-rate', '20', '--seconds', '9']);
    try {
      await w.until('ready');
      const r = await kleak(['census', 'kmalloc-cg-32', '--interval', '1', '--duration', '7', '--record', recording, '--json']);
      expect(r.exitCode, String(r.stderr)).toBe(0);
      const report = JSON.parse(String(r.stdout)) as CensusReport;
      expect(report.rounds).toBeGreaterThanOrEqual(6);
      const leak = seqOps(report, 'version_proc_show')!;
      const churn = seqOps(report, 'loadavg_proc_show')!;
      expect(leak.verdict).toBe('growing');
      // 3 a second is 180 a minute; the rounds' times are the census's own, so allow what a busy machine shifts.
      expect(leak.growthPerMin).toBeGreaterThan(120);
      expect(leak.growthPerMin).toBeLessThan(240);
      // The 30 held before kleak started are in its first count.
      expect(leak.series[0]!).toBeGreaterThanOrEqual(30);
      expect(churn.verdict).not.toBe('growing');
      for (const n of churn.series) expect(n === 39 || n === 40, `loadavg series ${churn.series.join(',')}`).toBe(true);
      expect(report.sites[0]!.key).toBe(leak.key);
      // One progress line per census on stderr.
      expect(String(r.stderr).match(/^kleak: census \d+ at /gm)!.length).toBe(report.rounds);
    } finally {
      await w.release();
    }
    expect(statSync(recording).mode & 0o777).toBe(0o600);
  }, 30_000);

  it('replays the recording to the same series and verdicts, and says which line a kill cut', async () => {
    const live = await kleak(['replay', recording, '--json']);
    expect(live.exitCode, String(live.stderr)).toBe(0);
    const again = JSON.parse(String(live.stdout)) as CensusReport;
    const leak = seqOps(again, 'version_proc_show')!;
    expect(leak.verdict).toBe('growing');
    const text = await kleak(['replay', recording, '--top', '5']);
    expect(String(text.stdout)).toMatch(/censuses over [\d.]+ s/);
    expect(String(text.stdout)).toMatch(/single_start .*growing/);
    // A round cut in the middle, as a kill leaves it: the rounds before it stand, the cut line is named.
    const lines = readFileSync(recording, 'utf8').trimEnd().split('\n').length;
    appendFileSync(recording, '{"kind":"census-round","time":"2026-');
    const cut = await kleak(['replay', recording, '--json']);
    expect(cut.exitCode).toBe(1);
    expect((JSON.parse(String(cut.stdout)) as CensusReport).rounds).toBe(again.rounds);
    expect(String(cut.stderr)).toContain(`1 damaged line skipped (line ${lines + 1})`);
  });

  it('diff of two censuses, before and after 40 files are opened, ranks their group first with +40', async () => {
    const before = `${dir}/before.json`;
    const after = `${dir}/after.census.ndjson`;
    const a = await kleak(['census', 'kmalloc-cg-32', '--json']);
    expect(a.exitCode, String(a.stderr)).toBe(0);
    appendFileSync(before, String(a.stdout));
    const w = startWorkload(['--hold-proc', '40']);
    try {
      await w.until('ready');
      const b = await kleak(['census', 'kmalloc-cg-32', '--record', after]);
      expect(b.exitCode, String(b.stderr)).toBe(0);
    } finally {
      await w.release();
    }
    const d = await kleak(['diff', before, after, '--json']);
    expect(d.exitCode, String(d.stderr)).toBe(0);
    const rows = (JSON.parse(String(d.stdout)) as DiffReport).rows.filter((r) => r.kind === 'group');
    expect(rows[0]!.delta).toBe(40);
    expect(rows[0]!.name).toMatch(/version_proc_show.*\(kmalloc-cg-32\)$/);
  });

  it('refuses --duration without --interval, and an existing --record file before any census', async () => {
    const r = await kleak(['census', 'key_jar', '--duration', '5']);
    expect(r.exitCode).toBe(1);
    expect(String(r.stderr)).toMatch(/--duration needs --interval SEC/);
    const again = await kleak(['census', 'key_jar', '--record', recording]);
    expect(again.exitCode).toBe(1);
    expect(String(again.stderr)).toMatch(/exists/);
  });
});
