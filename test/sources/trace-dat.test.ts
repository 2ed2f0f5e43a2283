// kleak asks trace-cmd to skip its kmem plugin only when the recording kernel's formats already name call sites.
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { kmemPluginNeeded } from '../../src/sources/trace-dat.js';
import { rec } from '../helpers/cli.js';
import { onPath } from '../helpers/env.js';

const block = (name: string, fmt: string) => `name: ${name}\nID: 1\nformat:\n\tfield:unsigned long call_site;\noffset:8;\n\nprint fmt: "${fmt}", REC->call_site\n`;

describe('kmemPluginNeeded', () => {
  it('is false when every kmem format prints call_site with %pS', () => {
    expect(kmemPluginNeeded(block('kmalloc', 'call_site=%pS ptr=%p bytes_req=%zu') + block('kfree', 'call_site=%pS ptr=%p'))).toBe(false);
  });
  it('is true when a kernel printed raw addresses (call_site=%lx), or the formats say nothing of kmem', () => {
    expect(kmemPluginNeeded(block('kmalloc', 'call_site=%pS ptr=%p') + block('kfree', 'call_site=%lx ptr=%p'))).toBe(true);
    expect(kmemPluginNeeded(block('sched_switch', 'prev_comm=%s'))).toBe(true);
    expect(kmemPluginNeeded('')).toBe(true);
  });
  it.skipIf(!onPath('trace-cmd'))(`reads a real trace.dat's formats${onPath('trace-cmd') ? '' : ' (skipped: trace-cmd is not installed)'}`, async () => {
    const r = await execa('trace-cmd', ['dump', '--events', '-i', rec('keys53-stacks.dat')]);
    expect(r.stdout).toMatch(/name: kmalloc/);
    expect(kmemPluginNeeded(r.stdout)).toBe(false);
  });
});

describe('a trace.dat that arrives gzipped or through stdin', () => {
  it('is recognised by its magic, spooled for trace-cmd, and gives the same answer as the file', async (ctx) => {
    const { onPath } = await import('../helpers/env.js');
    ctx.skip(!onPath('trace-cmd'), 'trace-cmd is not installed; .ci/run installs it');
    const { execa } = await import('execa');
    const { gzipSync } = await import('node:zlib');
    const { mkdtempSync, readFileSync, writeFileSync, readdirSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { CLI, ROOT, rec } = await import('../helpers/cli.js');
    const dat = rec('keys53-stacks.dat');
    const { rmSync } = await import('node:fs');
    const gzDir = mkdtempSync(`${tmpdir()}/kleak-datgz-`);
    ctx.onTestFinished(() => rmSync(gzDir, { recursive: true, force: true }));
    const gz = `${gzDir}/k.dat.gz`;
    writeFileSync(gz, gzipSync(readFileSync(dat)));
    const totals = async (args: string[], input?: Buffer) =>
      (JSON.parse((await execa(process.execPath, [CLI, 'replay', ...args, '--json'], { cwd: ROOT, ...(input ? { input } : {}) })).stdout) as { totals: unknown }).totals;
    const want = await totals([dat]);
    expect((want as { outstanding: number }).outstanding).toBe(53);
    expect(await totals([gz])).toEqual(want);
    expect(await totals(['-'], readFileSync(dat))).toEqual(want);
    expect(await totals(['-'], readFileSync(gz))).toEqual(want);
    expect(readdirSync(tmpdir()).filter((n) => n.startsWith('kleak-dat-'))).toEqual([]);
  });
});
