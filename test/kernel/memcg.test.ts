// The memory cgroup readers on trees in the kernel's documented layouts (Documentation/admin-guide/cgroup-v2.rst,
// cgroup-v1/memory.rst): this VM runs cgroup v1 for memory, so v2 is read from a --root tree written here, laid out
// as a Kubernetes node with containerd and a Docker host name their cgroups. The live v1 reading is in
// test/live/cgroups.test.ts.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { afterAll, describe, expect, it } from 'vitest';
import { containerOf, parseMemoryStat, parseProcCgroups, readMemcgs } from '../../src/kernel/memcg.js';
import { WatchModel } from '../../src/engine/watch.js';

const root = mkdtempSync(`${tmpdir()}/kleak-memcg-`);
afterAll(() => rmSync(root, { recursive: true, force: true }));

const POD = 'kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1b2c3d4e_5f60_7182_93a4_b5c6d7e8f901.slice';
const CTR = `cri-containerd-${'ab'.repeat(32)}.scope`;

function v2(path: string, stat: Record<string, number>): void {
  const dir = `${root}/sys/fs/cgroup${path ? `/${path}` : ''}`;
  mkdirSync(dir, { recursive: true });
  writeFileSync(`${dir}/memory.stat`, Object.entries(stat).map(([k, v]) => `${k} ${v}`).join('\n') + '\nanon 4096\nfile 8192\n');
}

describe('memory cgroup readers', () => {
  it('reads cgroup v2: the kernel line of memory.stat per cgroup, and nr_dying_descendants', () => {
    v2('', { kernel: 900_000, slab_unreclaimable: 500_000 });
    writeFileSync(`${root}/sys/fs/cgroup/cgroup.controllers`, 'cpuset cpu io memory pids\n');
    writeFileSync(`${root}/sys/fs/cgroup/cgroup.stat`, 'nr_descendants 4\nnr_dying_descendants 7\n');
    v2(POD, { kernel: 300_000 });
    v2(`${POD}/${CTR}`, { slab_unreclaimable: 100_000, slab_reclaimable: 20_000, kernel_stack: 16_384, sock: 0, percpu: 960, vmalloc: 0, pagetables: 4096 });
    v2(`system.slice/docker-${'cd'.repeat(32)}.scope`, { kernel: 50_000 });
    const r = readMemcgs(root)!;
    expect(r.version).toBe(2);
    expect(r.dying).toBe(7);
    const by = new Map(r.cgroups.map((c) => [c.path, c.bytes]));
    expect(by.get('/')).toBe(900_000);
    expect(by.get(`/${POD}`)).toBe(300_000);
    // Without the "kernel" line (before 5.18), the kernel lines add up.
    expect(by.get(`/${POD}/${CTR}`)).toBe(100_000 + 20_000 + 16_384 + 960 + 4096);
    expect(containerOf(`/${POD}/${CTR}`)).toBe(`pod 1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901 container ${'ab'.repeat(6)}`);
    expect(containerOf(`/system.slice/docker-${'cd'.repeat(32)}.scope`)).toBe(`docker container ${'cd'.repeat(6)}`);
    expect(containerOf(`/machine.slice/libpod-${'ef'.repeat(32)}.scope`)).toBe(`podman container ${'ef'.repeat(6)}`);
    expect(containerOf('/system.slice/nginx.service')).toBe('service nginx');
    expect(containerOf('/kleak-a')).toBeUndefined();
  });

  it('reads the v2 memory.stat kernel lines only, and /proc/cgroups rows', () => {
    expect(parseMemoryStat('anon 1\nkernel 5\nsock 2\nfile 9\nslab x\n')).toEqual({ kernel: 5, sock: 2 });
    expect(parseProcCgroups('#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpuset\t3\t1\t1\nmemory\t4\t78\t1\n').get('memory')).toBe(78);
  });

  it('watch judges a cgroup whose kernel memory rises as growing and one that holds level as not', () => {
    const m = new WatchModel();
    for (let i = 0; i < 8; i++) {
      m.add({
        ts: i * 2, meminfo: {}, slabs: [],
        memcgs: [{ path: '/', bytes: 1e9 }, { path: '/leak', bytes: 4e6 + i * 1e6 }, { path: '/churn', bytes: 4e6 + (i % 2) * 2e5 }],
        dyingMemcgs: 10 + i,
      });
    }
    const r = m.report();
    expect(r.memcgs!.map((c) => [c.path, c.verdict])).toEqual([['/leak', 'growing'], ['/churn', 'steady']]);
    expect(r.memcgs![0]!.next).toBe('sudo kleak live --cgroup /leak --stacks');
    expect(r.dyingMemcgs).toMatchObject({ count: 17, verdict: 'growing' });
  });
});
