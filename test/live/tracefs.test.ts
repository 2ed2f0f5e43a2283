// kleak live --backend tracefs on the real kernel: the same answer as bpftrace on the same workload, and cleanup
// that holds whenever and however kleak is stopped.
import { execa, execaSync } from 'execa';
import { mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { beforeAll, describe, expect, it } from 'vitest';
import { ensureTracefs } from '../../src/kernel/tracefs.js';
import type { JsonReport } from '../../src/report/json.js';
import { CLI, ROOT } from '../helpers/cli.js';
import { isRoot } from '../helpers/env.js';
import { expectHeldAllocations, traceHeldAllocations } from '../helpers/allocators.js';
import { holdAndReport, sleep, startKleak, startWorkload } from '../helpers/live.js';

const T = '/sys/kernel/tracing';
const skipWhy = !isRoot ? 'needs root to create tracefs instances' : undefined;

/** The top-level tracing state other tools see; kleak must leave it exactly as it was. */
function topLevelState(): Record<string, string> {
  const files = ['tracing_on', 'trace_clock', 'options/hash-ptr', 'options/stacktrace', 'current_tracer', 'buffer_size_kb', 'set_event',
    ...['kmalloc', 'kfree', 'kmem_cache_alloc', 'kmem_cache_free'].flatMap((e) => [`events/kmem/${e}/enable`, `events/kmem/${e}/filter`, `events/kmem/${e}/trigger`])];
  return Object.fromEntries(files.map((f) => [f, readFileSync(`${T}/${f}`, 'utf8')]));
}
/** The instances of these kleak processes that still exist: tests check what they started, not the machine. */
const instancesOf = (...procs: { pid?: number | undefined }[]) => readdirSync(`${T}/instances`).filter((n) => procs.some((p) => n === `kleak-${p.pid}`));

describe.skipIf(skipWhy !== undefined)(`kleak live --backend tracefs on this kernel${skipWhy ? ` (skipped: ${skipWhy})` : ''}`, () => {
  // A fresh machine may not have tracefs mounted yet; kleak mounts it, and so do the tests before reading it.
  beforeAll(async () => {
    await ensureTracefs();
  });

  it('exactly the 23 held keys at user_preparse, the churned pipes not growing; nothing left behind', async () => {
    const before = topLevelState();
    const { report, workloadPid, kleakPid } = await holdAndReport({ kleak: ['--backend', 'tracefs', '--bytes', '4096', '--stacks', '--json'], workload: ['--hold', '23', '--pipe-churn-rate', '150', '--seconds', '3'], settleMs: 1500 });
    const site = report.sites.find((s) => s.function === 'user_preparse');
    expect(site?.outstanding).toBe(23);
    expect(site?.stacks[0]?.frames[0]).toBe('user_preparse');
    expect(site?.samples[0]).toMatchObject({ pid: workloadPid, comm: 'python3', bytesReq: 4024 });
    const pipes = report.sites.find((s) => s.function === 'pipe_resize_ring');
    expect(pipes === undefined || (pipes.verdict !== 'growing' && pipes.outstanding <= 2)).toBe(true);
    expect(report.source).toMatchObject({ kind: 'live', backend: 'tracefs' });
    expect(instancesOf({ pid: kleakPid })).toEqual([]);
    expect(topLevelState()).toEqual(before);
  });

  it('--alloc vmalloc,page,percpu: exactly the 7 areas, 29 pages and 11 percpu chunks held among churn, each at its caller', async () => {
    const before = topLevelState();
    const { report, pid } = await traceHeldAllocations(['--backend', 'tracefs']);
    expectHeldAllocations(report);
    expect(instancesOf({ pid })).toEqual([]);
    expect(topLevelState()).toEqual(before);
  });

  it('under load (two pipe storms flat out, a kmalloc-1k each operation) every loss is counted and said, every storm allocation read is paired', async () => {
    // Reading trace_pipe's text, kleak lost 35-45% of these events (the kernel formatting text for it took 63% of a
    // CPU); the binary per-CPU buffers cost it a page copy.
    const before = topLevelState();
    const bin = `${mkdtempSync(`${tmpdir()}/kleak-storm-`)}/workload-pipes`;
    execaSync('cc', ['-O2', '-o', bin, 'scripts/workload-pipes.c'], { cwd: ROOT });
    const k = startKleak(['--backend', 'tracefs', '--bytes', '1024', '--json']);
    await k.ready;
    const storms = await Promise.all([execa(bin, ['4']), execa(bin, ['4'])]);
    const ops = storms.reduce((n, s) => n + Number(/ops=(\d+)/.exec(String(s.stdout))?.[1]), 0);
    await sleep(500);
    k.proc.kill('SIGINT');
    const r = await k.proc;
    expect(r.exitCode, k.stderr()).toBe(0);
    const report = JSON.parse(String(r.stdout)) as JsonReport;
    expect(ops).toBeGreaterThan(50_000);
    // How much a flat-out storm loses depends on the machine (≤ 1.3% in earlier sessions; 22-25% on 2026-12-07 with
    // the session's starting commit too): that figure belongs to npm run bench:live. What must hold everywhere is
    // that a loss is counted and said, and that everything read is paired right.
    console.log(`tracefs under two storms: ${report.totals.lostEvents} lost of ${report.totals.events + report.totals.lostEvents}`);
    if (report.totals.lostEvents > 0) expect(report.notices.some((n) => n.severity === 'dataLoss'), JSON.stringify(report.notices)).toBe(true);
    // Every storm allocation was read, and the kfree of each was seen after it (other processes' frees are the
    // unknown ones); a busy CI machine may still overrun the buffer for a moment, which the lost count says.
    const t = report.totals;
    expect(t.allocs + t.lostEvents, JSON.stringify(t)).toBeGreaterThanOrEqual(ops);
    expect(t.matchedFrees + t.lostEvents, JSON.stringify(t)).toBeGreaterThanOrEqual(ops - 50);
    const pipes = report.sites.find((s) => s.function === 'alloc_pipe_info');
    expect(pipes === undefined || (pipes.outstanding <= 5 && pipes.verdict !== 'growing')).toBe(true);
    expect(instancesOf(k.proc)).toEqual([]);
    expect(topLevelState()).toEqual(before);
  });

  it('stopped at random moments by SIGINT, SIGTERM or SIGHUP: no instance left, top-level state unchanged', async () => {
    const before = topLevelState();
    let seed = 20261122;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
    const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
    for (let i = 0; i < 8; i++) {
      const p = execa(process.execPath, [CLI, 'live', '--backend', 'tracefs', '--bytes', '4096', '--json'], { reject: false, cwd: ROOT });
      await sleep(Math.floor(rnd() * 1200)); // from "still starting" to "tracing"
      p.kill(signals[i % 3]);
      const r = await p;
      // 0: stopped cleanly; undefined: the signal came before Node had run any of kleak (nothing to clean up).
      expect([0, undefined]).toContain(r.exitCode);
      expect(instancesOf(p), `after ${signals[i % 3]}`).toEqual([]);
    }
    expect(topLevelState()).toEqual(before);
  });

  it('a crash of kleak\'s own code still removes the instance', async () => {
    const before = topLevelState();
    const p = execa(process.execPath, [CLI, 'live', '--backend', 'tracefs', '--bytes', '4096', '--json'], {
      reject: false, cwd: ROOT, env: { KLEAK_TEST_CRASH_MS: '1500' },
    });
    const r = await p;
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toMatch(/injected crash/);
    expect(instancesOf(p)).toEqual([]);
    expect(topLevelState()).toEqual(before);
  });

  it('kleak record --backend tracefs keeps raw trace_pipe text that replays to the held keys', async () => {
    const file = `${mkdtempSync(`${tmpdir()}/kleak-rec-`)}/k.pipe`;
    const p = execa(process.execPath, [CLI, 'record', '--backend', 'tracefs', '--bytes', '4096', '-o', file], { reject: false, cwd: ROOT, stderr: 'pipe', buffer: { stderr: false } });
    await new Promise<void>((resolve) => p.stderr!.on('data', (d: Buffer) => /recording with tracefs/.test(String(d)) && resolve()));
    const w = startWorkload(['--hold', '17']);
    await w.until('holding');
    await sleep(1000);
    p.kill('SIGINT');
    const r = await p;
    await w.release();
    expect(r.exitCode).toBe(0);
    const text = readFileSync(file, 'utf8');
    expect(text).toMatch(/^ +\S.*-\d+ +\[\d{3}\] \S+ +\d+\.\d+: k(?:malloc|free): call_site=/m);
    const again = await execa(process.execPath, [CLI, 'replay', file, '--json'], { cwd: ROOT });
    expect((JSON.parse(again.stdout) as JsonReport).sites.find((s) => s.function === 'user_preparse')?.outstanding).toBe(17);
    expect(instancesOf(p)).toEqual([]);
  });

  it('23 timerfds held among 200 created and closed (freed through kfree_rcu, which tracefs cannot see): the slabs read at the end leave exactly the held ones (was 223, growing)', async () => {
    // kfree_rcu's batches are freed within about 5 s: 6 s after the churn, the churned contexts are free.
    const { report, kleakPid } = await holdAndReport({ kleak: ['--backend', 'tracefs', '--bytes', '256', '--comm', 'python3', '--json'], workload: ['--hold-timerfd', '23', '--churn-timerfd', '200'], script: 'workload-rcu.py', settleMs: 6000 });
    const site = report.sites.find((s) => s.function === '__do_sys_timerfd_create')!;
    expect(site.outstanding).toBeGreaterThanOrEqual(23);
    expect(site.outstanding).toBeLessThanOrEqual(26);
    expect(site.foundFree).toBeGreaterThanOrEqual(170);
    expect(site.verdict).not.toBe('growing');
    expect(instancesOf({ pid: kleakPid })).toEqual([]);
  }, 60_000);

  it('an instance kleak did not create is left alone', async () => {
    const name = `kleak-${process.pid}-other`;
    const { mkdirSync, rmdirSync, existsSync } = await import('node:fs');
    mkdirSync(`${T}/instances/${name}`);
    try {
      const { TracefsInstance } = await import('../../src/kernel/instance.js');
      expect(() => TracefsInstance.create(T, name)).toThrow(/already exists and kleak did not create it/);
      expect(existsSync(`${T}/instances/${name}`)).toBe(true);
    } finally {
      rmdirSync(`${T}/instances/${name}`);
    }
  });

  it('a SIGKILLed kleak\'s instance is removed within seconds by its watchdog (it stayed, tracing, until another tracefs run); a live kleak\'s instance is not', async () => {
    const killed = startKleak(['--backend', 'tracefs', '--bytes', '4096', '--json']);
    await killed.ready;
    const neighbour = startKleak(['--backend', 'tracefs', '--bytes', '8192', '--json']);
    await neighbour.ready;
    expect(instancesOf(killed.proc)).toEqual([`kleak-${killed.proc.pid}`]);
    killed.proc.kill('SIGKILL');
    await killed.proc;
    const killedAt = Date.now();
    while (instancesOf(killed.proc).length > 0 && Date.now() - killedAt < 10_000) await sleep(50);
    const took = Date.now() - killedAt;
    expect(instancesOf(killed.proc)).toEqual([]);
    expect(took).toBeLessThan(5000);
    expect(instancesOf(neighbour.proc)).toEqual([`kleak-${neighbour.proc.pid}`]);
    neighbour.proc.kill('SIGINT');
    expect((await neighbour.proc).exitCode).toBe(0);
    expect(instancesOf(killed.proc, neighbour.proc)).toEqual([]);
  });

  it.each(['kernel', 'tracefs'])('an instance a killed kleak left tracing (no watchdog ran) is removed by the next live run on the %s backend', async (backend) => {
    // A pid that ran and is gone, as a kleak killed with its watchdog (an OOM kill of the whole group) would leave.
    const gone = execaSync('sh', ['-c', 'echo $$']).stdout.trim();
    const name = `kleak-${gone}`;
    const { mkdirSync, writeFileSync, existsSync } = await import('node:fs');
    mkdirSync(`${T}/instances/${name}`);
    writeFileSync(`${T}/instances/${name}/events/kmem/kmalloc/enable`, '1');
    const next = await execa(process.execPath, [CLI, 'live', '--backend', backend, '--bytes', '4096', '--duration', '1', '--json'], { reject: false, cwd: ROOT });
    expect(next.exitCode, next.stderr).toBe(0);
    expect(next.stderr).toContain(`removed ${name}: tracefs instance a killed kleak left tracing`);
    expect(existsSync(`${T}/instances/${name}`)).toBe(false);
  });
});
