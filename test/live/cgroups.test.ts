// Whose is it, on the real kernel: two memory cgroups made by the test, a workload holding user keys in one and
// churning them in the other. kleak live's kernel backend must put exactly the held payloads in the first cgroup at
// user_preparse, none in the second; --cgroup keeps one cgroup, filtered in the kernel; a recording keeps the
// cgroups for replay. Counts come from the workloads (--hold N), never from kleak.
import { existsSync, mkdirSync, mkdtempSync, rmdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, kleak } from '../helpers/cli.js';
import { isRoot } from '../helpers/env.js';
import { sleep, startKleak, startWorkload } from '../helpers/live.js';
import type { JsonReport } from '../../src/report/json.js';
import type { WatchReport } from '../../src/engine/watch.js';
import { execa } from 'execa';

const MEMORY = '/sys/fs/cgroup/memory';
const usable = isRoot && existsSync(`${MEMORY}/cgroup.procs`) && existsSync('/sys/kernel/btf/vmlinux');
const A = `/kleak-test-a-${process.pid}`;
const B = `/kleak-test-b-${process.pid}`;
/** Cgroups the dying-memcg test makes and removes while memory charged to them stays held (in /dev/shm). */
const DYING = [1, 2, 3].map((i) => `/kleak-test-dying-${process.pid}-${i}`);
const shm = (c: string) => `/dev/shm/kleak-test-${c.slice(1)}`;
const dir = mkdtempSync(`${tmpdir()}/kleak-cgroups-`);

/** kleak live traces; then 37 keys (124-byte payloads: kmalloc-128) are held in A while B holds `bHold` and churns 300. */
async function run(args: string[], bHold: number): Promise<JsonReport> {
  const k = startKleak(['--backend', 'kernel', '--bytes', '128', '--json', ...args]);
  await k.ready;
  const a = startWorkload(['--hold', '37', '--size', '100'], 'workload-keys.py', { cgroupDir: MEMORY + A });
  const b = startWorkload(['--hold', String(bHold), '--churn', '300', '--size', '100'], 'workload-keys.py', { cgroupDir: MEMORY + B });
  try {
    await a.until('holding');
    await b.until('holding');
    // The churned keys are freed by the key garbage collector a moment later.
    await sleep(1500);
    k.proc.kill('SIGINT');
    const r = await k.proc;
    expect(r.exitCode, k.stderr()).toBe(0);
    return JSON.parse(String(r.stdout)) as JsonReport;
  } finally {
    await a.release();
    await b.release();
  }
}

const userPreparse = (r: JsonReport) => r.sites.find((s) => s.function === 'user_preparse');

