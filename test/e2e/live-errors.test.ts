// kleak live's preflight: each missing piece is one sentence and exit code 2, before anything is traced.
import { chmodSync, mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { CLI, kleak } from '../helpers/cli.js';
import { isRoot, onPath } from '../helpers/env.js';

const tmp = mkdtempSync(`${tmpdir()}/kleak-preflight-`);
const nodeDir = dirname(process.execPath);

describe('kleak live preflight', () => {
  it('not root: says so and suggests sudo, exit 2', async (ctx) => {
    ctx.skip(!isRoot || !onPath('setpriv'), 'needs root and setpriv to run kleak as an unprivileged user');
    const r = await execa('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, CLI, 'live', '--bytes', '4096'], { reject: false });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/^kleak: kleak live needs root/);
    expect(r.stderr).toMatch(/sudo/);
  });

  it('bpftrace missing: names the package and the other backend, exit 2', async (ctx) => {
    ctx.skip(!isRoot, 'as a non-root user the root check comes first');
    // A PATH with node and nothing else.
    mkdirSync(`${tmp}/node-only`);
    symlinkSync(process.execPath, `${tmp}/node-only/node`);
    const r = await kleak(['live', '--backend', 'bpftrace', '--bytes', '4096'], { env: { PATH: `${tmp}/node-only` } });
    expect(r.exitCode).toBe(2);
    expect(String(r.stderr)).toMatch(/^kleak: bpftrace is not installed\.\n  Install the bpftrace package \(apt-get install bpftrace\)/);
  });

  it("bpftrace failing to start: shows bpftrace's own error line, exit 2", async (ctx) => {
    ctx.skip(!isRoot, 'as a non-root user the root check comes first');
    // A stand-in that fails the way bpftrace does when the kernel refuses the program.
    writeFileSync(`${tmp}/bpftrace`, '#!/bin/sh\necho "ERROR: Error attaching probe: tracepoint:kmem:kmalloc" >&2\nexit 1\n');
    chmodSync(`${tmp}/bpftrace`, 0o755);
    const r = await kleak(['live', '--backend', 'bpftrace', '--bytes', '4096'], { env: { PATH: `${tmp}:${nodeDir}:/usr/bin:/bin` } });
    expect(r.exitCode).toBe(2);
    expect(String(r.stderr)).toMatch(/^kleak: bpftrace failed to start: ERROR: Error attaching probe: tracepoint:kmem:kmalloc\./);
  });

  it('bad live options: one sentence, exit 1', async () => {
    const r = await kleak(['live', '--bytes', '4096', '--min-bytes', '8']);
    expect(r.exitCode).toBe(1);
    expect(String(r.stderr)).toMatch(/--bytes cannot be combined with --min-bytes/);
    const b = await kleak(['live', '--backend', 'dtrace']);
    expect(b.exitCode).toBe(1);
    expect(String(b.stderr)).toMatch(/--backend dtrace is not one of auto, kernel, bpftrace, tracefs, trace-cmd/);
  });

  it('a kmalloc cache and a size that excludes it are refused on every command, not silently one of them (issue 22 item 5)', async () => {
    for (const args of [['live', '--backend', 'kernel', '--dry-run'], ['live', '--backend', 'tracefs', '--dry-run'], ['replay', '-']]) {
      const r = await kleak([...args, '--bytes', '64', '--cache', 'kmalloc-4k'], { input: '' });
      expect(r.exitCode, args.join(' ')).toBe(1);
      expect(String(r.stderr)).toMatch(/--cache kmalloc-4k holds 4096-byte objects, which --bytes 64 excludes: together they would match nothing\./);
    }
    const m = await kleak(['live', '--dry-run', '--cache', 'kmalloc-cg-64', '--max-bytes', '32']);
    expect(String(m.stderr)).toMatch(/which --max-bytes 32 excludes/);
    // Consistent: accepted.
    expect((await kleak(['live', '--backend', 'tracefs', '--dry-run', '--cache', 'kmalloc-4k', '--bytes', '4096'])).exitCode).toBe(0);
  });

  it('--dry-run prints the bpftrace command with the filter as parameters', async (ctx) => {
    ctx.skip(!isRoot, 'reading the kernel tracepoints needs root');
    const r = await kleak(['live', '--backend', 'bpftrace', '--bytes', '128', '--comm', 'nginx', '--dry-run'], { env: { PATH: `${nodeDir}:/usr/bin:/bin` } });
    expect(r.exitCode).toBe(0);
    expect(String(r.stdout)).toMatch(/^BPFTRACE_MAP_KEYS_MAX=262144 bpftrace -B none -e '\/\/ kleak-pairs\.bt/);
    expect(String(r.stdout)).toMatch(/' -- 128 128 0 \d+ 1 nginx 0 '' 262144 1000 10000 \d+ \d+$/);
  });
});
