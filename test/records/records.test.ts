// Kernel records replayed as gauges. This VM has no kmemleak, no /proc/allocinfo and no modules, so the inputs are
// written here in the layouts docs/formats.md describes (every variant), plus this machine's real slabinfo.
import { execa } from 'execa';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { describe, expect, it } from 'vitest';
import { recordsReport, renderRecords } from '../../src/commands/records.js';
import type { RecordsReport } from '../../src/records/model.js';
import { CLI, ROOT } from '../helpers/cli.js';

const dir = mkdtempSync(`${tmpdir()}/kleak-records-`);

/** One kmemleak object block: old layout ([<addr>] frames, age) or new (crc, bare frames). */
function object(addr: number, size: number, frames: string[], old: boolean): string {
  const a = `ffff8881${addr.toString(16).padStart(8, '0')}`;
  return [
    `unreferenced object 0x${a} (size ${size}):`,
    `  comm "insmod", pid 812, jiffies 4294937296${old ? ' (age 1203.450s)' : ''}`,
    '  hex dump (first 32 bytes):',
    '    6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b  kkkkkkkkkkkkkkkk',
    '    6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b a5  kkkkkkkkkkkkkkk.',
    old ? '  backtrace:' : '  backtrace (crc 1a2b3c4d):',
    ...frames.map((f, i) => (old ? `    [<ffffffff8${String(i).padStart(7, '0')}>] ${f}` : `    ${f}`)),
  ].join('\n');
}

const LEAK = ['__kmalloc_cache_noprof+0x2d1/0x3d0', 'drv_rx_refill+0x64/0x120 [drv]', 'drv_poll+0x1a0/0x300 [drv]', '__napi_poll+0x2b/0x1c0'];
const ONCE = ['kmalloc_trace+0x26/0x90', 'acpi_ds_build_internal_package_obj+0x1d2/0x2a0', 'acpi_ds_eval_data_object_operands+0x10a/0x140'];
const BURST = ['__kmalloc_noprof+0x20f/0x3a0', 'tty_buffer_alloc+0x4c/0x90', 'tty_insert_flip_string_fixed_flag+0x88/0x140'];

/** Report i of ten: the leak holds 5 + 7i objects, one object is reported every time, a burst comes and goes. */
function report(i: number, old: boolean): string {
  const blocks = [object(1, 256, ONCE, old)];
  for (let k = 0; k < 5 + 7 * i; k++) blocks.push(object(0x1000 + k, 512, LEAK, old));
  if (i % 2 === 1) for (let k = 0; k < 30; k++) blocks.push(object(0x9000 + k + i * 100, 1024, BURST, old));
  return blocks.join('\n') + '\n';
}

describe('kmemleak reports', () => {
  for (const old of [true, false]) {
    it(`ten reports in ten files (${old ? 'older layout: [<addr>] frames, age' : 'newer layout: crc, bare frames'}): the leaking backtrace is growing, in its module`, async () => {
      const files = Array.from({ length: 10 }, (_, i) => {
        const f = `${dir}/${old ? 'old' : 'new'}-kmemleak-${i + 1}.txt`;
        writeFileSync(f, report(i, old));
        return f;
      });
      const r = await recordsReport({ paths: files.reverse(), format: 'auto', everySec: 600 });
      expect(r.format).toBe('kmemleak');
      expect(r.readings).toBe(10);
      const leak = r.sites.find((s) => s.label === 'drv_rx_refill')!;
      expect(leak).toMatchObject({ module: 'drv', count: 5 + 63, bytes: (5 + 63) * 512, verdict: 'growing' });
      expect(leak.where).toBe('drv_rx_refill [drv] ← drv_poll [drv] ← __napi_poll');
      expect(leak.countPerMin).toBeCloseTo(7 / 10, 1);
      const once = r.sites.find((s) => s.label === 'acpi_ds_build_internal_package_obj')!;
      expect(once.series).toEqual(Array(10).fill(1)); // one object reported ten times is one object
      expect(once.verdict).not.toBe('growing');
      expect(r.sites.find((s) => s.label === 'tty_buffer_alloc')!.verdict).not.toBe('growing');
      expect(r.modules[0]).toMatchObject({ module: 'drv', growingSites: 1 });
      expect(r.modules.find((m) => m.module === 'the kernel itself')).toBeDefined();
      expect(r.notices.join(' ')).toMatch(/assumed one every 600 s/);
      expect(r.badLines).toEqual([]);
    });
  }

  it('one file with several reports separated by date lines: readings split there, timed by them', async () => {
    const text = Array.from({ length: 6 }, (_, i) => `Mon Nov 23 0${i}:00:00 UTC 2026\n${report(i, false)}`).join('');
    writeFileSync(`${dir}/one.txt`, text);
    const r = await recordsReport({ paths: [`${dir}/one.txt`], format: 'auto', everySec: 1 });
    expect(r.readings).toBe(6);
    expect(r.span.lastTs - r.span.firstTs).toBe(5 * 3600);
    expect(r.sites.find((s) => s.label === 'drv_rx_refill')!.verdict).toBe('growing');
    expect(r.notices.join(' ')).not.toMatch(/assumed/);
  });

  it('malformed and truncated blocks are bad lines with their numbers, never fatal', async () => {
    const text = report(0, false) + '    not_a_frame\nunreferenced object 0xffff888100abc000 (size 64):\n  comm "x", pid 1, jiffies 1\n  backtrace (crc 0):\n    cut_off+0x1\n';
    writeFileSync(`${dir}/bad.txt`, text);
    const r = await recordsReport({ paths: [`${dir}/bad.txt`], format: 'kmemleak', everySec: 60 });
    const total = text.split('\n').length;
    expect(r.badLines.map((b) => b.line)).toEqual([total - 5, total - 1]);
    expect(r.sites.find((s) => s.label === 'drv_rx_refill')!.count).toBe(5);
  });
});

