// Every recording in recordings/README.md replays to its right answer, exactly.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { replayToReport } from '../../src/commands/replay.js';
import type { EventFilter } from '../../src/engine/filter.js';
import { rec, ROOT } from '../helpers/cli.js';
import { onPath } from '../helpers/env.js';

interface Row {
  file: string;
  args: string;
  answer: string;
}

function rows(): Row[] {
  const md = readFileSync(`${ROOT}recordings/README.md`, 'utf8');
  return md
    .split('\n')
    .filter((l) => /^\| [\w.-]+\.(?:gz|dat|report|pipe|ndjson) \|/.test(l))
    .map((l) => l.split('|').map((c) => c.trim()))
    .map((c) => ({ file: c[1]!, args: c[5]!, answer: c[6]! }));
}

function filterOf(args: string): EventFilter {
  const m = /--bytes (\d+)/.exec(args);
  return m ? { bytes: Number(m[1]) } : {};
}

const hasTraceCmd = onPath('trace-cmd');

describe('recordings replay to their right answers', () => {
  const all = rows();
  it('the README lists the recordings', () => {
    expect(all.length).toBeGreaterThanOrEqual(8);
  });
  for (const row of all) {
    it(`${row.file}: ${row.answer}`, async (ctx) => {
      if (row.file.endsWith('.dat') && !hasTraceCmd) ctx.skip(true, 'trace-cmd is not installed (reading trace.dat runs `trace-cmd report`); .ci/run installs it');
      const { report: r } = await replayToReport({ path: rec(row.file), format: 'auto', filter: filterOf(row.args), report: {} });
      expect(r.totals.badLines).toBe(0);
      const fn = (name: string) => r.sites.find((s) => s.function === name);
      let checks = 0;
      for (const m of row.answer.matchAll(/(\d+) outstanding at (\w+)/g)) {
        expect(fn(m[2]!)?.outstanding, `outstanding at ${m[2]}`).toBe(Number(m[1]));
        checks++;
      }
      for (const m of row.answer.matchAll(/\blost (\d+)/g)) {
        expect(r.totals.lostEvents).toBe(Number(m[1]));
        expect(r.notices.some((n) => n.severity === 'dataLoss')).toBe(true);
        checks++;
      }
      for (const m of row.answer.matchAll(/(?<!not )growing: (\w+)/g)) {
        expect(fn(m[1]!)?.verdict, `verdict at ${m[1]}`).toBe('growing');
        checks++;
      }
      for (const m of row.answer.matchAll(/not growing: (\w+)/g)) {
        expect(fn(m[1]!)?.verdict, `verdict at ${m[1]}`).not.toBe('growing');
        checks++;
      }
      for (const m of row.answer.matchAll(/(vmalloc|page|percpu) allocator at (\w+)/g)) {
        expect(fn(m[2]!)?.allocator, `allocator at ${m[2]}`).toBe(m[1]);
        checks++;
      }
      for (const m of row.answer.matchAll(/stacks at (\w+)/g)) {
        const s = fn(m[1]!)!;
        expect(s.stacks[0]!.frames[0]).toBe(m[1]);
        expect(s.stacks[0]!.outstanding).toBe(s.outstanding);
        checks++;
      }
      for (const m of row.answer.matchAll(/nothing at (\w+)/g)) {
        expect(fn(m[1]!)).toBeUndefined();
        checks++;
      }
      expect(checks, 'the answer column says something checkable').toBeGreaterThan(0);
    });
  }
});
