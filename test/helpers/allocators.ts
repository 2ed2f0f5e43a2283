// The allocator workload every tracing backend is tested on: scripts/workload-alloc.py holds 7 vmalloc areas, 29
// pipe pages and 11 percpu chunks among churn; a live kleak with `--alloc vmalloc,page,percpu` must report exactly those.
import { expect } from 'vitest';
import type { JsonReport } from '../../src/report/json.js';
import { sleep, startKleak, startWorkload } from './live.js';

export const ALLOC_WORKLOAD = ['--hold-vmalloc', '7', '--churn-vmalloc', '40', '--hold-pages', '29', '--churn-pages', '500', '--hold-percpu', '11', '--churn-percpu', '60'];

/** Runs kleak live with `backendArgs` while the workload holds; returns the report and the kleak's pid. */
export async function traceHeldAllocations(backendArgs: string[]): Promise<{ report: JsonReport; pid: number | undefined }> {
  const k = startKleak([...backendArgs, '--alloc', 'vmalloc,page,percpu', '--comm', 'python3', '--json']);
  await k.ready;
  const w = startWorkload(ALLOC_WORKLOAD, 'workload-alloc.py');
  await w.until('holding');
  await sleep(1500); // closed maps are freed from a kworker
  k.proc.kill('SIGINT');
  const r = await k.proc;
  await w.release();
  expect(r.exitCode, k.stderr()).toBe(0);
  return { report: JSON.parse(String(r.stdout)) as JsonReport, pid: k.proc.pid };
}

/** Exactly what the workload held, each at its caller with its allocator, the churn counted and nothing growing. */
export function expectHeldAllocations(report: JsonReport): void {
  const at = (fn: string) => report.sites.find((s) => s.function === fn);
  const why = JSON.stringify({ totals: report.totals, sites: report.sites.map((s) => [s.function, s.allocator, s.allocs, s.outstanding]) });
  // 1 MiB of values after the map's header is 257 pages; the area's size counts its guard page.
  expect(at('__bpf_map_area_alloc'), why).toMatchObject({ allocator: 'vmalloc', cache: 'vmalloc', outstanding: 7, outstandingBytes: 7 * (1024 * 1024 + 2 * 4096) });
  expect(at('__bpf_map_area_alloc')!.allocs, why).toBeGreaterThanOrEqual(47);
  expect(at('__bpf_map_area_alloc')!.stacks[0]?.frames ?? ['array_map_alloc'], why).toContain('array_map_alloc');
  expect(at('anon_pipe_write'), why).toMatchObject({ allocator: 'page', outstanding: 29, outstandingBytes: 29 * 4096 });
  expect(at('anon_pipe_write')!.allocs, why).toBeGreaterThanOrEqual(529);
  expect(at('bpf_map_alloc_percpu'), why).toMatchObject({ allocator: 'percpu', outstanding: 11 });
  expect(at('bpf_map_alloc_percpu')!.allocs, why).toBeGreaterThanOrEqual(71);
  for (const s of report.sites) expect(s.verdict, s.function).not.toBe('growing');
  // percpu bytes: the kernel backend counts size × possible CPUs; the others report the tracepoint's bytes_alloc,
  // which over-counts, and every report of theirs says so (docs/allocators.md).
  const caveat = report.notices.some((n) => /percpu bytes are the tracepoint's bytes_alloc/.test(n.text));
  expect(caveat, `${report.source.backend}: the percpu bytes warning`).toBe(report.source.backend !== 'kernel');
}