describe.skipIf(!usable)('kleak live by memory cgroup (needs root, cgroup v1 memory, BTF)', () => {
  beforeAll(() => {
    mkdirSync(MEMORY + A);
    mkdirSync(MEMORY + B);
  });
  afterAll(async () => {
    // A cgroup goes once its last task has exited (its charged memory may keep it as a dying memcg: the kernel's).
    for (const c of DYING) rmSync(shm(c), { force: true });
    for (const c of [A, B, ...DYING]) {
      for (let i = 0; i < 20 && existsSync(MEMORY + c); i++) {
        try {
          rmdirSync(MEMORY + c);
        } catch {
          await sleep(100);
        }
      }
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('puts the 37 held payloads in the cgroup that holds them, at user_preparse, and none in the churning one', async () => {
    const r = await run(['--record', `${dir}/run.ndjson`], 0);
    const site = userPreparse(r)!;
    expect(site.outstanding).toBe(37);
    expect(site.cgroups).toEqual([{ cgroup: A, outstanding: 37 }]);
    expect(r.cgroups!.find((c) => c.cgroup === A)!.outstanding).toBeGreaterThanOrEqual(37);
    // B's tasks allocate other kmalloc-128 objects of their own (python's); none of them is a key payload.
    expect(r.sites.filter((s) => s.cgroups?.some((c) => c.cgroup === B)).map((s) => s.function)).not.toContain('user_preparse');
    // The site was busy in both (337 allocations), yet B holds nothing: churn is not whose.
    expect(site.allocs).toBeGreaterThanOrEqual(337);
    expect(site.verdict).not.toBe('growing');
    const text = await kleak(['replay', `${dir}/run.ndjson`, '--text']);
    expect(String(text.stdout)).toContain(`allocated by tasks in ${A} (37)`);
    expect(String(text.stdout)).toMatch(new RegExp(`by memory cgroup: ${A} `));
  }, 30_000);

  it('replays the recording with --cgroup: only that cgroup and below', async () => {
    const a = JSON.parse(String((await kleak(['replay', `${dir}/run.ndjson`, '--cgroup', A, '--json'])).stdout)) as JsonReport;
    expect(userPreparse(a)!.outstanding).toBe(37);
    const b = JSON.parse(String((await kleak(['replay', `${dir}/run.ndjson`, '--cgroup', B, '--json'])).stdout)) as JsonReport;
    expect(userPreparse(b)).toBeUndefined();
    expect(b.filter.cgroup).toBe(B);
  });

  it('--cgroup keeps one cgroup in the kernel: 11 held in B are all it sees, none of the 37 in A', async () => {
    const r = await run(['--cgroup', B], 11);
    expect(userPreparse(r)!.outstanding).toBe(11);
    expect(userPreparse(r)!.cgroups).toEqual([{ cgroup: B, outstanding: 11 }]);
    for (const c of r.cgroups ?? []) expect(c.cgroup.startsWith(B)).toBe(true);
    expect(r.filter.cgroup).toBe(B);
  }, 30_000);

  it('refuses a cgroup that does not exist, and a backend whose events carry no cgroup, in one sentence', async () => {
    const r = await kleak(['live', '--backend', 'kernel', '--cgroup', '/kleak-no-such-cgroup', '--duration', '1']);
    expect(r.exitCode).toBe(1);
    expect(String(r.stderr)).toMatch(/there is no memory cgroup "\/kleak-no-such-cgroup"/);
    const t = await kleak(['live', '--backend', 'tracefs', '--cgroup', A, '--duration', '1']);
    expect(t.exitCode).toBe(1);
    expect(String(t.stderr)).toMatch(/--cgroup needs the kernel backend/);
  });

  it('watch calls the leaking cgroup\'s kernel memory growing and the churning one\'s not, and its command finds the holder', async () => {
    // A: 40 pipes a second made and held (a page, the pipe, its files: ~6.5 KiB of accounted kernel memory each);
    // B: 40 a second made and closed at once.
    const a = startWorkload(['--leak-pages-rate', '40', '--seconds', '14'], 'workload-alloc.py', { cgroupDir: MEMORY + A });
    const b = startWorkload(['--churn-pages-rate', '40', '--seconds', '14'], 'workload-alloc.py', { cgroupDir: MEMORY + B });
    try {
      await a.until('ready');
      await b.until('ready');
      const w = await kleak(['watch', '--interval', '1', '--duration', '7', '--json']);
      expect(w.exitCode, String(w.stderr)).toBe(0);
      const r = JSON.parse(String(w.stdout)) as WatchReport;
      const ma = r.memcgs!.find((m) => m.path === A)!;
      const mb = r.memcgs!.find((m) => m.path === B)!;
      expect(ma.verdict).toBe('growing');
      expect(ma.bytesPerMin).toBeGreaterThan(5 * 1024 * 1024);
      expect(mb.verdict).not.toBe('growing');
      expect(r.memcgs![0]!.path).toBe(A);
      expect(ma.next).toBe(`sudo kleak live --cgroup ${A} --stacks`);
      // Followed (without sudo: the test is root), for 3 s while A still leaks: the holder is alloc_pipe_info, in A.
      const live = await kleak([...ma.next.split(' ').slice(2), '--duration', '3', '--json']);
      expect(live.exitCode, String(live.stderr)).toBe(0);
      const lr = JSON.parse(String(live.stdout)) as JsonReport;
      const pipe = lr.sites.find((s) => s.function === 'alloc_pipe_info')!;
      expect(pipe.outstanding).toBeGreaterThan(0);
      expect(pipe.cgroups!.every((c) => c.cgroup === A)).toBe(true);
      for (const c of lr.cgroups ?? []) expect(c.cgroup).toBe(A);
    } finally {
      await a.release();
      await b.release();
    }
  }, 40_000);

  it('watch counts dying memory cgroups: three removed while their memory stays held are three more', async () => {
    const w = execa(process.execPath, [CLI, 'watch', '--interval', '0.5', '--duration', '6', '--json'], { reject: false });
    await sleep(1000);
    for (const c of DYING) {
      mkdirSync(MEMORY + c);
      // A task in the cgroup writes 256 KiB to /dev/shm and exits: the shared memory stays charged to the cgroup.
      await execa('sh', ['-c', 'echo $$ > "$1/cgroup.procs" && exec head -c 262144 /dev/zero > "$2"', 'sh', MEMORY + c, shm(c)]);
      rmdirSync(MEMORY + c);
      await sleep(800);
    }
    const r = JSON.parse(String((await w).stdout)) as WatchReport;
    const d = r.dyingMemcgs!;
    expect(d.series[d.series.length - 1]! - d.series[0]!).toBe(3);
    expect(d.verdict).toBe('growing');
    for (const c of DYING) rmSync(shm(c), { force: true });
  }, 30_000);
});
