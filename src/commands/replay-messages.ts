// What the replay worker (replay-worker.ts) tells the thread that draws the TUI.
import type { Report } from '../report/model.js';

export type ReplayFromWorker =
  /** A snapshot while reading; 'end' is the last one: the input is read, or reading stopped (problem says why). */
  | { type: 'report' | 'end'; report: Report; progress: number | undefined; problem?: string }
  /** The replay could not start: a KleakError (exitCode set) or a bug (stack set). */
  | { type: 'error'; message: string; hint?: string; exitCode?: 1 | 2; stack?: string };
