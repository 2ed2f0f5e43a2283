// What the TUI watches: a replay or a live run, read through snapshots at the TUI's own pace.
import type { Report, SiteReport } from '../report/model.js';

export interface TuiSource {
  /** A fresh snapshot of the engine (cost grows with the outstanding count; the TUI asks at most ~10 times a second). */
  report(): Report;
  /** Share of the input read, 0..1, for replays of files. */
  progress(): number | undefined;
  /** True once the source has no more data (replay read to the end, live tracer ended). */
  finished(): boolean;
  /** A problem to show in red (the tracer died), or undefined. */
  problem(): string | undefined;
  /** Calls `listener` whenever a new snapshot is ready (a replay on its worker), so the TUI draws it at once. */
  subscribe?(listener: () => void): () => void;
  /** The recording being written, if any. */
  recordingPath?: string;
  /** Reads a site's sample objects from the running kernel (live runs only): lines to show. */
  inspect?: (site: SiteReport) => Promise<string[]>;
}
