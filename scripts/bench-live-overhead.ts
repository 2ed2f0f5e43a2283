// What kleak live costs the traced host, measured with a kmalloc-heavy workload (scripts/workload-pipes.c: pipe
// create + close, a kmalloc-192 and a kmalloc-1k at alloc_pipe_info per operation). Configurations are alternated
// round by round so machine noise hits all of them alike; each reports ops/s and its slowdown against no tracing.
//   sudo node dist/scripts/bench-live-overhead.js [ROUNDS] [SECONDS] [--only kernel|bpftrace|cgroups|stacks|all]
// Targets (ratios to no tracing), kernel backend: <= 1.08x filtered to a size the workload never allocates;
// <= 1.2x filtered to a size it allocates on every operation; <= 1.5x the same with --stacks. bpftrace and tracefs
// are printed beside it, and so are two floors: empty tp_btf programs through libbpf (what any BPF tracer of these
// tracepoints pays here) and empty bpftrace programs; the naive way (bpftrace printing every event) for contrast.
// A traced run counts only if its tracer was still alive when the workload ended: a run whose tracer died is void.

import { execa, type ResultPromise } from 'execa';
import { mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CLI = `${ROOT}dist/src/cli.js`;
const DIR = `${tmpdir()}/kleak-bench`;
const BIN = `${DIR}/workload-pipes`;

interface Tracer {
  /** Whether the tracer still runs (checked when the workload ends: a dead tracer voids the run). */
  alive(): boolean;
  stop(): Promise<void>;
}

interface Config {
  name: string;
  /** Starts the tracer; resolves once it is attached. */
  start?: () => Promise<Tracer>;
  /** Why this configuration cannot run here (printed instead of figures). */
  skip?: string;
}

/** A tracer process: alive while it has not exited; stopped with SIGINT, SIGKILL if it sits for 10 s. */
function processTracer(proc: ResultPromise): Tracer {
  return {
    alive: () => proc.exitCode === null && proc.signalCode === null,
    async stop() {
      proc.kill('SIGINT');
      // bpftrace has been seen to sit for minutes after SIGINT with nothing to print; its programs go with it.
      const stuck = setTimeout(() => proc.kill('SIGKILL'), 10_000);
      await proc;
      clearTimeout(stuck);
    },
  };
}

/** Events each kleak configuration read and reported lost, over all its runs (its final JSON report's totals). */
const kleakLoss = new Map<string, { events: number; lost: number }>();

function kleak(args: string[], env: Record<string, string> = {}): () => Promise<Tracer> {
  const label = [...Object.entries(env).map(([k, v]) => `${k}=${v}`), ...args].join(' ');
  return async () => {
    const p = execa('node', [CLI, 'live', '--json', ...args], { reject: false, stdout: 'pipe', stderr: 'pipe', buffer: { stdout: true, stderr: false }, env });
    await new Promise<void>((resolve, reject) => {
      let err = '';
      p.stderr!.on('data', (d: Buffer) => {
        err += d.toString();
        if (err.includes('tracing with')) resolve();
      });
      void p.then((r) => reject(new Error(`kleak ended before tracing: ${err.trim()} (exit ${r.exitCode})`)));
    });
    const t = processTracer(p);
    return {
      alive: t.alive,
      async stop() {
        await t.stop();
        try {
          const totals = (JSON.parse(String((await p).stdout)) as { totals: { events: number; lostEvents: number } }).totals;
          const k = kleakLoss.get(label) ?? { events: 0, lost: 0 };
          k.events += totals.events;
          k.lost += totals.lostEvents;
          kleakLoss.set(label, k);
        } catch {
          // no report (the run was void): nothing to count
        }
      },
    };
  };
}

const NAIVE =
  'tracepoint:kmem:kmalloc { printf("%d %d %lx %lx %d %d\\n", nsecs, pid, args->call_site, args->ptr, args->bytes_req, args->bytes_alloc); } ' +
  'tracepoint:kmem:kfree { printf("%d %d %lx %lx\\n", nsecs, pid, args->call_site, args->ptr); } BEGIN { printf("R\\n"); }';

/** Lines the naive tracer printed and events it reported lost, over all its runs. */
const naiveCount = { lines: 0, lost: 0 };

async function naive(): Promise<Tracer> {
  const p = execa('bpftrace', ['-B', 'none', '-e', NAIVE], { reject: false, stdout: 'pipe', stderr: 'ignore', buffer: false });
  p.stdout!.setEncoding('utf8');
  p.stdout!.on('data', (d: string) => {
    for (const m of d.matchAll(/Lost (\d+) events/g)) naiveCount.lost += Number(m[1]);
    naiveCount.lines += d.split('\n').length - 1;
  });
  await new Promise<void>((resolve) => {
    const onData = (d: string) => {
      if (d.includes('R\n')) {
        p.stdout!.off('data', onData);
        resolve();
      }
    };
    p.stdout!.on('data', onData);
  });
  return processTracer(p);
}

/**
 * The floor: the same two tracepoints with BPF programs that do nothing. On kernels where attaching BPF to a
 * classic tracepoint is costly (perf_trace_* fills the record first; retpolines in VMs), this is the most any
 * bpftrace-based tracer can get to; kleak's figures are read against it.
 */
const EMPTY = 'tracepoint:kmem:kmalloc /args->bytes_alloc == 12345/ {} tracepoint:kmem:kfree /args->ptr == 0/ {} BEGIN { printf("R\\n"); }';

async function empty(): Promise<Tracer> {
  const p = execa('bpftrace', ['-B', 'none', '-e', EMPTY], { reject: false, stdout: 'pipe', stderr: 'ignore', buffer: false });
  p.stdout!.setEncoding('utf8');
  await new Promise<void>((resolve) => p.stdout!.on('data', (d: string) => d.includes('R\n') && resolve()));
  return processTracer(p);
}

/**
 * The libbpf floor: empty tp_btf programs on kmalloc and kfree, loaded and attached through libbpf by a small
 * process of kleak's (scripts/bpf-floor.ts). What any BPF tracer of these tracepoints pays on this kernel.
 */
const EMPTY_TP_BTF = `#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
char LICENSE[] SEC("license") = "GPL";
SEC("tp_btf/kmalloc") int kmalloc_empty(void *ctx) { return 0; }
SEC("tp_btf/kfree") int kfree_empty(void *ctx) { return 0; }
`;

async function libbpfFloorObject(): Promise<string | undefined> {
  try {
    writeFileSync(`${DIR}/empty.bpf.c`, EMPTY_TP_BTF);
    await execa('clang', ['-O2', '-g', '-target', 'bpf', `-I/usr/include/${process.arch === 'arm64' ? 'aarch64' : 'x86_64'}-linux-gnu`, '-c', `${DIR}/empty.bpf.c`, '-o', `${DIR}/empty.bpf.o`]);
    return `${DIR}/empty.bpf.o`;
  } catch {
    return undefined;
  }
}

function libbpfFloor(obj: string): () => Promise<Tracer> {
  return async () => {
    const p = execa('node', [`${ROOT}dist/scripts/bpf-floor.js`, obj], { reject: false, stdin: 'pipe', stdout: 'pipe', stderr: 'inherit', buffer: false });
    p.stdout!.setEncoding('utf8');
    await new Promise<void>((resolve, reject) => {
      p.stdout!.on('data', (d: string) => d.includes('R') && resolve());
      void p.then((r) => reject(new Error(`bpf-floor ended before attaching (exit ${r.exitCode})`)));
    });
    return processTracer(p);
  };
}

/**
 * The peer: bcc's libbpf-tools memleak in kernel mode (the same pairing, per-stack, in C). Built from bcc's source
 * by hand (not shipped, not fetched here): KLEAK_BENCH_MEMLEAK=/path/to/memleak puts it in the batch.
 */
function memleak(bin: string, args: string[]): () => Promise<Tracer> {
  return async () => {
    // memleak's stdout is a pipe here: line-buffer it (stdbuf), or its "Attaching" line never arrives.
    const p = execa('stdbuf', ['-oL', bin, ...args], { reject: false, stdout: 'pipe', stderr: 'ignore', buffer: false });
    p.stdout!.setEncoding('utf8');
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('memleak did not say it attached within 60 s')), 60_000);
      p.stdout!.on('data', (d: string) => d.includes('Attaching to kernel allocators') && (clearTimeout(timer), resolve()));
      void p.then((r) => reject(new Error(`memleak ended before attaching (exit ${r.exitCode})`)));
    });
    return processTracer(p);
  };
}

