// kleak replay on a terminal: the replay runs on a worker thread (replay-worker.ts) and this thread draws the TUI
// from the snapshots it posts. Kept apart from replay.ts so that this thread loads only what drawing needs while
// the worker loads the parsers and the engine.

import { Worker } from 'node:worker_threads';
import { EnvironmentError, InputError } from '../errors.js';
import { renderText } from '../report/text.js';
import type { ReplayFromWorker } from './replay-messages.js';
import type { ReplayOptions } from './replay.js';
import { writeText } from '../output.js';

/** Replays with the TUI on screen; the final report is printed on the normal screen after q. */
export async function replayInTui(o: ReplayOptions): Promise<void> {
  // Reading starts first, on the worker; Ink and React load here meanwhile.
  const worker = new Worker(new URL('./replay-worker.js', import.meta.url), { workerData: o });
  const tui = import('../tui/run.js');
  let latest: Extract<ReplayFromWorker, { type: 'report' | 'end' }> | undefined;
  const listeners = new Set<() => void>();
  let ended!: () => void;
  const end = new Promise<void>((resolve) => (ended = resolve));
  const first = new Promise<void>((resolve, reject) => {
    worker.on('message', (m: ReplayFromWorker) => {
      if (m.type === 'error') {
        const err = m.exitCode === undefined ? Object.assign(new Error(m.message), { stack: m.stack }) : m.exitCode === 2 ? new EnvironmentError(m.message, m.hint) : new InputError(m.message, m.hint);
        reject(err);
        ended();
        return;
      }
      latest = m;
      resolve();
      for (const l of listeners) l();
      if (m.type === 'end') ended();
    });
    worker.on('error', (err) => {
      reject(err);
      // Once the TUI is up, a dying worker (a bug, out of memory) is shown as the reason reading stopped.
      if (latest !== undefined && latest.type !== 'end') latest = { ...latest, type: 'end', problem: `reading stopped: ${err.message}` };
      for (const l of listeners) l();
      ended();
    });
  });
  try {
    // Errors found in the first lines (unknown format, unreadable input) are reported as usual, without the TUI.
    await first;
    const { runTui } = await tui;
    await runTui(
      {
        report: () => latest!.report,
        progress: () => latest!.progress,
        finished: () => latest!.type === 'end',
        problem: () => latest!.problem,
        subscribe: (l) => {
          listeners.add(l);
          return () => listeners.delete(l);
        },
      },
      () => worker.postMessage('stop'),
    );
    // Quit before the end: the worker stops reading and sends what it had folded in by then.
    worker.postMessage('stop');
    await end;
    writeText(renderText(latest!.report));
    // Reading stopped before the input's end (damage, a read error, a dying worker): the report stands, exit 1.
    const problem = latest!.problem;
    if (problem !== undefined) throw new InputError(`${problem.replace(/; what came before it is shown$/, '')}; the report above covers what was read before it.`);
  } finally {
    await worker.terminate();
  }
}
