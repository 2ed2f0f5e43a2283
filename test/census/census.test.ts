// The census on the real kernel: objects held by a workload started before kleak, counted exactly
// (the truth comes from the workload and /proc/key-users, never from kleak).
import { existsSync, readdirSync, readFileSync } from 'node:fs';
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

/** How much each group grew from one census of a cache to the next, most first. */
function growth(before: CensusJson['caches'][number], after: CensusJson['caches'][number]): { label: string; delta: number }[] {
  const b = byLabel(before);
  return [...byLabel(after)].map(([label, n]) => ({ label, delta: n - (b.get(label) ?? 0) })).sort((x, y) => y.delta - x.delta);
}

/** Objects of the groups whose label matches. */
const countOf = (c: CensusJson['caches'][number], label: RegExp) => c.groups.filter((g) => label.test(g.label)).reduce((n, g) => n + g.count, 0);

/** Eventfds open now, system-wide: distinct eventfd-id over every process's fdinfo (a shared file counts once). */
function eventfdsNow(): number {
  const ids = new Set<string>();
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    let fds: string[] = [];
    try {
      fds = readdirSync(`/proc/${pid}/fdinfo`);
    } catch {
      continue; // the process ended meanwhile
    }
    for (const fd of fds) {
      try {
        const m = /^eventfd-id:\s*(\d+)/m.exec(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'));
        if (m) ids.add(m[1]!);
      } catch {
        // closed meanwhile
      }
    }
  }
  return ids.size;
}

/** SysV messages queued now, system-wide: the qnum column of /proc/sysvipc/msg. */
function messagesNow(): number {
  const [head, ...rows] = readFileSync('/proc/sysvipc/msg', 'utf8').trim().split('\n');
  const col = head!.trim().split(/\s+/).indexOf('qnum');
  return rows.reduce((n, r) => n + Number(r.trim().split(/\s+/)[col]), 0);
}

/** A census taken while the truth held still: `truth` read before and after it agree (other tests run beside). */
async function steadyCensus(args: string[], truth: () => number): Promise<{ census: CensusJson; truth: number }> {
  for (let attempt = 0; ; attempt++) {
    const t0 = truth();
    const c = await census(args);
    if (truth() === t0 || attempt === 4) return { census: c, truth: t0 };
  }
}

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
      // The key type is kernel data without a symbol here: it is named by the functions it holds.
      expect(grown[0]!.label).toMatch(/&\{user_preparse,/);
    } finally {
      await w.release();
    }
  });

  it('names the 61 seq_operations of /proc/version opened with single_open by their four functions, exactly', async () => {
    const before = (await census(['kmalloc-cg-32'])).caches[0]!;
    const w = startWorkload(['--hold-proc', '61']);
    try {
      await w.until('ready');
      const after = (await census(['kmalloc-cg-32'])).caches[0]!;
      const top = growth(before, after)[0]!;
      expect(top.delta).toBe(61);
      expect(top.label.split(' ').sort()).toEqual(['single_next', 'single_start', 'single_stop', 'version_proc_show']);
    } finally {
      await w.release();
    }
  });

  it('counts eventfd files in filp by their f_op, named by its functions: as many more as /proc says were opened', async () => {
    const eventfd = /eventfd_read/;
    const before = await steadyCensus(['filp'], eventfdsNow);
    const w = startWorkload(['--hold-eventfd', '83']);
    try {
      await w.until('ready');
      const after = await steadyCensus(['filp'], eventfdsNow);
      expect(after.truth - before.truth).toBeGreaterThanOrEqual(83);
      expect(countOf(after.census.caches[0]!, eventfd) - countOf(before.census.caches[0]!, eventfd)).toBe(after.truth - before.truth);
      expect(after.census.caches[0]!.groups.find((g) => eventfd.test(g.label))!.label).toMatch(/^&\{.*eventfd_write.*\}$/);
    } finally {
      await w.release();
    }
  });

  it('finds 45 SysV messages as one shape group with no kernel pointer, and never prints their payload', async () => {
    const before = await steadyCensus(['msg_msg-1k'], messagesNow);
    const w = startWorkload(['--hold-msg', '45']);
    try {
      await w.until('ready');
      const after = await steadyCensus(['msg_msg-1k'], messagesNow);
      expect(after.truth - before.truth).toBe(45);
      const c = after.census.caches[0]!;
      expect(c.allocated - before.census.caches[0]!.allocated).toBe(45);
      const top = growth(before.census.caches[0]!, c)[0]!;
      expect(top.delta).toBe(45);
      expect(top.label).toMatch(/^shape .*ascii/);
      // The payload is "kleak-msg-payload|" repeated: no output of kleak may hold any of it.
      const text = await kleak(['census', 'msg_msg-1k', '--top', '50']);
      for (const out of [JSON.stringify(after.census), String(text.stdout), String(text.stderr)]) expect(out).not.toMatch(/kleak-msg|payload\|/);
      expect(String(text.stdout)).toMatch(/45 allocated/);
    } finally {
      await w.release();
    }
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