function configs(floorObj: string | undefined, only: string): Config[] {
  const peer = process.env.KLEAK_BENCH_MEMLEAK;
  const noPeer = 'set KLEAK_BENCH_MEMLEAK to a memleak built from bcc libbpf-tools to compare';
  const all: (Config & { group: string })[] = [
    { group: '', name: 'no tracing' },
    { group: 'kernel', name: 'floor: libbpf, empty tp_btf programs on kmalloc and kfree', ...(floorObj ? { start: libbpfFloor(floorObj) } : { skip: 'needs clang and libbpf-dev to build the empty programs' }) },
    { group: 'kernel', name: 'kleak live --bytes 8192 (kernel backend; never allocated)', start: kleak(['--backend', 'kernel', '--bytes', '8192']) },
    { group: 'kernel', name: 'kleak live --bytes 1024 (kernel backend; every operation)', start: kleak(['--backend', 'kernel', '--bytes', '1024']) },
    { group: 'cgroups', name: 'kleak live --bytes 1024 (kernel backend), each allocation\'s cgroup', start: kleak(['--backend', 'kernel', '--bytes', '1024']) },
    { group: 'cgroups', name: 'kleak live --bytes 1024 (kernel backend), no cgroup (KLEAK_CGROUPS=0)', start: kleak(['--backend', 'kernel', '--bytes', '1024'], { KLEAK_CGROUPS: '0' }) },
    { group: 'kernel', name: 'kleak live --bytes 1024 --stacks (kernel backend)', start: kleak(['--backend', 'kernel', '--bytes', '1024', '--stacks']) },
    // Stacks sampled (the default: each site's first 16, then one in 8) against every allocation's stack.
    { group: 'stacks', name: 'kleak live --bytes 1024 (kernel backend, no stacks)', start: kleak(['--backend', 'kernel', '--bytes', '1024']) },
    { group: 'stacks', name: 'kleak live --bytes 1024 --stacks (sampled: first 16 a site, then 1 in 8)', start: kleak(['--backend', 'kernel', '--bytes', '1024', '--stacks']) },
    { group: 'stacks', name: 'kleak live --bytes 1024 --stacks --stack-every 1 (every stack)', start: kleak(['--backend', 'kernel', '--bytes', '1024', '--stacks', '--stack-every', '1']) },
    { group: 'bpftrace', name: 'floor: bpftrace, empty programs on kmalloc and kfree', start: empty },
    { group: 'bpftrace', name: 'kleak live --backend bpftrace --bytes 8192', start: kleak(['--backend', 'bpftrace', '--bytes', '8192']) },
    { group: 'bpftrace', name: 'kleak live --backend bpftrace --bytes 1024', start: kleak(['--backend', 'bpftrace', '--bytes', '1024']) },
    { group: 'bpftrace', name: 'kleak live --backend bpftrace --bytes 1024 --stacks', start: kleak(['--backend', 'bpftrace', '--bytes', '1024', '--stacks']) },
    { group: 'bpftrace', name: 'kleak live --backend bpftrace --alloc page (every page, its stack)', start: kleak(['--backend', 'bpftrace', '--alloc', 'page']) },
    { group: 'bpftrace', name: 'kleak live --backend bpftrace --alloc vmalloc,percpu', start: kleak(['--backend', 'bpftrace', '--alloc', 'vmalloc,percpu']) },
    { group: 'tracefs', name: 'kleak live --backend tracefs --bytes 8192', start: kleak(['--backend', 'tracefs', '--bytes', '8192']) },
    { group: 'tracefs', name: 'kleak live --backend tracefs --bytes 1024', start: kleak(['--backend', 'tracefs', '--bytes', '1024']) },
    // The reader before the raw one, for comparison: trace_pipe's text, formatted by the kernel for kleak.
    { group: 'tracefs', name: 'kleak live --backend tracefs --bytes 1024, reading trace_pipe text (KLEAK_TRACEFS_TEXT=1)', start: kleak(['--backend', 'tracefs', '--bytes', '1024'], { KLEAK_TRACEFS_TEXT: '1' }) },
    { group: 'tracefs', name: 'kleak live --backend tracefs --alloc page (every page, a stack each)', start: kleak(['--backend', 'tracefs', '--alloc', 'page']) },
    { group: 'tracefs', name: 'kleak live --backend tracefs --alloc vmalloc,percpu', start: kleak(['--backend', 'tracefs', '--alloc', 'vmalloc,percpu']) },
    { group: 'kernel', name: 'kleak live --bytes 1024 --events (kernel backend; ring buffer)', start: kleak(['--backend', 'kernel', '--bytes', '1024', '--events']) },
    { group: 'kernel', name: 'kleak live --alloc page (kernel backend; every page, no filter)', start: kleak(['--backend', 'kernel', '--alloc', 'page']) },
    { group: 'kernel', name: 'kleak live --alloc vmalloc,percpu (kernel backend)', start: kleak(['--backend', 'kernel', '--alloc', 'vmalloc,percpu']) },
    { group: 'kernel', name: 'peer: bcc memleak -z 8192 -Z 8192 (never allocated)', ...(peer ? { start: memleak(peer, ['-z', '8192', '-Z', '8192', '3600']) } : { skip: noPeer }) },
    { group: 'kernel', name: 'peer: bcc memleak -z 1024 -Z 1024 (every operation)', ...(peer ? { start: memleak(peer, ['-z', '1024', '-Z', '1024', '3600']) } : { skip: noPeer }) },
    { group: 'naive', name: 'naive: bpftrace printf of every kmalloc and kfree', start: naive },
  ];
  return all.filter((c) => c.group === '' || only === 'all' || c.group === only);
}

