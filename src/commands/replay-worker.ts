// The replay behind the TUI, on its own thread: the parse loop never waits for React, Ink or the terminal, and the
// UI thread never waits for a 1 MiB chunk to be folded in (scripts/bench-tui). It posts the engine's report about
// ten times a second and once more, complete, at the end or when told to stop.

import { parentPort, workerData } from 'node:worker_threads';
import { KleakError } from '../errors.js';
import { startReplay, type ReplayOptions } from './replay.js';
import type { ReplayFromWorker } from './replay-messages.js';

const port = parentPort!;
const post = (m: ReplayFromWorker) => port.postMessage(m);

function failure(err: unknown): ReplayFromWorker {
  return err instanceof KleakError
    ? { type: 'error', message: err.message, hint: err.hint, exitCode: err.exitCode }
    : { type: 'error', message: (err as Error).message ?? String(err), stack: (err as Error).stack };
}

try {
  const run = await startReplay(workerData as ReplayOptions);
  let ended = false;
  const snapshot = (type: 'report' | 'end', problem?: string) => {
    // Not before the format is known: an input kleak cannot read is reported without the TUI.
    if (type === 'report' && run.source.format === undefined) return;
    if (!ended) post({ type, report: run.report(), progress: run.progress(), ...(problem !== undefined ? { problem } : {}) });
    if (type === 'end') ended = true;
  };
  const timer = setInterval(() => snapshot('report'), 100);
  port.on('message', (m: string) => {
    if (m !== 'stop') return;
    run.stop();
    clearInterval(timer);
    snapshot('end');
    port.close();
  });
  run.done.then(
    () => {
      clearInterval(timer);
      const damage = run.damage();
      snapshot('end', damage !== undefined ? `${damage}; what came before it is shown` : undefined);
    },
    (err: unknown) => {
      clearInterval(timer);
      // Nothing read yet (unknown format, unreadable input): the command reports it as usual, without the TUI.
      if (run.source.format === undefined) post(failure(err));
      else snapshot('end', `reading stopped: ${(err as Error).message}`);
    },
  );
} catch (err) {
  post(failure(err));
}
