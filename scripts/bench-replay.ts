// Replay speed and memory, measured side by side in one run (ratios, since machines are noisy):
//   1. kleak replay of a generated 5M-event `trace-cmd report`, without and with -T stacks, against the by-hand
//      method (scripts/pair-ptrs.awk). Targets: >= 2M events/s without stacks; <= 2x the awk script's time.
//   2. kleak replay of a real trace.dat (recorded here from a pipe workload; needs root, tracefs, trace-cmd, cc)
//      against `trace-cmd report -i FILE > /dev/null` alone. Target: <= 1.25x.
//   3. Peak memory per outstanding allocation with 1M outstanding. Target: < 200 bytes.
//   npm run bench            (or: node dist/scripts/bench-replay.js [EVENTS])

import { execa } from 'execa';
import { existsSync, mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { generate } from './gen-trace.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CLI = `${ROOT}dist/src/cli.js`;
const DIR = process.env.KLEAK_BENCH_DIR ?? `${tmpdir()}/kleak-bench`;

async function timed(cmd: string, args: string[], opts: { shell?: boolean } = {}): Promise<number> {
  const t = performance.now();
  const r = await execa(cmd, args, { stdout: 'ignore', stderr: 'pipe', reject: false, ...(opts.shell ? { shell: true } : {}) });
  if (r.exitCode !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${String(r.stderr).trim()}`);
  return (performance.now() - t) / 1000;
}

/** Best of n runs, the runs of each command alternated. */
async function bestOf(n: number, cmds: [string, string[], { shell?: boolean }?][]): Promise<number[]> {
  const best = cmds.map(() => Infinity);
  for (let i = 0; i < n; i++) for (const [k, [c, a, o]] of cmds.entries()) best[k] = Math.min(best[k]!, await timed(c, a, o));
  return best;
}

const awk = existsSync('/usr/bin/mawk') ? 'mawk' : 'awk';
const fmt = (x: number, d = 2) => x.toFixed(d);

async function replaySpeed(events: number): Promise<void> {
  for (const stacks of [false, true]) {
    const file = `${DIR}/gen-${events}${stacks ? '-stacks' : ''}.report`;
    if (!existsSync(file)) await generate(file, { events, stacks, leakEvery: 1000, noFree: false });
    const mb = statSync(file).size / 1e6;
    const [k, a] = await bestOf(2, [
      ['node', [CLI, 'replay', file, '--json']],
      [awk, ['-f', `${ROOT}scripts/pair-ptrs.awk`, file]],
    ]);
    console.log(
      `replay ${stacks ? 'with -T stacks' : 'without stacks'}: ${events.toLocaleString()} events, ${fmt(mb, 0)} MB | ` +
        `kleak ${fmt(k!)} s = ${fmt(events / k! / 1e6)}M events/s | ${awk} pairing ${fmt(a!)} s | kleak/awk ${fmt(k! / a!)}x`,
    );
  }
}

async function traceDat(): Promise<void> {
  const T = '/sys/kernel/tracing';
  if (process.getuid?.() !== 0 || !existsSync(`${T}/instances`)) {
    console.log('trace.dat: skipped (needs root and tracefs mounted at /sys/kernel/tracing to record one)');
    return;
  }
  const dat = `${DIR}/pipes.dat`;
  if (!existsSync(dat)) {
    const bin = `${DIR}/workload-pipes`;
    await execa('cc', ['-O2', '-o', bin, `${ROOT}scripts/workload-pipes.c`]);
    const name = `kleak-bench-${process.pid}`;
    const I = `${T}/instances/${name}`;
    mkdirSync(I);
    try {
      writeFileSync(`${I}/buffer_size_kb`, '262144');
      writeFileSync(`${I}/options/hash-ptr`, '0');
      writeFileSync(`${I}/events/kmem/kmalloc/enable`, '1');
      writeFileSync(`${I}/events/kmem/kfree/enable`, '1');
      await execa(bin, ['3']);
      writeFileSync(`${I}/tracing_on`, '0');
      await execa('trace-cmd', ['extract', '-B', name, '-o', dat], { reject: false, all: true });
    } finally {
      if (existsSync(I)) rmSync(I, { recursive: false, force: true });
    }
  }
  const lines = Number((await execa('sh', ['-c', `trace-cmd report -i ${dat} | wc -l`])).stdout);
  const [tc, k] = await bestOf(2, [
    ['sh', ['-c', `trace-cmd report -i ${dat} > /dev/null`]],
    ['node', [CLI, 'replay', dat, '--json']],
  ]);
  console.log(`trace.dat: ${lines.toLocaleString()} lines | trace-cmd report alone ${fmt(tc!)} s | kleak replay ${fmt(k!)} s | kleak/trace-cmd ${fmt(k! / tc!)}x`);
}

async function memory(): Promise<void> {
  const n = 1_000_000;
  const file = `${DIR}/gen-${n}-nofree.report`;
  if (!existsSync(file)) await generate(file, { events: n, stacks: false, leakEvery: 1000, noFree: true });
  const tiny = `${DIR}/tiny.report`;
  await generate(tiny, { events: 1, stacks: false, leakEvery: 1000, noFree: true });
  const rss = async (f: string) => Number((await execa('node', [fileURLToPath(import.meta.url), '--rss-of', f])).stdout);
  const [big, base] = [await rss(file), await rss(tiny)];
  console.log(`memory: ${n.toLocaleString()} outstanding | peak RSS ${fmt(big / 1e6, 0)} MB, baseline ${fmt(base / 1e6, 0)} MB | ${fmt((big - base) / n, 0)} bytes per outstanding allocation`);
}

async function rssOf(file: string): Promise<void> {
  const { replayToReport } = await import('../src/commands/replay.js');
  const { report: r } = await replayToReport({ path: file, format: 'auto', filter: {}, report: {} });
  if (r.totals.events === 0) throw new Error('nothing replayed');
  console.log(process.resourceUsage().maxRSS * 1024);
}

if (process.argv[2] === '--rss-of') await rssOf(process.argv[3]!);
else {
  mkdirSync(DIR, { recursive: true });
  const events = Number(process.argv[2] ?? 5_000_000);
  console.log(`kleak bench-replay — node ${process.version}, ${DIR}`);
  await replaySpeed(events);
  await traceDat();
  await memory();
}
