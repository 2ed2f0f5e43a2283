// The census on the real kernel: objects held by a workload started before kleak, counted exactly
// (the truth comes from the workload and /proc/key-users, never from kleak).
import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { kleak } from '../helpers/cli.js';
import { isRoot } from '../helpers/env.js';
import { startWorkload } from '../helpers/live.js';

const canCensus = isRoot && existsSync('/sys/kernel/btf/vmlinux');

interface CensusJson {
  evidence: string;
  caches: { cache: string; allocated: number; free: number; total: number; unwalked: Record<string, number | boolean>; groups: { label: string; count: number; shape: string[] }[] }[];
  sites: { label: string; outstanding: number; samples: { ptr: string }[] }[];
}

async function census(args: string[]): Promise<CensusJson> {
  const r = await kleak(['census', ...args, '--json']);
  expect(r.exitCode, String(r.stderr)).toBe(0);
  return JSON.parse(String(r.stdout)) as CensusJson;
}

/** The keys that exist now: the sum of nkeys over /proc/key-users ("uid: usage nkeys/nikeys ..."). */
function keysNow(): number {
  return readFileSync('/proc/key-users', 'utf8')
    .split('\n')
    .map((l) => /^\s*\d+:\s+\d+\s+(\d+)\//.exec(l))
    .reduce((n, m) => n + (m ? Number(m[1]) : 0), 0);
}

const byLabel = (c: CensusJson['caches'][number]) => new Map(c.groups.map((g) => [g.label, g.count]));

describe.skipIf(!canCensus)('kleak census (needs root and the kernel\'s BTF)', () => {
  it('counts every key in key_jar exactly, and the group of 97 keys held since before kleak started', async () => {
    const before = (await census(['key_jar'])).caches[0]!;
    const keysBefore = keysNow();
    expect(before.allocated).toBe(keysBefore);
    const w = startWorkload(['--hold', '97', '--churn', '0']);
    try {
      await w.until('ready');
      const after = (await census(['key_jar'])).caches[0]!;
      expect(after.allocated).toBe(keysNow());
      // The workload's process keyring is a key too: the truth is /proc/key-users' count, 97 or 98.
      expect(after.allocated - before.allocated).toBe(keysNow() - keysBefore);
      expect(after.allocated - before.allocated).toBeGreaterThanOrEqual(97);
      expect(after.free + after.allocated).toBe(after.total);
      // The held keys are one group: the one that grew, by exactly 97.
      const b = byLabel(before);
      const grown = [...byLabel(after)].map(([label, n]) => ({ label, delta: n - (b.get(label) ?? 0) })).sort((x, y) => y.delta - x.delta);
      expect(grown[0]!.delta).toBe(97);
      expect(grown[0]!.label).toMatch(/^data@ffffffff/);
    } finally {
      await w.release();
    }
  });

  it('never prints object bytes: a key payload marker appears in no output', async () => {
    const r = await kleak(['census', 'key_jar', '--json']);
    expect(String(r.stdout)).not.toMatch(/kleak-test/);
    expect(String(r.stdout)).toMatch(/"evidence": "census"/);
  });

  it('refuses a cache that does not exist, and a command line without a cache, in one sentence', async () => {
    const r = await kleak(['census', 'no_such_cache']);
    expect(r.exitCode).toBe(1);
    expect(String(r.stderr)).toMatch(/there is no slab cache named "no_such_cache"/);
    const r2 = await kleak(['census']);
    expect(r2.exitCode).toBe(1);
    expect(String(r2.stderr)).toMatch(/needs one of: cache names, --bytes N/);
  });
});
