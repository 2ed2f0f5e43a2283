// Ingestion never waits for drawing: the time to replay a large trace with the TUI on screen (in a real terminal,
// tmux), against the same replay with --json. Target: TUI <= 1.2x. Needs tmux.
//   node dist/scripts/bench-tui.js [EVENTS]
import { execa } from 'execa';
import { closeSync, existsSync, mkdirSync, openSync, readSync, rmSync, writeFileSync } from 'node:fs';
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

/**
 * From start until the TUI's header says "done". The pane's output is copied to a file as it is written
 * (tmux pipe-pane) and that file is read every 20 ms in this process: capture-pane would spawn a tmux client
 * per poll, costing CPU the replay would miss, and polling it less often blurs the figure by its interval.
 */
async function tui(file: string): Promise<number> {
  await execa('tmux', ['kill-session', '-t', session], { reject: false });
  const out = `${DIR}/tui-pane-${process.pid}.out`;
  writeFileSync(out, '');
  // The pane starts with a shell waiting for a signal, so the pipe is in place before kleak prints anything.
  await execa('tmux', ['new-session', '-d', '-s', session, '-x', '120', '-y', '40', `tmux wait-for go-${session}; node ${CLI} replay ${file}`]);
  await execa('tmux', ['pipe-pane', '-t', session, '-o', `cat >> ${out}`]);
  const t = performance.now();
  await execa('tmux', ['wait-for', '-S', `go-${session}`]);
  // Only what was appended since the last look is read (with an overlap for a word cut at the end of a read):
  // re-reading the whole growing file every 20 ms would itself take CPU from the replay.
  const fd = openSync(out, 'r');
  const chunk = Buffer.alloc(1 << 20);
  let offset = 0;
  for (;;) {
    const n = readSync(fd, chunk, 0, chunk.length, Math.max(0, offset - 64));
    const text = chunk.toString('utf8', 0, n);
    offset = Math.max(0, offset - 64) + n;
    // The header's state word, then its colour reset, then " · ".
    if (/done(?:\u001b\[[\d;]*m)* · /.test(text)) break;
    if (performance.now() - t > 600_000) throw new Error('TUI replay did not finish');
    await new Promise((r) => setTimeout(r, 20));
  }
  const secs = (performance.now() - t) / 1000;
  closeSync(fd);
  await execa('tmux', ['kill-session', '-t', session], { reject: false });
  rmSync(out, { force: true });
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
