// Input that would make kleak hold too much: blank lines before the format is known, and more distinct allocating
// functions than a site table should keep. Both are bounded, and the report says what was folded.
import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import { DetectingParser } from '../../src/parse/detect.js';

describe('bounded input', () => {
  it('blank lines before the first event are not kept while the format is detected', () => {
    const e = new Engine();
    const p = new DetectingParser(e, 'test');
    for (let i = 1; i <= 200_000; i++) p.line('', i);
    // What detection still holds: nothing for the blank lines (they were 1.36 GB for 20 MiB of them).
    expect((p as unknown as { head: unknown[] }).head).toHaveLength(0);
    p.line('         python3-1    [000] ..... 1.000000: kmalloc: call_site=f+0x1/0x2 ptr=ffff888100000000 bytes_req=8 bytes_alloc=8 gfp_flags=GFP_KERNEL node=-1 accounted=false', 200_001);
    p.end();
    expect(e.report({ kind: 'replay' }).sites[0]).toMatchObject({ function: 'f', outstanding: 1 });
    const empty = new DetectingParser(new Engine(), 'blank.txt');
    for (let i = 1; i <= 1000; i++) empty.line('', i);
    expect(() => empty.end()).toThrow(/blank\.txt is empty/);
  });

  it('more than 50,000 allocating functions: the rest are counted together, and the report says so', () => {
    const e = new Engine();
    for (let i = 0; i < 60_000; i++) {
      e.event({ kind: 'alloc', ts: 1 + i * 1e-6, ptr: (0xffff888100000000n + BigInt(i * 64)).toString(16), callSite: `fn${i}+0x10`, tracepoint: 'kmalloc', bytesAlloc: 64, cache: 'kmalloc-64' });
    }
    const r = e.report({ kind: 'replay' });
    expect(r.siteCount).toBe(50_001);
    expect(r.totals.outstanding).toBe(60_000);
    expect(r.sites.find((s) => s.function === '(other call sites)')).toMatchObject({ outstanding: 10_000, callSite: '(other call sites)' });
    expect(r.notices.some((n) => /more than 50,000 allocating functions: 10,000 more were counted together/.test(n.text))).toBe(true);
  });
});

describe('bounded kernel records, lines and captures (issue 23 item 9)', () => {
  it('past its bound of outstanding objects the engine counts, marks every site a lower bound and says so', () => {
    const e = new Engine({ maxTracked: 1000 });
    for (let i = 0; i < 1500; i++) {
      e.event({ kind: 'alloc', ts: 1 + i * 1e-6, ptr: (0xffff888100000000n + BigInt(i * 64)).toString(16), callSite: `fn${i % 3}+0x10`, tracepoint: 'kmalloc', bytesAlloc: 64, cache: 'kmalloc-64' });
    }
    const r = e.report({ kind: 'replay' });
    expect(r.totals.allocs).toBe(1500);
    expect(r.totals.outstanding).toBe(1000);
    expect(r.sites.every((s) => s.lowerBound === true)).toBe(true);
    expect(r.notices.some((n) => n.severity === 'dataLoss' && /^500 allocations were not tracked because kleak already held 1,000 outstanding objects/.test(n.text))).toBe(true);
  });

  it('an allocinfo dump of 70,000 distinct sites keeps 50,000 and one row for the rest, said with its count', async () => {
    const { mkdtempSync, writeFileSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { recordsReport } = await import('../../src/commands/records.js');
    const f = `${mkdtempSync(`${tmpdir()}/kleak-bounded-`)}/ai.txt`;
    const rows = Array.from({ length: 70_000 }, (_, i) => `  ${4096 * (1 + (i % 3))}  ${1 + (i % 3)} drivers/x/f${i}.c:${i % 900} [m${i % 13}] func:fn_${i}`);
    writeFileSync(f, `allocinfo - version: 1.0\n#     <size>  <calls> <tag info>\n${rows.join('\n')}\n`);
    const r = await recordsReport({ paths: [f], format: 'auto', everySec: 60 });
    expect(r.sites).toHaveLength(50_001);
    const other = r.sites.find((s) => s.label === '(other sites)')!;
    // Exact: the 20,000 rows past the bound, their calls summed.
    const want = rows.slice(50_000).reduce((n, row) => n + Number(row.trim().split(/\s+/)[1]), 0);
    expect(other.count).toBe(want);
    expect(r.notices).toContain('past 50,000 sites, 20,000 more were counted together as "(other sites)".');
  });

  it('a stream with no newline ends in one sentence (diff /dev/zero X never ended)', async () => {
    const { kleak } = await import('../helpers/cli.js');
    const r = await kleak(['diff', '/dev/zero', '/dev/zero']);
    expect(r.exitCode).toBe(1);
    expect(String(r.stderr)).toMatch(/^kleak: \/dev\/zero is neither a kleak watch capture nor a trace or recording kleak reads: .*no format kleak knows/m);
    const w = await kleak(['watch', '--replay', '/dev/zero']);
    expect(w.exitCode).toBe(1);
    expect(String(w.stderr)).toMatch(/^kleak: \/dev\/zero holds no watch sample in its first \d+ lines: it is not a watch capture/m);
  }, 60_000);

  it('a gzip bomb given to diff is read within its bound (900 MB of zeros reached 1.9 GB)', async () => {
    const { mkdtempSync, writeFileSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { gzipSync } = await import('node:zlib');
    const { kleak } = await import('../helpers/cli.js');
    const f = `${mkdtempSync(`${tmpdir()}/kleak-bomb-`)}/bomb.gz`;
    writeFileSync(f, gzipSync(Buffer.alloc(300 << 20), { level: 1 }));
    const r = await kleak(['diff', f, f]);
    expect(r.exitCode).toBe(1);
    expect(String(r.stderr)).toMatch(/^kleak: .*bomb\.gz is neither a kleak watch capture nor a trace or recording kleak reads/m);
  }, 60_000);
});
