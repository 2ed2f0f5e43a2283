// kleak diff: a healthy capture and a sick one, ranked by the bytes each difference explains.
import { execa } from 'execa';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { describe, expect, it } from 'vitest';
import type { DiffReport } from '../../src/commands/diff.js';
import { CLI, ROOT, rec } from '../helpers/cli.js';

const dir = mkdtempSync(`${tmpdir()}/kleak-diff-`);

function capture(path: string, k4: number, drvAreas: number): void {
  const lines = [JSON.stringify({ kleak: 1, kind: 'header', what: 'watch', intervalSec: 1 })];
  for (let i = 0; i < 3; i++) {
    lines.push(JSON.stringify({
      kind: 'watch-sample', ts: i, meminfo: { MemTotal: 8000000, Slab: 100000 + k4 * 4, VmallocUsed: 50000 + drvAreas * 1032 },
      slabs: [{ name: 'kmalloc-4k', activeObjs: k4, numObjs: k4, objSize: 4096 }, { name: 'dentry', activeObjs: 9000, numObjs: 9000, objSize: 192 }],
      vmalloc: [{ caller: 'drv_ring_init', module: 'drv', type: 'vmalloc', areas: drvAreas, bytes: drvAreas * 1056768, pages: drvAreas * 257 }],
    }));
  }
  writeFileSync(path, lines.join('\n') + '\n');
}

describe('kleak diff', () => {
  it('two watch captures: the cache and the vmalloc caller that differ come first, with the share they explain', async () => {
    capture(`${dir}/healthy.ndjson`, 1000, 2);
    capture(`${dir}/sick.ndjson`, 51000, 40);
    const r = await execa(process.execPath, [CLI, 'diff', `${dir}/healthy.ndjson`, `${dir}/sick.ndjson`, '--json'], { cwd: ROOT });
    const d = JSON.parse(r.stdout) as DiffReport;
    const cache = d.rows.filter((x) => x.kind === 'cache');
    expect(cache).toEqual([{ kind: 'cache', name: 'kmalloc-4k', a: 1000 * 4096, b: 51000 * 4096, delta: 50000 * 4096, share: 1 }]);
    expect(d.rows.find((x) => x.kind === 'vmalloc')).toMatchObject({ name: 'drv_ring_init [drv] (vmalloc)', delta: 38 * 1056768 });
    const text = await execa(process.execPath, [CLI, 'diff', `${dir}/healthy.ndjson`, `${dir}/sick.ndjson`], { cwd: ROOT });
    expect(text.stdout).toMatch(/^kmalloc-4k\s+3\.9 MiB\s+199 MiB\s+\+195 MiB\s+100%$/m);
  });

  it('two recordings of held keys: the call site and the kernel-itself module differ by the held bytes', async () => {
    const r = await execa(process.execPath, [CLI, 'diff', rec('keys41-plain.pipe.gz'), rec('keys97.report.gz'), '--json'], { cwd: ROOT });
    const d = JSON.parse(r.stdout) as DiffReport;
    expect(d.rows.find((x) => x.kind === 'site' && x.name.startsWith('user_preparse'))).toMatchObject({ a: 41 * 4096, b: 97 * 4096 });
    expect(d.rows.find((x) => x.kind === 'module')).toMatchObject({ name: 'the kernel itself' });
  });

  it('unlike captures are refused in one sentence', async () => {
    capture(`${dir}/w.ndjson`, 1, 1);
    const r = await execa(process.execPath, [CLI, 'diff', `${dir}/w.ndjson`, rec('keys97.report.gz')], { cwd: ROOT, reject: false });
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/not the same kind of capture/);
  });
});
