// Flame-graph exports from real recordings with stacks: folded lines add up to the report's outstanding bytes, and
// the pprof file decoded back (pprof-format) gives the same totals per stack.
import { execa } from 'execa';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { gunzipSync } from 'node:zlib';
import { Profile } from 'pprof-format';
import { describe, expect, it } from 'vitest';
import type { JsonReport } from '../../src/report/json.js';
import { CLI, ROOT, rec } from '../helpers/cli.js';

const dir = mkdtempSync(`${tmpdir()}/kleak-flame-`);

describe.each(['keys53-stacks.report.gz', 'bt-pairs17-stacks.out.gz', 'keys29-hashed-stacks.pipe.gz'])('%s', (name) => {
  it('--folded: one line per stack, root first, weights adding up to the outstanding bytes; --pprof: the same decoded', async () => {
    const base = `${dir}/${name}`;
    const r = await execa(process.execPath, [CLI, 'replay', rec(name), '--json', '--folded', `${base}.folded`, '--pprof', `${base}.pb.gz`], { cwd: ROOT });
    const report = JSON.parse(r.stdout) as JsonReport;
    const lines = readFileSync(`${base}.folded`, 'utf8').trim().split('\n');
    let total = 0;
    for (const l of lines) {
      const m = /^(\S(?:.*\S)?) (\d+)$/.exec(l);
      expect(m, l).not.toBeNull();
      const frames = m![1]!.split(';');
      expect(frames.length).toBeGreaterThan(0);
      total += Number(m![2]);
    }
    expect(total).toBe(report.totals.outstandingBytes);
    // The leaf of the heaviest stack is the site holding the most bytes.
    expect(lines[0]!.replace(/ \d+$/, '').split(';').pop()).toBe(report.sites[0]!.stacks[0]?.frames[0] ?? report.sites[0]!.function);
    const p = Profile.decode(gunzipSync(readFileSync(`${base}.pb.gz`)));
    const str = (i: number | bigint) => p.stringTable.strings[Number(i)];
    expect(p.sampleType.map((t) => `${str(t.type)}/${str(t.unit)}`)).toEqual(['objects/count', 'space/bytes']);
    expect(p.sample.reduce((n, s) => n + Number(s.value[1]), 0)).toBe(report.totals.outstandingBytes);
    expect(p.sample.reduce((n, s) => n + Number(s.value[0]), 0)).toBe(report.totals.outstanding);
    expect(p.sample.length).toBe(lines.length);
  });
});

describe('--flamegraph', () => {
  it('one self-contained HTML file that headless Chromium draws with the site in it (screenshot taken)', async (ctx) => {
    const { onPath } = await import('../helpers/env.js');
    ctx.skip(!onPath('chromium'), "Debian's chromium is not installed; .ci/run installs it");
    const html = `${dir}/flame.html`;
    await execa(process.execPath, [CLI, 'replay', rec('bt-pairs17-stacks.out.gz'), '--text', '--flamegraph', html], { cwd: ROOT });
    const page = readFileSync(html, 'utf8');
    expect(page).not.toMatch(/<script[^>]+src=|<link[^>]+href=/); // nothing fetched: it opens offline
    const flags = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', `--user-data-dir=${dir}/chromium`, '--window-size=1000,400', '--virtual-time-budget=3000'];
    const dom = await execa('chromium', [...flags, '--dump-dom', `file://${html}`], { reject: false, timeout: 60_000 });
    expect(dom.stdout).toMatch(/<svg[^>]*d3-flame-graph/);
    expect(dom.stdout).toMatch(/name="user_preparse" class="frame"><rect[^>]*><\/rect><foreignObject[^>]*><div class="d3-flame-graph-label"[^>]*>user_preparse/);
    const shot = await execa('chromium', [...flags, `--screenshot=${dir}/flame.png`, `file://${html}`], { reject: false, timeout: 60_000 });
    expect(shot.exitCode).toBe(0);
    expect(readFileSync(`${dir}/flame.png`).subarray(1, 4).toString()).toBe('PNG');
  }, 120_000);
});
