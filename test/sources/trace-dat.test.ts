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