describe('allocinfo dumps', () => {
  const dump = (i: number, v2: boolean) =>
    [
      `allocinfo - version: ${v2 ? '2.0' : '1.0'}`,
      '#     <size>  <calls> <tag info>',
      `     ${65536 * (1 + i)}       ${16 * (1 + i)} drivers/net/foo/foo_main.c:812 [foo] func:foo_alloc_ring${v2 ? ' accurate:no' : ''} `,
      `     ${4096 * (i % 2 ? 9 : 1)}        ${i % 2 ? 9 : 1} mm/slub.c:2466 func:alloc_slab_page `,
      `   1234567     4000 kernel/fork.c:311 func:alloc_thread_stack_node`,
      '',
    ].join('\n');
  for (const v2 of [false, true]) {
    it(`version ${v2 ? '2.0 (with tags)' : '1.0'}: growth at file:line, by module`, async () => {
      writeFileSync(`${dir}/allocinfo-${v2}.txt`, Array.from({ length: 8 }, (_, i) => dump(i, v2)).join(''));
      const r = await recordsReport({ paths: [`${dir}/allocinfo-${v2}.txt`], format: 'auto', everySec: 60 });
      expect(r.format).toBe('allocinfo');
      expect(r.sites[0]).toMatchObject({ label: 'foo_alloc_ring', module: 'foo', where: 'drivers/net/foo/foo_main.c:812', count: 128, bytes: 8 * 65536, verdict: 'growing' });
      expect(r.sites.find((s) => s.label === 'alloc_slab_page')!.verdict).not.toBe('growing');
      expect(r.sites.find((s) => s.label === 'alloc_thread_stack_node')!.verdict).toBe('steady');
      expect(r.badLines).toEqual([]);
    });
  }
});

describe('SLUB alloc_traces dumps', () => {
  const dump = (i: number, stacks: boolean, waste: boolean) =>
    [
      `    ${412 + 40 * i} drv_rx_refill+0x64/0x120 [drv]${waste ? ' waste=1648/4' : ''} age=10/5120/90210 pid=0-812 cpus=0-3`,
      ...(stacks ? ['        drv_rx_refill+0x64/0x120 [drv]', '        drv_poll+0x1a0/0x300 [drv]', '        __napi_poll+0x2b/0x1c0', ''] : []),
      `     ${i % 2 ? 90 : 3} tty_buffer_alloc+0x4c/0x90 age=1/2/3 pid=14-14 cpus=1 nodes=0`,
      ...(stacks ? ['        tty_buffer_alloc+0x4c/0x90', ''] : []),
      '=== next',
      '',
    ].join('\n');
  for (const [stacks, waste] of [[false, false], [true, true]] as const) {
    it(`${stacks ? 'with stacks and waste=' : 'plain'}: the location that keeps more objects is growing, in its module`, async () => {
      writeFileSync(`${dir}/at-${stacks}.txt`, Array.from({ length: 8 }, (_, i) => dump(i, stacks, waste)).join(''));
      const r = await recordsReport({ paths: [`${dir}/at-${stacks}.txt`], format: 'auto', everySec: 60 });
      expect(r.format).toBe('alloc_traces');
      expect(r.readings).toBe(8);
      expect(r.sites[0]).toMatchObject({ label: 'drv_rx_refill', module: 'drv', count: 412 + 280, verdict: 'growing' });
      expect(r.sites.find((s) => s.label === 'tty_buffer_alloc')!.verdict).not.toBe('growing');
      expect(r.badLines).toEqual([]);
    });
  }
});

