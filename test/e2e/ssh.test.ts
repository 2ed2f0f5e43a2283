// kleak live --ssh and kleak watch --ssh against a real sshd the test starts on loopback (its own host key, client
// key and config: nothing of the machine's ssh setup is read or changed). The "remote" host is this machine, so the
// counts are checked as exactly as local runs, and cleanup on the remote side is visible in its tracefs.
import { execa, type ResultPromise } from 'execa';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureTracefs } from '../../src/kernel/tracefs.js';
import type { JsonReport } from '../../src/report/json.js';
import { CLI, ROOT } from '../helpers/cli.js';
import { isRoot, onPath } from '../helpers/env.js';
import { sleep, startKleak, startWorkload } from '../helpers/live.js';

const SSHD = '/usr/sbin/sshd';
const skipWhy = !isRoot ? 'needs root (the remote side makes a tracefs instance)' : !existsSync(SSHD) || !onPath('ssh') ? 'openssh-server is not installed; .ci/run installs it' : undefined;
const T = '/sys/kernel/tracing';
const sshInstances = () => (existsSync(`${T}/instances`) ? readdirSync(`${T}/instances`).filter((n) => n.startsWith('kleak-ssh-')) : []);

let dir = '';
let sshd: ResultPromise | undefined;
let config = '';

async function startSshd(): Promise<void> {
  dir = mkdtempSync(`${tmpdir()}/kleak-sshd-`);
  mkdirSync('/run/sshd', { recursive: true }); // sshd's privilege separation directory
  for (const k of ['host_key', 'client_key', 'hostile_key']) await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', `${dir}/${k}`]);
  // A hostile peer: whatever kleak asks, this key's session streams the same line without end (and no end marker).
  const { readFileSync } = await import('node:fs');
  writeFileSync(`${dir}/authorized_keys`, readFileSync(`${dir}/client_key.pub`, 'utf8') + `command="yes kleak-file /proc/slabinfo" ${readFileSync(`${dir}/hostile_key.pub`, 'utf8')}`);
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = 20000 + Math.floor(Math.random() * 20000);
    writeFileSync(`${dir}/sshd_config`, [`ListenAddress 127.0.0.1`, `Port ${port}`, `HostKey ${dir}/host_key`, `AuthorizedKeysFile ${dir}/authorized_keys`, 'PermitRootLogin prohibit-password', 'PasswordAuthentication no', 'KbdInteractiveAuthentication no', 'UsePAM no', 'StrictModes no', `PidFile ${dir}/sshd.pid`, 'LogLevel ERROR', ''].join('\n'));
    config = `${dir}/ssh_config`;
    const host = (name: string, key: string) => [`Host ${name}`, '  HostName 127.0.0.1', `  Port ${port}`, '  User root', `  IdentityFile ${dir}/${key}`, '  IdentitiesOnly yes', `  UserKnownHostsFile ${dir}/known_hosts`, '  StrictHostKeyChecking no', '  LogLevel ERROR'];
    writeFileSync(config, [...host('kleak-test', 'client_key'), ...host('kleak-hostile', 'hostile_key'), ''].join('\n'));
    sshd = execa(SSHD, ['-f', `${dir}/sshd_config`, '-D', '-e'], { reject: false, stdin: 'ignore' });
    for (let i = 0; i < 50; i++) {
      await sleep(100);
      const r = await execa('ssh', ['-F', config, '-o', 'BatchMode=yes', 'kleak-test', 'true'], { reject: false });
      if (r.exitCode === 0) return;
      if (sshd.exitCode !== undefined && sshd.exitCode !== null) break; // port taken: try another
    }
    sshd.kill('SIGKILL');
    await sshd;
  }
  throw new Error('could not start a test sshd on loopback');
}

/** Waits until none of these instances exists (the remote script removes its own). */
async function goneWithin(names: string[], ms: number): Promise<string[]> {
  const until = Date.now() + ms;
  let left = names;
  while (Date.now() < until) {
    left = names.filter((n) => existsSync(`${T}/instances/${n}`));
    if (left.length === 0) return [];
    await sleep(100);
  }
  return left;
}

