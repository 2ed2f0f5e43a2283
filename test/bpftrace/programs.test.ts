// Every program variant kleak can generate compiles with the installed bpftrace (--emit-elf: a dry run), and
// user text never enters the program source.
import { execa } from 'execa';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { describe, expect, it } from 'vitest';
import { bpftraceParams, bpftraceProgram } from '../../src/sources/bpftrace.js';
import { probesFor, type KmemTracepoint } from '../../src/kernel/tracefs.js';
import { onPath } from '../helpers/env.js';
import type { AllocatorName } from '../../src/event.js';

const MODERN = new Set<KmemTracepoint>(['kmalloc', 'kfree', 'kmem_cache_alloc', 'kmem_cache_free']);
const dir = mkdtempSync(`${tmpdir()}/kleak-bt-`);
const base = { snapshotSec: 1, maxPointers: 4096, listMax: 100 };

const variants = [false, true].flatMap((events) =>
  [false, true].flatMap((stacks) => [false, true].map((namedCache) => ({ events, stacks, namedCache }))),
);

describe('bpftrace programs', () => {
  it.each(variants)('events=$events stacks=$stacks namedCache=$namedCache: every placeholder filled', ({ events, stacks, namedCache }) => {
    const program = bpftraceProgram({ events, stacks }, probesFor(MODERN, namedCache), namedCache);
    expect(program).not.toMatch(/ALLOC_PROBES|FREE_PROBES|OTHER_ALLOCATORS|CACHE_PRED|CACHE_FIELD|STACK_[A-Z]+|MAP_KEY_TYPES/);
    expect(program).toContain(namedCache ? 'tracepoint:kmem:kmem_cache_alloc' : 'tracepoint:kmem:kmalloc');
    expect(program.includes('kstack(')).toBe(stacks);
  });

  it.for(variants)('events=$events stacks=$stacks namedCache=$namedCache: compiles (bpftrace --emit-elf)', async ({ events, stacks, namedCache }, ctx) => {
    ctx.skip(!onPath('bpftrace'), 'bpftrace is not installed; .ci/run installs it');
    ctx.skip(process.getuid?.() !== 0, 'bpftrace needs root to compile against the running kernel');
    const program = bpftraceProgram({ events, stacks }, probesFor(MODERN, namedCache), namedCache);
    const params = bpftraceParams({ ...base, events, stacks, filter: namedCache ? { cache: 'names_cache' } : { bytes: 4096 } }, namedCache);
    const r = await execa('bpftrace', ['--emit-elf', `${dir}/p.o`, '-e', program, ...params], { reject: false });
    expect(r.stderr.replace(/.*RLIMIT_MEMLOCK.*\n?/g, '').trim()).toBe('');
    expect(r.exitCode).toBe(0);
  });

  const allocatorSets: AllocatorName[][] = [['vmalloc'], ['page'], ['percpu'], ['slab', 'vmalloc', 'page', 'percpu']];
  it.for(allocatorSets.flatMap((a) => [false, true].map((stacks) => ({ a, stacks }))))('--alloc $a stacks=$stacks (pairs): placeholders filled, the slab probes only with slab, compiles', async ({ a, stacks }, ctx) => {
    const allocators = new Set(a);
    const program = bpftraceProgram({ events: false, stacks, allocators }, allocators.has('slab') ? probesFor(MODERN, false) : undefined, false);
    expect(program).not.toMatch(/ALLOC_PROBES|FREE_PROBES|OTHER_ALLOCATORS|CACHE_PRED|CACHE_FIELD|STACK_[A-Z]+|\/\/ SLAB\{/);
    expect(program.includes('tracepoint:kmem:kmalloc')).toBe(allocators.has('slab'));
    expect(program.includes('tracepoint:vmalloc:alloc_vmap_area')).toBe(allocators.has('vmalloc'));
    expect(program.includes('tracepoint:kmem:mm_page_free_batched')).toBe(allocators.has('page'));
    expect(program.includes('tracepoint:percpu:percpu_free_percpu')).toBe(allocators.has('percpu'));
    ctx.skip(!onPath('bpftrace') || process.getuid?.() !== 0, 'compiling needs bpftrace and root');
    const params = bpftraceParams({ ...base, events: false, stacks, filter: { comm: 'python3' } }, false);
    const r = await execa('bpftrace', ['--emit-elf', `${dir}/a.o`, '-e', program, ...params], { reject: false });
    expect(r.stderr.replace(/.*RLIMIT_MEMLOCK.*\n?/g, '').trim()).toBe('');
    expect(r.exitCode).toBe(0);
  });

  it.each([false, true])('events=%s, names read from the raw tracepoint (bpftrace 0.23): only the allocation probe changes', (events) => {
    const program = bpftraceProgram({ events, stacks: true }, probesFor(MODERN, true), true, true);
    const alloc = program.slice(program.indexOf('rawtracepoint:kmem_cache_alloc'), program.indexOf('tracepoint:kmem:kmem_cache_free'));
    expect(alloc).not.toContain('args->');
    expect(alloc).toContain('str(((struct kmem_cache *)arg2)->name) == str($8)');
    expect(alloc).toContain('((struct kmem_cache *)arg2)->size');
    expect(program).not.toContain('tracepoint:kmem:kmem_cache_alloc');
    // The free probe still reads the tracepoint, keyed by the pointer as u64 like the allocation.
    expect(program.slice(program.indexOf('tracepoint:kmem:kmem_cache_free'))).toContain('(uint64)args->ptr');
  });

  it('old kernels: the _node tracepoints join the probe list', () => {
    const old = new Set<KmemTracepoint>([...MODERN, 'kmalloc_node', 'kmem_cache_alloc_node']);
    const program = bpftraceProgram({ events: false, stacks: false }, probesFor(old, false), false);
    expect(program).toContain('tracepoint:kmem:kmalloc,\ntracepoint:kmem:kmalloc_node');
  });

  it('a kernel without the kmem tracepoints gets one sentence', () => {
    expect(() => probesFor(new Set(), false)).toThrow(/this kernel has no kmem:kmalloc \/ kmem:kfree tracepoints/);
  });

  it('user values go in positional parameters, never in the source', () => {
    const evil = '"; system("touch /tmp/pwned"); //';
    const params = bpftraceParams({ ...base, events: false, stacks: false, filter: { comm: evil, bytes: 128 } }, false);
    const program = bpftraceProgram({ events: false, stacks: false }, probesFor(MODERN, false), false);
    expect(program).not.toContain(evil);
    expect(params).toContain(evil);
    expect(params.slice(0, 2)).toEqual(['128', '128']);
  });

  it('a kmalloc cache name becomes a size filter on kmalloc', () => {
    const params = bpftraceParams({ ...base, events: false, stacks: false, filter: { cache: 'kmalloc-cg-4096' } }, false);
    expect(params.slice(0, 2)).toEqual(['4096', '4096']);
    expect(params[6]).toBe('0');
  });
});
