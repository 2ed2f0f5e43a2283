// What kleak live costs the traced host, measured with a kmalloc-heavy workload (scripts/workload-pipes.c: pipe
// create + close, a kmalloc-192 and a kmalloc-1k at alloc_pipe_info per operation). Configurations are alternated
// round by round so machine noise hits all of them alike; each reports ops/s and its slowdown against no tracing.
//   sudo node dist/scripts/bench-live-overhead.js [ROUNDS] [SECONDS]
// Targets (ratios to no tracing): <= 1.25x filtered to a size the workload never allocates; <= 1.5x filtered to a
// size it allocates on every operation; <= 2x the same with --stacks. The naive way (bpftrace printing every
// kmalloc and kfree) is printed for contrast, and the tracefs backend (every kfree crosses to userspace) beside it,
// and so is the floor: empty BPF programs on the same tracepoints.

import { execa, type ResultPromise } from 'execa';
import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CLI = `${ROOT}dist/src/cli.js`;
const DIR = `${tmpdir()}/kleak-bench`;
const BIN = `${DIR}/workload-pipes`;

interface Config {
  name: string;
  /** Starts the tracer; resolves once it is attached (wrapped: a subprocess is a promise and would be awaited). */
  start?: () => Promise<{ proc: ResultPromise }>;
}

function kleak(args: string[]): () => Promise<{ proc: ResultPromise }> {
  return async () => {
    const p = execa('node', [CLI, 'live', '--json', ...args], { reject: false, stdout: 'ignore', stderr: 'pipe', buffer: false });
    await new Promise<void>((resolve, reject) => {
      let err = '';
      p.stderr!.on('data', (d: Buffer) => {
        err += d.toString();
        if (err.includes('tracing with')) resolve();
      });
      void p.then((r) => reject(new Error(`kleak ended before tracing: ${err.trim()} (exit ${r.exitCode})`)));
    });
    return { proc: p };
  };
}

const NAIVE =
  'tracepoint:kmem:kmalloc { printf("%d %d %lx %lx %d %d\\n", nsecs, pid, args->call_site, args->ptr, args->bytes_req, args->bytes_alloc); } ' +
  'tracepoint:kmem:kfree { printf("%d %d %lx %lx\\n", nsecs, pid, args->call_site, args->ptr); } BEGIN { printf("R\\n"); }';

/** Lines the naive tracer printed and events it reported lost, over all its runs. */
const naiveCount = { lines: 0, lost: 0 };

async function naive(): Promise<{ proc: ResultPromise }> {
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
  return { proc: p };
}

/**
 * The floor: the same two tracepoints with BPF programs that do nothing. On kernels where attaching BPF to a
 * classic tracepoint is costly (perf_trace_* fills the record first; retpolines in VMs), this is the most any
 * bpftrace-based tracer can get to; kleak's figures are read against it.
 */
const EMPTY = 'tracepoint:kmem:kmalloc /args->bytes_alloc == 12345/ {} tracepoint:kmem:kfree /args->ptr == 0/ {} BEGIN { printf("R\\n"); }';

async function empty(): Promise<{ proc: ResultPromise }> {
  const p = execa('bpftrace', ['-B', 'none', '-e', EMPTY], { reject: false, stdout: 'pipe', stderr: 'ignore', buffer: false });
  p.stdout!.setEncoding('utf8');
  await new Promise<void>((resolve) => p.stdout!.on('data', (d: string) => d.includes('R\n') && resolve()));
  return { proc: p };
}

const CONFIGS: Config[] = [
  { name: 'no tracing' },
  { name: 'floor: bpftrace, empty programs on kmalloc and kfree', start: empty },
  { name: 'kleak live --bytes 8192 (never allocated by the workload)', start: kleak(['--bytes', '8192']) },
  { name: 'kleak live --bytes 1024 (allocated every operation)', start: kleak(['--bytes', '1024']) },
  { name: 'kleak live --bytes 1024 --stacks', start: kleak(['--bytes', '1024', '--stacks']) },
  { name: 'kleak live --backend tracefs --bytes 8192', start: kleak(['--backend', 'tracefs', '--bytes', '8192']) },
  { name: 'kleak live --backend tracefs --bytes 1024', start: kleak(['--backend', 'tracefs', '--bytes', '1024']) },
  { name: 'naive: bpftrace printf of every kmalloc and kfree', start: naive },
];

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
  const rounds = Number(process.argv[2] ?? 3);
  const seconds = Number(process.argv[3] ?? 3);
  mkdirSync(DIR, { recursive: true });
  await execa('cc', ['-O2', '-o', BIN, `${ROOT}scripts/workload-pipes.c`]);
  const results = CONFIGS.map(() => [] as number[]);
  for (let r = 0; r < rounds; r++) {
    for (const [i, c] of CONFIGS.entries()) {
      const tracer = c.start ? await c.start() : undefined;
      results[i]!.push(await opsPerSec(seconds));
      if (tracer) {
        tracer.proc.kill('SIGINT');
        // bpftrace has been seen to sit for minutes after SIGINT with nothing to print; its programs go with it.
        const stuck = setTimeout(() => tracer.proc.kill('SIGKILL'), 10_000);
        await tracer.proc;
        clearTimeout(stuck);
      }
    }
  }
  const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
  const base = median(results[0]!);
  console.log(`kleak bench-live-overhead — ${rounds} rounds x ${seconds}s, configurations alternated; median ops/s`);
  for (const [i, c] of CONFIGS.entries()) {
    const ops = median(results[i]!);
    const spread = `(runs ${results[i]!.map((x) => Math.round(x / 1000)).join(', ')}k)`;
    console.log(`${c.name.padEnd(60)} ${String(Math.round(ops)).padStart(8)} ops/s   ${(base / ops).toFixed(2)}x  ${spread}`);
  }
  const total = naiveCount.lines + naiveCount.lost;
  if (total > 0) console.log(`  (the naive tracer dropped ${naiveCount.lost.toLocaleString()} of ${total.toLocaleString()} events: ${((100 * naiveCount.lost) / total).toFixed(0)}% — its results are wrong, not just slow)`);
}

await main();