describe('vmallocinfo capture loops', () => {
  it("this machine's /proc/vmallocinfo captured eight times with date lines, a module's ring growing: that caller grows", async (ctx) => {
    let real: string;
    try {
      real = readFileSync('/proc/vmallocinfo', 'utf8');
    } catch {
      return ctx.skip(true, '/proc/vmallocinfo needs root');
    }
    const ring = (i: number) => Array.from({ length: 2 + 3 * i }, (_, k) => `0xffffc9${(0x10000000 + k * 0x102000).toString(16).padStart(10, '0')}-0xffffc9${(0x10000000 + k * 0x102000 + 0x102000).toString(16).padStart(10, '0')} 1056768 drv_ring_init+0x2d/0x70 [drv] pages=257 vmalloc vpages N0=257`);
    const dump = (i: number) => `Mon Nov 23 1${i}:00:00 UTC 2026\n${real.trimEnd()}\n${ring(i).join('\n')}\n`;
    writeFileSync(`${dir}/vm.txt`, Array.from({ length: 8 }, (_, i) => dump(i)).join(''));
    const r = await recordsReport({ paths: [`${dir}/vm.txt`], format: 'auto', everySec: 60 });
    expect(r.format).toBe('vmallocinfo');
    expect(r.readings).toBe(8);
    expect(r.sites[0]).toMatchObject({ label: 'drv_ring_init', module: 'drv', where: 'vmalloc', count: 23, verdict: 'growing' });
    expect(r.span.lastTs - r.span.firstTs).toBe(7 * 3600);
    expect(r.badLines).toEqual([]);
  });

  it('the same capture cut inside its last dump: that dump is left out and said (the caller read 0 and steady)', async (ctx) => {
    let whole: string;
    try {
      whole = readFileSync(`${dir}/vm.txt`, 'utf8');
    } catch {
      return ctx.skip(true, 'needs the capture of the test before (root)');
    }
    const lastDump = whole.lastIndexOf('Mon Nov 23 17:00:00');
    for (const [what, at] of [['mid-line', lastDump + Math.floor((whole.length - lastDump) / 3)], ['at a line end', whole.indexOf('\n', lastDump + 200) + 1]] as const) {
      writeFileSync(`${dir}/vm-cut.txt`, whole.slice(0, at));
      const r = await recordsReport({ paths: [`${dir}/vm-cut.txt`], format: 'auto', everySec: 60 });
      expect(r.readings, what).toBe(7);
      expect(r.sites[0], what).toMatchObject({ label: 'drv_ring_init', count: 20, verdict: 'growing' });
      expect(r.notices.join(' '), what).toMatch(/the last vmallocinfo dump of .*vm-cut\.txt (ends inside a line|holds \d+ rows against \d+ in the one before|counts \d+ against \d+ in the one before): it was cut short and is left out/);
    }
  });
});

describe('slabinfo capture loops', () => {
  it("this machine's /proc/slabinfo, captured ten times with one cache growing: that cache is growing", async (ctx) => {
    let real: string;
    try {
      real = readFileSync('/proc/slabinfo', 'utf8');
    } catch {
      return ctx.skip(true, '/proc/slabinfo needs root');
    }
    const grow = (i: number) => real.replace(/^(kmalloc-4k\s+)(\d+)(\s+)(\d+)/m, (_m, a: string, act: string, b: string, num: string) => `${a}${Number(act) + 200 * i}${b}${Number(num) + 200 * i}`);
    writeFileSync(`${dir}/slabinfo.txt`, Array.from({ length: 10 }, (_, i) => `${grow(i)}===\n`).join(''));
    const r = await recordsReport({ paths: [`${dir}/slabinfo.txt`], format: 'auto', everySec: 1 });
    expect(r.format).toBe('slabinfo');
    expect(r.readings).toBe(10);
    expect(r.sites[0]).toMatchObject({ label: 'kmalloc-4k', verdict: 'growing' });
    expect(r.sites.filter((s) => s.verdict === 'growing').map((s) => s.label)).toEqual(['kmalloc-4k']);
    expect(r.badLines).toEqual([]);
    // The live run that finds the holder, as kleak watch suggests for the same cache (issue 22 item 12).
    expect(r.sites[0]!.next).toBe('sudo kleak live --bytes 4096');
    expect(renderRecords(r)).toContain('kmalloc-4k is growing: sudo kleak live --bytes 4096 names who holds it');
    expect(r.sites.filter((s) => s.next !== undefined)).toHaveLength(1);
  });
});

