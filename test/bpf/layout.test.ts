// The reader's byte offsets (src/kernel/bpf-layout.ts) are those of bpf/kleak.h as a C compiler lays it out, and the
// committed BPF object is what its source builds to.
import { execa } from 'execa';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { describe, expect, it } from 'vitest';
import { ALLOC, ALLOCATOR_SHIFT, ALLOCATORS, CONFIG, COUNTERS, EVENT, SITE_COUNTS, SITE_KEY, STACK_DEPTH, encodeConfig } from '../../src/kernel/bpf-layout.js';
import { onPath } from '../helpers/env.js';
import { ROOT } from '../helpers/cli.js';

const FIELDS: Record<string, Record<string, string>> = {
  kleak_config: { size: '', minBytes: 'min_bytes', maxBytes: 'max_bytes', pid: 'pid', selfTgid: 'self_tgid', commOn: 'comm_on', cacheOn: 'cache_on', stacks: 'stacks', gfpAccount: 'gfp_account', rcuMonitorFn: 'rcu_monitor_fn', rcuWorkFn: 'rcu_work_fn', comm: 'comm', cache: 'cache', pageSize: 'page_size', events: 'events', ownLo: 'own_lo', ownHi: 'own_hi', cgroups: 'cgroups', cgroupLevel: 'cgroup_level', cgroupId: 'cgroup_id', possibleCpus: 'possible_cpus', stackEvery: 'stack_every' },
  kleak_alloc: { size: '', tsNs: 'ts_ns', callSite: 'call_site', cacheId: 'cache_id', bytesReq: 'bytes_req', bytesAlloc: 'bytes_alloc', pid: 'pid', stackId: 'stack_id', flags: 'flags', stackWeight: 'stack_weight', comm: 'comm', cgroup: 'cgroup' },
  kleak_site_key: { size: '', callSite: 'call_site', cacheId: 'cache_id', bytesAlloc: 'bytes_alloc', flags: 'flags' },
  kleak_event: { size: '', kind: 'kind', ptr: 'ptr', alloc: 'a' },
  kleak_site_counts: { size: '', allocs: 'allocs', frees: 'frees', missed: 'missed', allocBytes: 'alloc_bytes', freeBytes: 'free_bytes', missedBytes: 'missed_bytes' },
};
const TS: Record<string, Record<string, number>> = { kleak_event: EVENT, kleak_config: CONFIG, kleak_alloc: ALLOC, kleak_site_key: SITE_KEY, kleak_site_counts: SITE_COUNTS };

describe('bpf/kleak.h and its reader', () => {
  it('every offset and size the reader uses is the C layout', async (ctx) => {
    ctx.skip(!onPath('cc'), 'no C compiler to lay kleak.h out');
    const dir = mkdtempSync(`${tmpdir()}/kleak-layout-`);
    const lines = Object.entries(FIELDS).flatMap(([struct, fields]) =>
      Object.entries(fields).map(([ts, c]) => `printf("${struct}.${ts}=%zu\\n", ${c === '' ? `sizeof(struct ${struct})` : `offsetof(struct ${struct}, ${c})`});`),
    );
    writeFileSync(`${dir}/l.c`, `#include <stdio.h>\n#include <stddef.h>\n#include <linux/types.h>\n#include "kleak.h"\nint main(void){${lines.join('')} printf("counters=%d\\n", KLEAK_COUNTERS); printf("depth=%d\\n", KLEAK_STACK_DEPTH); printf("shift=%d\\n", KLEAK_ALLOCATOR_SHIFT); printf("page=%d\\n", KLEAK_A_PAGE); return 0;}\n`);
    await execa('cc', ['-I', `${ROOT}bpf`, '-o', `${dir}/l`, `${dir}/l.c`]);
    const out = (await execa(`${dir}/l`)).stdout.trim().split('\n');
    const seen = Object.fromEntries(out.map((l) => l.split('=') as [string, string]));
    for (const [struct, fields] of Object.entries(FIELDS)) for (const f of Object.keys(fields)) expect(TS[struct]![f], `${struct}.${f}`).toBe(Number(seen[`${struct}.${f}`]));
    expect(COUNTERS).toBe(Number(seen.counters));
    expect(STACK_DEPTH).toBe(Number(seen.depth));
    expect(ALLOCATOR_SHIFT).toBe(Number(seen.shift));
    expect(ALLOCATORS.indexOf('page')).toBe(Number(seen.page));
  });

  it('the config puts user text in fixed fields, cut to what the kernel compares (comm: 15 bytes and a NUL)', () => {
    const b = encodeConfig({ minBytes: 1n, maxBytes: 2n, pid: 3, selfTgid: 4, comm: 'a-very-long-process-name', cache: undefined, stacks: true, gfpAccount: 1 << 22, rcuMonitorFn: 5n, rcuWorkFn: 6n, pageSize: 4096, events: false, ownLo: 0n, ownHi: 0n, cgroups: true, cgroupLevel: 2, cgroupId: 77n, possibleCpus: 2 });
    expect(b.length).toBe(CONFIG.size);
    expect(b.toString('utf8', CONFIG.comm, CONFIG.comm + 16)).toBe('a-very-long-pro\0');
    expect(b.readUInt32LE(CONFIG.commOn)).toBe(1);
    expect(b.readUInt32LE(CONFIG.cacheOn)).toBe(0);
    expect(b.readUInt32LE(CONFIG.gfpAccount)).toBe(0x400000);
    expect(b.readBigUInt64LE(CONFIG.cgroupId)).toBe(77n);
  });

  it('the committed bpf/kleak.bpf.o is what bpf/kleak.bpf.c builds to (npm run build:bpf)', async (ctx) => {
    ctx.skip(!onPath('clang') || !onPath('llvm-strip'), 'clang and llvm are not installed; .ci/run installs them');
    const r = await execa('sh', [`${ROOT}scripts/build-bpf.sh`, '--check'], { reject: false });
    expect(r.exitCode, r.stderr).toBe(0);
  });
});
