// Metrics as a fleet sees them: a real Prometheus (Debian's package, on loopback, started here) scrapes kleak watch
// while keys leak, and a PromQL query through its HTTP API returns the growing cache; kleak live's /metrics carries
// the held objects per site; --textfile writes what node_exporter's textfile collector reads.
import { execa, type ResultPromise } from 'execa';
import { existsSync, mkdtempSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { afterEach, describe, expect, it } from 'vitest';
import { CLI, ROOT } from '../helpers/cli.js';
import { isRoot, onPath } from '../helpers/env.js';
import { sleep, startKleak, startWorkload } from '../helpers/live.js';

const tmp = mkdtempSync(`${tmpdir()}/kleak-prom-`);
const started: ResultPromise[] = [];
afterEach(async () => {
  for (const p of started.splice(0)) {
    p.kill('SIGTERM');
    await p;
  }
});

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

describe.skipIf(!isRoot)(`metrics${isRoot ? '' : ' (skipped: watch and live need root)'}`, () => {
  it('a real Prometheus scraping kleak watch answers a PromQL query with the growing cache', async (ctx) => {
    ctx.skip(!onPath('prometheus'), "Debian's prometheus package is not installed; .ci/run installs it");
    const [kleakPort, promPort] = [await freePort(), await freePort()];
    const watch = execa(process.execPath, [CLI, 'watch', '--interval', '1', '--duration', '40', '--top', '400', '--json', '--prometheus', `127.0.0.1:${kleakPort}`], { cwd: ROOT, reject: false });
    started.push(watch);
    writeFileSync(`${tmp}/prometheus.yml`, `global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: kleak\n    static_configs:\n      - targets: ['127.0.0.1:${kleakPort}']\n`);
    const prom = execa('prometheus', [`--config.file=${tmp}/prometheus.yml`, `--storage.tsdb.path=${tmp}/data`, `--web.listen-address=127.0.0.1:${promPort}`], { reject: false, stdout: 'ignore', stderr: 'ignore' });
    started.push(prom);
    const w = startWorkload(['--leak-rate', '60', '--seconds', '30']);
    let result: { metric: Record<string, string>; value: [number, string] }[] = [];
    for (let i = 0; i < 60 && result.length === 0; i++) {
      await sleep(1000);
      try {
        const res = await fetch(`http://127.0.0.1:${promPort}/api/v1/query?query=${encodeURIComponent('kleak_slab_growing{slab="kmalloc-4k"} == 1')}`);
        result = ((await res.json()) as { data: { result: typeof result } }).data.result;
      } catch {
        // Prometheus is still starting
      }
    }
    await w.release();
    expect(result.length, 'PromQL found kmalloc-4k growing').toBe(1);
    expect(result[0]!.metric).toMatchObject({ job: 'kleak', slab: 'kmalloc-4k' });
  }, 90_000);

  it('kleak live --prometheus: the held objects per site; --textfile: the same in DIR/kleak.prom, replaced whole', async (ctx) => {
    ctx.skip(!existsSync('/sys/kernel/btf/vmlinux'), 'the kernel backend needs BTF');
    const port = await freePort();
    const k = startKleak(['--bytes', '4096', '--comm', 'python3', '--json', '--prometheus', `127.0.0.1:${port}`, '--textfile', tmp, '--interval', '1']);
    await k.ready;
    const w = startWorkload(['--hold', '23']);
    await w.until('holding');
    await sleep(2500);
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    k.proc.kill('SIGINT');
    await k.proc;
    await w.release();
    expect(text).toMatch(/^kleak_site_outstanding_objects\{allocator="slab",function="user_preparse",module="",cache="kmalloc-4096"\} 23$/m);
    expect(text).toMatch(/^kleak_site_outstanding_bytes\{[^}]*function="user_preparse"[^}]*\} 94208$/m);
    expect(readFileSync(`${tmp}/kleak.prom`, 'utf8')).toMatch(/^kleak_site_outstanding_objects\{[^}]*function="user_preparse"/m);
    expect(statSync(`${tmp}/kleak.prom`).mode & 0o777).toBe(0o644);
  }, 60_000);

  it('watch --prometheus under a flood of idle connections keeps reading and serving (it died of EMFILE with a stack trace)', async (ctx) => {
    ctx.skip(!onPath('prlimit'), 'prlimit (util-linux) is not installed');
    const port = await freePort();
    // 200 descriptors for kleak, 400 idle connections: without a bound, every descriptor goes to the flood.
    const watch = execa('prlimit', ['--nofile=200:200', process.execPath, CLI, 'watch', '--interval', '0.5', '--duration', '6', '--json', '--prometheus', `127.0.0.1:${port}`], { cwd: ROOT, reject: false });
    started.push(watch);
    let err = '';
    watch.stderr!.on('data', (d: Buffer) => (err += String(d)));
    while (!/serving metrics/.test(err) && watch.exitCode === null) await sleep(50);
    const { connect } = await import('node:net');
    const flood = Array.from({ length: 400 }, () => connect(port, '127.0.0.1').on('error', () => undefined));
    await sleep(1500);
    const res = await fetch(`http://127.0.0.1:${port}/metrics`);
    expect(res.status).toBe(200);
    expect(await res.text()).toMatch(/^kleak_slab_active_objects\{/m);
    const r = await watch;
    for (const s of flood) s.destroy();
    expect(r.exitCode, err).toBe(0);
    expect(err).not.toMatch(/internal error|EMFILE/);
    const report = JSON.parse(String(r.stdout)) as { span: { samples: number }; missedReadings?: unknown };
    expect(report.span.samples).toBeGreaterThanOrEqual(10);
    expect(report.missedReadings).toBeUndefined();
  }, 30_000);

  it('--textfile at --interval 0.5: writes never collide (a rename failure was reported) and leave no temporary file', async () => {
    const dir = mkdtempSync(`${tmp}/tf-`);
    const r = await execa(process.execPath, [CLI, 'watch', '--interval', '0.5', '--duration', '5', '--json', '--textfile', dir], { cwd: ROOT, reject: false });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).not.toMatch(/failed/);
    expect(readdirSync(dir)).toEqual(['kleak.prom']);
    expect(readFileSync(`${dir}/kleak.prom`, 'utf8')).toMatch(/^kleak_slab_active_objects\{/m);
  }, 30_000);
});

it('--prometheus and --textfile refuse what they cannot use, in one sentence', async () => {
  const bad = await execa(process.execPath, [CLI, 'watch', '--prometheus', 'not-a-port'], { cwd: ROOT, reject: false });
  expect(bad.exitCode).toBe(1);
  expect(bad.stderr).toMatch(/--prometheus takes \[HOST:\]PORT/);
  const nodir = await execa(process.execPath, [CLI, 'watch', '--textfile', `${tmp}/nope`], { cwd: ROOT, reject: false });
  expect(nodir.exitCode).toBe(1);
  expect(nodir.stderr).toMatch(/--textfile takes a directory that exists/);
});