it('kleak replay FILES --every: the text report names the growing site and its module; --json is the same data', async () => {
  const files = Array.from({ length: 10 }, (_, i) => {
    const f = `${dir}/cli-kmemleak-${i + 1}.txt`;
    writeFileSync(f, report(i, false));
    return f;
  });
  const text = await execa(process.execPath, [CLI, 'replay', ...files, '--every', '600'], { cwd: ROOT });
  expect(text.stdout).toMatch(/^drv_rx_refill\s+\[drv\]\s+68 .* growing$/m);
  expect(text.stdout).toMatch(/^BY MODULE: \[drv\] /m);
  const json = JSON.parse((await execa(process.execPath, [CLI, 'replay', ...files, '--every', '600', '--json'], { cwd: ROOT })).stdout) as RecordsReport;
  expect(json.sites[0]).toMatchObject({ label: 'drv_rx_refill', verdict: 'growing' });
  const bad = await execa(process.execPath, [CLI, 'replay', `${dir}/one.txt`, '--format', 'allocinfo'], { cwd: ROOT, reject: false });
  expect(bad.exitCode).toBe(1);
  expect(bad.stderr).toMatch(/hold no \/proc\/allocinfo dumps/);
});

describe('kleak watch --root DIR (a copy of /proc and /sys from another host)', () => {
  it('reads allocinfo and kmemleak where they exist, with verdicts; says what is missing otherwise', async () => {
    const root = mkdtempSync(`${tmpdir()}/kleak-root-`);
    const { mkdirSync } = await import('node:fs');
    mkdirSync(`${root}/proc`);
    mkdirSync(`${root}/sys/kernel/debug`, { recursive: true });
    writeFileSync(`${root}/proc/slabinfo`, 'slabinfo - version: 2.1\n# name <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>\nkmalloc-4k 100 112 4096 8 8 : tunables 0 0 0 : slabdata 14 14 0\n');
    writeFileSync(`${root}/proc/meminfo`, 'MemTotal: 1000000 kB\nMemFree: 500000 kB\nSlab: 1000 kB\n');
    writeFileSync(`${root}/proc/vmallocinfo`, '');
    let i = 0;
    const write = () => {
      writeFileSync(`${root}/proc/allocinfo`, `allocinfo - version: 1.0\n#     <size>  <calls> <tag info>\n  ${65536 * (1 + i)}  ${16 * (1 + i)} drivers/net/foo/foo_main.c:812 [foo] func:foo_alloc_ring\n`);
      writeFileSync(`${root}/sys/kernel/debug/kmemleak`, Array.from({ length: 3 + 2 * i }, (_, k) => object(0x1000 + k, 512, LEAK, false)).join('\n') + '\n');
      // SLUB alloc_traces of kmalloc-4k (slub_debug=U), newer layout with the stack below each entry
      mkdirSync(`${root}/sys/kernel/debug/slab/kmalloc-4k`, { recursive: true });
      writeFileSync(`${root}/sys/kernel/debug/slab/kmalloc-4k/alloc_traces`, [
        `    ${40 + 30 * i} drv_rx_refill+0x64/0x120 [drv] age=10/5120/90210 pid=0-812 cpus=0-3`,
        '        __kmalloc_cache_noprof+0x2a1/0x3c0', '        drv_rx_refill+0x64/0x120 [drv]', '        drv_poll+0x1b0/0x400 [drv]', '',
        '     12 seq_open+0x2c/0xa0 age=300/400/500 pid=1-1 cpus=0', '        seq_open+0x2c/0xa0', '',
      ].join('\n'));
      i++;
    };
    write();
    const timer = setInterval(write, 400);
    const r = await execa(process.execPath, [CLI, 'watch', '--root', root, '--interval', '0.5', '--duration', '7', '--json'], { cwd: ROOT, reject: false });
    clearInterval(timer);
    expect(r.exitCode, r.stderr).toBe(0);
    const w = JSON.parse(r.stdout) as { records: Record<string, RecordsReport> };
    expect(w.records.allocinfo!.sites[0]).toMatchObject({ label: 'foo_alloc_ring', module: 'foo', verdict: 'growing' });
    expect(w.records.kmemleak!.sites[0]).toMatchObject({ label: 'drv_rx_refill', module: 'drv', verdict: 'growing' });
    // alloc_traces of the cache watch lists, bytes from its object size; the steady location is not growing
    const traces = w.records['alloc_traces kmalloc-4k']!;
    expect(traces.sites[0]).toMatchObject({ label: 'drv_rx_refill', module: 'drv', verdict: 'growing' });
    expect(traces.sites[0]!.bytes).toBe(traces.sites[0]!.count * 4096);
    expect(traces.sites.find((x) => x.label === 'seq_open')?.verdict).not.toBe('growing');
    const { rmSync } = await import('node:fs');
    rmSync(`${root}/proc/allocinfo`);
    rmSync(`${root}/sys/kernel/debug/kmemleak`);
    const asked = await execa(process.execPath, [CLI, 'watch', '--root', root, '--cache', 'kmalloc-4k,dentry', '--interval', '0.5', '--duration', '1', '--json'], { cwd: ROOT, reject: false });
    expect(asked.stderr).toMatch(/no alloc_traces for dentry \(boot with slub_debug=U,dentry/);
    expect((JSON.parse(asked.stdout) as { records: Record<string, RecordsReport> }).records['alloc_traces kmalloc-4k']!.sites[0]!.label).toBe('drv_rx_refill');
    rmSync(`${root}/sys/kernel/debug/slab`, { recursive: true });
    const none = await execa(process.execPath, [CLI, 'watch', '--root', root, '--interval', '0.5', '--duration', '1', '--json'], { cwd: ROOT, reject: false });
    expect(none.stderr).toMatch(/this kernel keeps no allocinfo \(a 6\.10\+ kernel with CONFIG_MEM_ALLOC_PROFILING.*; no kmemleak \(CONFIG_DEBUG_KMEMLEAK.*; no SLUB alloc_traces \(boot with slub_debug=U/);
  }, 30_000);

  it('a reading that fails mid-run is a counted, said gap, not a crash (issue 23 item 8)', async () => {
    const root = mkdtempSync(`${tmpdir()}/kleak-root-`);
    const { mkdirSync, renameSync } = await import('node:fs');
    mkdirSync(`${root}/proc`);
    const slab = `${root}/proc/slabinfo`;
    writeFileSync(slab, 'slabinfo - version: 2.1\n# name <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>\nkmalloc-4k 100 112 4096 8 8 : tunables 0 0 0 : slabdata 14 14 0\n');
    writeFileSync(`${root}/proc/meminfo`, 'MemTotal: 1000000 kB\nMemFree: 500000 kB\nSlab: 1000 kB\n');
    const run = execa(process.execPath, [CLI, 'watch', '--root', root, '--interval', '0.5', '--duration', '5', '--json'], { cwd: ROOT, reject: false });
    let err = '';
    run.stderr!.on('data', (d: Buffer) => (err += String(d)));
    while (!/watching/.test(err) && run.exitCode === null) await new Promise((r) => setTimeout(r, 50));
    await new Promise((r) => setTimeout(r, 1200));
    renameSync(slab, `${slab}.away`);
    await new Promise((r) => setTimeout(r, 1600));
    renameSync(`${slab}.away`, slab);
    const r = await run;
    expect(r.exitCode, err).toBe(0);
    expect(err).toMatch(/^kleak: a reading failed \(.*slabinfo.*\); it is a gap in the series, and watch goes on\.$/m);
    expect(err).toMatch(/^kleak: readings work again\.$/m);
    const w = JSON.parse(r.stdout) as { missedReadings: { count: number; why: string }; span: { samples: number } };
    expect(w.missedReadings.count).toBeGreaterThanOrEqual(2);
    expect(w.missedReadings.count).toBeLessThanOrEqual(4);
    expect(w.span.samples + w.missedReadings.count).toBeGreaterThanOrEqual(9);
  }, 30_000);
});
