// What `kleak census` costs, on a cache made to hold a million objects (docs/census.md, "Cost").
//   sudo node dist/scripts/bench-census.js [ROUNDS] [OBJECTS]
// Makes OBJECTS (default 1,000,000) negative dentries (stat of names that do not exist in a fresh folder), then, round
// by round and alternated so the machine's noise hits every configuration alike:
// - a stall probe pinned to CPU 0 alone (its longest gap between two clock reads), beside a node process that only
//   allocates (the floor: any node program on that CPU, V8's helper threads included, takes this much), and beside
//   `kleak census dentry` pinned to the same CPU. This kernel has no preemption (PREEMPT_NONE, HZ=250): the part
//   of a gap the census alone can cause is its longest program run, which kleak measures and prints;
// - the census of small caches (key_jar, filp, kmalloc-128), of dentry, and of every cache (--all), each as wall
//   time of the whole command and kleak's own figures (census seconds, longest program run, peak RSS).
// Targets: 1,000,000+ objects in <= 2 s wall and <= 200 MiB; small caches <= 0.3 s; --all <= 3 s; no stall > 10 ms.
// The folder is removed at the end, which frees its dentries.

import { execa } from 'execa';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CLI = `${ROOT}dist/src/cli.js`;
const ROUNDS = Number(process.argv[2] ?? 3);
const OBJECTS = Number(process.argv[3] ?? 1_000_000);

interface CensusFigures {
  wallS: number;
  censusS: number;
  longestRunMs: number;
  rssMiB: number;
  allocated: number;
}

/** The longest gap a busy loop pinned to CPU 0 sees between two clock reads, over `ms`. */
const PROBE = `const end=Date.now()+Number(process.argv[1]);let last=process.hrtime.bigint(),max=0n;
while(Date.now()<end){const n=process.hrtime.bigint();if(n-last>max)max=n-last;last=n}
process.stdout.write(String(Number(max)/1e6))`;

/** The floor: a node process that allocates for 1.5 s (as long as the census of a million objects). */
const ALLOCATE = 'const e=Date.now()+1500;let a=[];while(Date.now()<e){a.push({x:1});if(a.length>1e5)a=[]}';

async function probe(ms: number): Promise<number> {
  const r = await execa('taskset', ['-c', '0', process.execPath, '-e', PROBE, String(ms)]);
  return Number(r.stdout);
}

async function census(args: string[], pin = false): Promise<CensusFigures> {
  const cmd = pin ? ['taskset', '-c', '0', process.execPath] : [process.execPath];
  const t0 = performance.now();
  const r = await execa(cmd[0]!, [...cmd.slice(1), CLI, 'census', ...args, '--json', '--top', '1'], { reject: false });
  const wallS = (performance.now() - t0) / 1000;
  if (r.exitCode !== 0) throw new Error(`kleak census ${args.join(' ')} failed: ${r.stderr}`);
  const j = JSON.parse(r.stdout) as { caches: { allocated: number }[]; cost: { seconds: number; longestRunMs: number; maxRssMiB: number } };
  return { wallS, censusS: j.cost.seconds, longestRunMs: j.cost.longestRunMs, rssMiB: j.cost.maxRssMiB, allocated: j.caches.reduce((n, c) => n + c.allocated, 0) };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the census benchmark needs root (sudo node dist/scripts/bench-census.js)');
  const before = await census(['dentry']);
  const dir = mkdtempSync(`${tmpdir()}/kleak-bench-dentries-`);
  try {
    const t0 = performance.now();
    for (let i = 0; i < OBJECTS; i++) {
      try {
        statSync(`${dir}/n${i}`);
      } catch {
        // ENOENT is the point: a negative dentry stays in the cache.
      }
    }
    console.log(`made ${OBJECTS.toLocaleString('en')} negative dentries in ${((performance.now() - t0) / 1000).toFixed(1)} s; dentry held ${before.allocated.toLocaleString('en')} before`);
    const rows = new Map<string, CensusFigures[]>();
    const stalls: { alone: number; floor: number; beside: number }[] = [];
    const configs: [string, string[]][] = [
      ['key_jar', ['key_jar']], ['filp', ['filp']], ['kmalloc-128', ['kmalloc-128']], ['dentry', ['dentry']], ['--all', ['--all']],
    ];
    for (let round = 0; round < ROUNDS; round++) {
      const order = round % 2 === 0 ? configs : [...configs].reverse();
      for (const [name, args] of order) {
        const list = rows.get(name) ?? [];
        list.push(await census(args));
        rows.set(name, list);
      }
      const alone = await probe(2500);
      const [floor] = await Promise.all([probe(2500), execa('taskset', ['-c', '0', process.execPath, '-e', ALLOCATE])]);
      const [beside] = await Promise.all([probe(2500), census(['dentry'], true)]);
      stalls.push({ alone, floor, beside });
    }
    console.log(`\n${'census'.padEnd(12)} ${'objects'.padStart(10)} ${'wall s'.padStart(7)} ${'census s'.padStart(9)} ${'longest run'.padStart(12)} ${'RSS MiB'.padStart(8)}   (medians of ${ROUNDS})`);
    for (const [name, list] of rows) {
      console.log(
        `${name.padEnd(12)} ${median(list.map((x) => x.allocated)).toLocaleString('en').padStart(10)} ${median(list.map((x) => x.wallS)).toFixed(2).padStart(7)} ${median(list.map((x) => x.censusS)).toFixed(2).padStart(9)} ${`${median(list.map((x) => x.longestRunMs)).toFixed(1)} ms`.padStart(12)} ${String(median(list.map((x) => x.rssMiB))).padStart(8)}`,
      );
    }
    const d = rows.get('dentry')!;
    const perMillion = (median(d.map((x) => x.censusS)) - median(rows.get('key_jar')!.map((x) => x.censusS))) / (median(d.map((x) => x.allocated)) / 1e6);
    console.log(`\ncensus time above the fixed setup: ${perMillion.toFixed(2)} s per million objects`);
    console.log('stall probe on CPU 0, longest gap (ms): alone / beside an allocating node process / beside a census of dentry');
    for (const s of stalls) console.log(`  ${s.alone.toFixed(2)} / ${s.floor.toFixed(2)} / ${s.beside.toFixed(2)}  (ratio census/floor ${(s.beside / s.floor).toFixed(2)})`);
    const longest = Math.max(...[...rows.values()].flat().map((x) => x.longestRunMs));
    console.log(`the census's longest program run (the CPU held without preemption): ${longest.toFixed(1)} ms (target <= 10 ms)`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(String(err instanceof Error ? err.message : err));
  process.exit(1);
});