describe.skipIf(skipWhy !== undefined)(`kleak --ssh against a loopback sshd${skipWhy ? ` (skipped: ${skipWhy})` : ''}`, () => {
  beforeAll(async () => {
    await ensureTracefs();
    await startSshd();
  }, 60_000);
  afterAll(async () => {
    sshd?.kill('SIGTERM');
    await sshd;
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('live --ssh: exactly the 23 held keys, paired here from the remote trace_pipe; the remote instance is gone after', async () => {
    const before = sshInstances();
    const k = startKleak(['--ssh', 'kleak-test', '--ssh-config', config, '--bytes', '4096', '--json']);
    await k.ready;
    const mine = sshInstances().filter((n) => !before.includes(n));
    expect(mine, k.stderr()).toHaveLength(1);
    const w = startWorkload(['--hold', '23', '--churn', '100']);
    await w.until('holding');
    await sleep(1500);
    k.proc.kill('SIGINT');
    const r = await k.proc;
    await w.release();
    expect(r.exitCode, k.stderr()).toBe(0);
    const report = JSON.parse(String(r.stdout)) as JsonReport;
    expect(report.source).toMatchObject({ kind: 'live', backend: 'tracefs', host: 'kleak-test' });
    expect(report.sites.find((s) => s.function === 'user_preparse')?.outstanding).toBe(23);
    expect(await goneWithin(mine, 5000)).toEqual([]);
  });

  it('the ssh connection killed mid-run: kleak says so and reports; the remote script removes its instance', async () => {
    const before = sshInstances();
    const k = startKleak(['--ssh', 'kleak-test', '--ssh-config', config, '--bytes', '4096', '--text']);
    await k.ready;
    const mine = sshInstances().filter((n) => !before.includes(n));
    expect(mine).toHaveLength(1);
    const ssh = (await execa('pgrep', ['-P', String(k.proc.pid), '-x', 'ssh'])).stdout.trim();
    process.kill(Number(ssh), 'SIGKILL');
    const r = await k.proc;
    expect(r.exitCode).toBe(2);
    expect(k.stderr()).toMatch(/the connection to kleak-test ended/);
    expect(String(r.stdout)).toMatch(/^kleak — live on kleak-test \(ssh\)/);
    expect(await goneWithin(mine, 5000)).toEqual([]);
  });

  it('kleak itself SIGKILLed: ssh sees its stdin close and the remote instance goes', async () => {
    const before = sshInstances();
    const k = startKleak(['--ssh', 'kleak-test', '--ssh-config', config, '--bytes', '4096', '--text']);
    await k.ready;
    const mine = sshInstances().filter((n) => !before.includes(n));
    expect(mine).toHaveLength(1);
    k.proc.kill('SIGKILL');
    await k.proc;
    expect(await goneWithin(mine, 5000)).toEqual([]);
  });

  it('watch --ssh: the remote slabinfo, meminfo and vmallocinfo, read into a private copy that goes at the end', async () => {
    const copies = () => readdirSync(tmpdir()).filter((n) => n.startsWith('kleak-ssh-'));
    const before = copies();
    const r = await execa(process.execPath, [CLI, 'watch', '--ssh', 'kleak-test', '--ssh-config', config, '--interval', '0.5', '--duration', '3', '--json'], { reject: false, cwd: ROOT });
    expect(r.exitCode, r.stderr).toBe(0);
    const w = JSON.parse(r.stdout) as { span: { samples: number }; caches: { name: string }[]; vmallocCallers: unknown[]; meminfo: { name: string }[] };
    expect(w.span.samples).toBeGreaterThanOrEqual(3);
    expect(w.caches.length).toBeGreaterThan(0);
    expect(w.vmallocCallers.length).toBeGreaterThan(0);
    expect(w.meminfo.map((m) => m.name)).toContain('Slab');
    expect(r.stderr).toMatch(/watching kleak-test's \/proc\/slabinfo/);
    expect(copies().filter((n) => !before.includes(n))).toEqual([]);
  });

  it('watch --ssh against a peer that streams without end: bounded, one sentence, within its duration (it reached 1.4 GB past --duration)', async () => {
    const started = Date.now();
    const r = await execa(process.execPath, [CLI, 'watch', '--ssh', 'kleak-hostile', '--ssh-config', config, '--interval', '0.5', '--duration', '5', '--json'], { reject: false, cwd: ROOT, timeout: 60_000 });
    expect(Date.now() - started).toBeLessThan(30_000);
    expect(r.exitCode).not.toBe(0);
    expect(r.exitCode).not.toBe(70);
    expect(r.stderr).toMatch(/^kleak: kleak-hostile sent more than 64 MiB for one reading, which kleak's script never does\.$/m);
  }, 90_000);

  it('a destination that looks like an option is refused; an unreachable host is one sentence, exit 2', async () => {
    const bad = await execa(process.execPath, [CLI, 'live', '--ssh=-oProxyCommand=touch /tmp/kleak-pwned', '--dry-run'], { reject: false });
    expect(bad.exitCode).toBe(1);
    expect(bad.stderr).toMatch(/--ssh "-oProxyCommand=touch \/tmp\/kleak-pwned" is not \[user@\]host/);
    expect(existsSync('/tmp/kleak-pwned')).toBe(false);
    const off = await execa(process.execPath, [CLI, 'live', '--ssh', 'ssh://root@127.0.0.1:1', '--bytes', '4096', '--text'], { reject: false });
    expect(off.exitCode).toBe(2);
    expect(off.stderr).toMatch(/kleak --ssh ssh:\/\/root@127\.0\.0\.1:1 could not start tracing there: .*(refused|connect)/i);
    expect(off.stderr.trim().split('\n').filter((l) => l.startsWith('kleak:'))).toHaveLength(1);
  });
});
