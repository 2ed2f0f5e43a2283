// kleak record: a trace on disk in the kernel's own formats, for a kernel person's own tools and for kleak replay.
//   --backend tracefs   → raw trace_pipe text (the instance's lines as the kernel printed them)
//   --backend trace-cmd → a trace.dat from `trace-cmd record` (trace-cmd report reads it)

import { Engine } from '../engine/engine.js';
import type { EventFilter } from '../engine/filter.js';
import { InputError } from '../errors.js';
import type { AllocatorName } from '../event.js';
import { fmtCount } from '../report/format.js';
import { SyncLineWriter } from '../report/ndjson-writer.js';
import type { LiveSource } from '../sources/live.js';
import { startTraceCmd } from '../sources/trace-cmd.js';
import { startTracefs } from '../sources/tracefs.js';
import { catchStopSignals } from './live.js';
import { say } from '../output.js';

export interface RecordOptions {
  backend: 'tracefs' | 'trace-cmd';
  filter: EventFilter;
  allocators: ReadonlySet<AllocatorName>;
  stacks: boolean;
  durationSec: number | undefined;
  output: string;
  force?: boolean;
}

export async function runRecord(o: RecordOptions): Promise<number> {
  const stopper = catchStopSignals();
  const engine = new Engine({ filter: o.filter, filteredAtSource: true });
  let writer: SyncLineWriter | undefined;
  let source: LiveSource;
  try {
    if (o.backend === 'trace-cmd' && [...o.allocators].some((a) => a !== 'slab')) {
      throw new InputError('kleak record --backend trace-cmd records the slab tracepoints only; --alloc needs --backend tracefs.');
    }
    if (o.backend === 'tracefs') {
      writer = new SyncLineWriter(o.output, o.force);
      const w = writer;
      source = await startTracefs({ filter: o.filter, allocators: o.allocators, stacks: o.stacks, bufferKb: 8192, rawLine: (l) => w.line(l) }, engine);
    } else {
      source = await startTraceCmd({ filter: o.filter, stacks: o.stacks, output: o.output }, engine);
    }
  } catch (err) {
    writer?.close();
    stopper.release();
    throw err;
  }
  stopper.attach(source);
  say(`kleak: recording with ${o.backend} to ${o.output}; ${o.durationSec ? `for ${o.durationSec}s` : 'Ctrl-C to stop'}\n`);
  const duration = o.durationSec ? setTimeout(() => void source.stop(), o.durationSec * 1000) : undefined;
  const end = await source.ended;
  if (duration) clearTimeout(duration);
  writer?.close();
  stopper.release();
  const t = engine.totals;
  const what = o.backend === 'tracefs' ? `${fmtCount(writer!.written)} lines of trace_pipe text (${fmtCount(t.events)} allocator events, ${fmtCount(t.lostEvents)} lost)` : 'a trace.dat';
  const cut = writer?.failed !== undefined ? `; ${fmtCount(writer.lines - writer.written)} lines were not written (disk full or a write error, said above)` : '';
  say(`kleak: ${end.how === 'died' ? `${end.why}; ` : ''}recorded ${what} in ${o.output}${cut}; read it with: kleak replay ${o.output}\n`);
  return end.how === 'died' || cut !== '' ? 2 : 0;
}

export function checkRecordBackend(b: string): 'tracefs' | 'trace-cmd' {
  if (b === 'tracefs' || b === 'trace-cmd') return b;
  throw new InputError(`kleak record --backend must be tracefs or trace-cmd (bpftrace runs record with: kleak live --record FILE.ndjson).`);
}
