// Ingestion never waits for drawing: the time to replay a large trace with the TUI on screen (in a real terminal,
// tmux), against the same replay with --json. Target: TUI <= 1.2x. Needs tmux.
//   node dist/scripts/bench-tui.js [EVENTS]
import { execa } from 'execa';
import { existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { generate } from './gen-trace.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CLI = `${ROOT}dist/src/cli.js`;
const DIR = process.env.KLEAK_BENCH_DIR ?? `${tmpdir()}/kleak-bench`;
const session = `kleak-bench-${process.pid}`;

async function json(file: string): Promise<number> {
  const t = performance.now();
  await execa('node', [CLI, 'replay', file, '--json'], { stdout: 'ignore' });
  return (performance.now() - t) / 1000;
}

/** From start until the TUI's header says "done" (polled every 250 ms: polling tmux costs CPU the replay would miss). */
async function tui(file: string): Promise<number> {
  await execa('tmux', ['kill-session', '-t', session], { reject: false });
  const t = performance.now();
  await execa('tmux', ['new-session', '-d', '-s', session, '-x', '120', '-y', '40', `node ${CLI} replay ${file}`]);
  for (;;) {
    const s = (await execa('tmux', ['capture-pane', '-p', '-t', session])).stdout;
    if (/^done · /m.test(s)) break;
    if (performance.now() - t > 600_000) throw new Error('TUI replay did not finish');
    await new Promise((r) => setTimeout(r, 250));
  }
  const secs = (performance.now() - t) / 1000;
  await execa('tmux', ['kill-session', '-t', session], { reject: false });
  return secs;
}

const events = Number(process.argv[2] ?? 5_000_000);
mkdirSync(DIR, { recursive: true });
const file = `${DIR}/gen-${events}.report`;
if (!existsSync(file)) await generate(file, { events, stacks: false, leakEvery: 1000, noFree: false });
let bestJson = Infinity;
let bestTui = Infinity;
for (let i = 0; i < 2; i++) {
  bestJson = Math.min(bestJson, await json(file));
  bestTui = Math.min(bestTui, await tui(file));
}
console.log(`TUI replay of ${events.toLocaleString()} events: --json ${bestJson.toFixed(2)} s | TUI (until "done") ${bestTui.toFixed(2)} s | TUI/json ${(bestTui / bestJson).toFixed(2)}x`);
