// kleak as users get it: packed, installed with npm into a fresh prefix (no build at install, no devDependencies),
// and run from there; and a kleak started through npm exec (npx) stops cleanly when npm is stopped.
import { execa } from 'execa';
import { existsSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/cli.js';
import { isRoot, onPath } from '../helpers/env.js';
import { sleep } from '../helpers/live.js';

const tmp = mkdtempSync(`${tmpdir()}/kleak-install-`);

describe('installed package', () => {
  it('npm pack + npm install -g gives a working kleak: --version, --help, the bundled demo, the BPF object', async () => {
    await execa('npm', ['pack', '--pack-destination', tmp], { cwd: ROOT });
    const tgz = readdirSync(tmp).find((f) => f.endsWith('.tgz'))!;
    const listing = (await execa('tar', ['tzf', `${tmp}/${tgz}`])).stdout.split('\n');
    expect(listing).toContain('package/bpf/kleak.bpf.o');
    expect(listing).toContain('package/recordings/demo.report.gz');
    expect(listing.filter((f) => /\.ts$|^package\/test\//.test(f))).toEqual([]);
    const prefix = `${tmp}/prefix`;
    await execa('npm', ['install', '-g', '--prefer-offline', '--no-audit', '--no-fund', '--prefix', prefix, `${tmp}/${tgz}`]);
    const bin = `${prefix}/bin/kleak`;
    expect(existsSync(bin)).toBe(true);
    expect(existsSync(`${prefix}/lib/node_modules/kleak/node_modules/typescript`)).toBe(false);
    const v = await execa(bin, ['--version'], { cwd: tmp });
    expect(v.stdout).toMatch(/^kleak \d+\.\d+\.\d+$/);
    expect((await execa(bin, ['--help'], { cwd: tmp })).stdout).toMatch(/^kleak — find Linux kernel memory leaks/);
    const demo = await execa(bin, ['--text'], { cwd: tmp });
    expect(demo.stdout).toMatch(/user_preparse .*growing/);
  }, 120_000);

  it('npm exec (npx) kleak live, npm alone stopped with SIGTERM: kleak stops too (the kernel tells it its parent died)', async (ctx) => {
    ctx.skip(!isRoot || !onPath('bpftool'), 'needs root (and bpftool to check nothing stays loaded)');
    const npm = execa('npm', ['exec', '--', 'kleak', 'live', '--bytes', '4096', '--text'], { cwd: ROOT, reject: false, stdout: 'pipe', stderr: 'pipe' });
    let kleakPid: number | undefined;
    for (let i = 0; i < 400 && kleakPid === undefined; i++) {
      await sleep(100);
      const kids = await execa('pgrep', ['-P', String(npm.pid)], { reject: false });
      kleakPid = kids.stdout.trim() ? Number(kids.stdout.trim().split('\n')[0]) : undefined;
    }
    expect(kleakPid, 'npm started kleak').toBeDefined();
    await sleep(3000);
    npm.kill('SIGTERM'); // npm alone, as systemd, timeout --foreground or a supervisor would
    await npm;
    let alive = true;
    for (let i = 0; i < 50 && alive; i++) {
      await sleep(100);
      alive = existsSync(`/proc/${kleakPid}`);
    }
    expect(alive, 'kleak stopped when npm did').toBe(false);
  }, 60_000);
});
