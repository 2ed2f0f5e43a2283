// kleak live --backend trace-cmd: the command line kleak builds, and, on a host where trace-cmd cannot enable
// tracing (this project's VM denies set_ftrace_filter), one clear sentence and nothing left behind.
import { readdirSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { ensureTracefs } from '../../src/kernel/tracefs.js';
import { traceCmdArgs } from '../../src/sources/trace-cmd.js';
import { kleak } from '../helpers/cli.js';
import { isRoot, onPath } from '../helpers/env.js';
import { startKleak, sleep, startWorkload } from '../helpers/live.js';
import type { JsonReport } from '../../src/report/json.js';

describe('the trace-cmd command line', () => {
  it('streams kmalloc filtered in the kernel and every kfree, in its own buffer instance, -T for stacks', () => {
    expect(traceCmdArgs({ filter: { bytes: 4096 }, stacks: true }, 'kleak-tc-7', { allocs: ['kmalloc'], frees: ['kfree'] }, 7)).toEqual([
      'stream', '-B', 'kleak-tc-7', '-e', 'kmem:kmalloc', '-f', 'bytes_alloc == 4096 && common_pid != 7', '-e', 'kmem:kfree', '-T',
    ]);
  });
  it('a named cache uses the kmem_cache events; old kernels add the _node variant with the same filter', () => {
    expect(traceCmdArgs({ filter: { cache: 'names_cache', comm: 'nginx' }, stacks: false }, 'k', { allocs: ['kmem_cache_alloc', 'kmem_cache_alloc_node'], frees: ['kmem_cache_free'] }, 1)).toEqual([
      'stream', '-B', 'k', '-e', 'kmem:kmem_cache_alloc', '-f', 'name == "names_cache" && comm == "nginx" && common_pid != 1',
      '-e', 'kmem:kmem_cache_alloc_node', '-f', 'name == "names_cache" && comm == "nginx" && common_pid != 1', '-e', 'kmem:kmem_cache_free',
    ]);
  });
  it('refuses filter text the kernel grammar cannot hold', () => {
    expect(() => traceCmdArgs({ filter: { comm: 'a"b' }, stacks: false }, 'k', { allocs: ['kmalloc'], frees: ['kfree'] }, 1)).toThrow(/--comm "a"b" has characters a kernel event filter cannot hold/);
  });
});

const skipWhy = !isRoot ? 'needs root' : !onPath('trace-cmd') ? 'trace-cmd is not installed; .ci/run installs it' : undefined;

describe.skipIf(skipWhy !== undefined)(`kleak live --backend trace-cmd on this host${skipWhy ? ` (skipped: ${skipWhy})` : ''}`, () => {
  // A fresh machine may not have tracefs mounted yet; kleak mounts it, and so do the tests before reading it.
  beforeAll(async () => {
    await ensureTracefs();
  });

  it('either traces the held keys, or names why trace-cmd cannot and suggests another backend; no instance left', async () => {
    const k = startKleak(['--backend', 'trace-cmd', '--bytes', '4096', '--json']);
    const started = await Promise.race([k.ready.then(() => /tracing with/.test(k.stderr())), k.proc.then(() => false)]);
    if (!started) {
      // This VM: the sandbox denies set_ftrace_filter and trace-cmd dies.
      const r = await k.proc;
      expect(r.exitCode).toBe(2);
      expect(k.stderr()).toMatch(/^kleak: trace-cmd could not start tracing \(".+"\): this host refuses a tracefs write trace-cmd makes/);
      expect(k.stderr()).toMatch(/Use --backend tracefs .* or --backend bpftrace\./);
    } else {
      const w = startWorkload(['--hold', '23']);
      await w.until('holding');
      await sleep(1500);
      k.proc.kill('SIGINT');
      const r = await k.proc;
      await w.release();
      expect((JSON.parse(String(r.stdout)) as JsonReport).sites.find((s) => s.function === 'user_preparse')?.outstanding).toBe(23);
    }
    expect(readdirSync('/sys/kernel/tracing/instances').filter((n) => n.startsWith('kleak'))).toEqual([]);
  });

  it('--dry-run shows the trace-cmd command', async () => {
    const r = await kleak(['live', '--backend', 'trace-cmd', '--bytes', '128', '--dry-run']);
    expect(String(r.stdout)).toMatch(/^trace-cmd stream -B kleak-tc-\d+ -e kmem:kmalloc -f 'bytes_alloc == 128 && common_pid != \d+' -e kmem:kfree$/);
  });
});