async function opsPerSec(seconds: number): Promise<number> {
  const r = await execa(BIN, [String(seconds)]);
  const m = /ops_per_sec=(\d+)/.exec(r.stdout);
  if (!m) throw new Error(`workload said: ${r.stdout}`);
  return Number(m[1]);
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) {
    console.error('bench-live-overhead needs root (it runs kleak live and bpftrace).');
    process.exit(2);
  }
  const args = process.argv.slice(2);
  const onlyAt = args.indexOf('--only');
  const only = onlyAt >= 0 ? args.splice(onlyAt, 2)[1]! : 'all';
  const rounds = Number(args[0] ?? 3);
  const seconds = Number(args[1] ?? 3);
  mkdirSync(DIR, { recursive: true });
  await execa('cc', ['-O2', '-o', BIN, `${ROOT}scripts/workload-pipes.c`]);
  const CONFIGS = configs(await libbpfFloorObject(), only);
  const results = CONFIGS.map(() => [] as number[]);
  const voided = CONFIGS.map(() => 0);
  for (let r = 0; r < rounds; r++) {
    for (const [i, c] of CONFIGS.entries()) {
      if (c.skip) continue;
      const tracer = c.start ? await c.start() : undefined;
      const ops = await opsPerSec(seconds);
      if (tracer && !tracer.alive()) voided[i]!++;
      else results[i]!.push(ops);
      await tracer?.stop();
    }
  }
  const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
  const base = median(results[0]!);
  console.log(`kleak bench-live-overhead — ${rounds} rounds x ${seconds}s, configurations alternated; median ops/s; ratio = untraced / traced`);
  for (const [i, c] of CONFIGS.entries()) {
    if (c.skip) {
      console.log(`${c.name.padEnd(62)} skipped: ${c.skip}`);
      continue;
    }
    if (results[i]!.length === 0) {
      console.log(`${c.name.padEnd(62)} void: its tracer died in all ${voided[i]} runs`);
      continue;
    }
    const ops = median(results[i]!);
    const spread = `(runs ${results[i]!.map((x) => Math.round(x / 1000)).join(', ')}k${voided[i] ? `; ${voided[i]} void: tracer died` : ''})`;
    console.log(`${c.name.padEnd(62)} ${String(Math.round(ops)).padStart(8)} ops/s   ${(base / ops).toFixed(2)}x  ${spread}`);
  }
  for (const [args, k] of kleakLoss) {
    if (k.lost > 0) console.log(`  kleak live ${args}: lost ${k.lost.toLocaleString()} of ${(k.events + k.lost).toLocaleString()} events (${((100 * k.lost) / (k.events + k.lost)).toFixed(1)}%), counted in its report`);
  }
  const total = naiveCount.lines + naiveCount.lost;
  if (total > 0) console.log(`  (the naive tracer dropped ${naiveCount.lost.toLocaleString()} of ${total.toLocaleString()} events: ${((100 * naiveCount.lost) / total).toFixed(0)}% — its results are wrong, not just slow)`);
}

await main();
