// kleak replay: a saved trace → parser → engine → report. No parsing or math here, only wiring.

import { readFileSync } from 'node:fs';
import { Engine, type ReportOptions } from '../engine/engine.js';
import type { VerdictThresholds } from '../engine/verdict.js';
import type { EventFilter } from '../engine/filter.js';
import type { FormatName, SlabAllocator } from '../event.js';
import { EnvironmentError, InputError, KleakError } from '../errors.js';
import { Kallsyms } from '../kernel/kallsyms.js';
import { DetectingParser } from '../parse/detect.js';
import { acceptedFormatsSentence, formatByName } from '../parse/formats.js';
import type { Report, SourceInfo } from '../report/model.js';
import { openReplayInput } from '../sources/input.js';
import { forEachLine } from '../sources/lines.js';
import { checkNewFile, writeNewFile } from '../report/private-file.js';
import { foldedStacks, pprofProfile } from '../report/stack-exports.js';
import { flamegraphHtml } from '../report/flamegraph-html.js';
import { say } from '../output.js';

export interface ReplayOptions {
  path: string;
  format: FormatName | 'auto';
  filter: EventFilter;
  report: ReportOptions;
  /** Replay at this many trace seconds per second (the TUI shows the trace unfold); undefined: as fast as possible. */
  speed?: number;
  thresholds?: VerdictThresholds;
  /** Bytes per page on the traced machine (--page-size; 4096 when absent). */
  pageSize?: number;
  /** The traced kernel's slab allocator (--slab-allocator; SLUB when absent). */
  slab?: SlabAllocator;
  /** A /proc/kallsyms copy or System.map of the traced kernel: names raw hex call sites and frames (old traces). */
  kallsyms?: string;
}

export interface ReplayRun {
  engine: Engine;
  source: SourceInfo;
  /** Share of the input read so far, 0..1, when the size is known. */
  progress(): number | undefined;
  /** Resolves when the whole input has been folded into the engine (or as much of it as could be read). */
  done: Promise<void>;
  stop(): void;
  report(): Report;
  /**
   * Why reading ended before the input did (a damaged gzip, a read error after lines were read), once done: the
   * report covers what came before, and the command exits 1 after printing it.
   */
  damage(): string | undefined;
}

/** --kallsyms FILE: its text symbols, as a namer of hex addresses; one sentence when the file holds none. */
function symbolsFrom(path: string): (hex: string) => string | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'latin1');
  } catch (err) {
    throw new InputError(`cannot read --kallsyms ${path}: ${(err as Error).message}.`);
  }
  const syms = Kallsyms.load(text);
  if (syms.size === 0) {
    throw new InputError(`--kallsyms ${path} holds no text symbols with addresses (lines like "ffffffff81000000 T _stext").`, 'Copy /proc/kallsyms as root (other users see zeros), or use the kernel\'s System.map.');
  }
  return (hex) => {
    const a = BigInt(`0x${hex}`);
    return syms.lookup(a) ? syms.format(a) : undefined;
  };
}

export async function startReplay(o: ReplayOptions): Promise<ReplayRun> {
  const forced = o.format === 'auto' ? undefined : formatByName(o.format);
  if (o.format !== 'auto' && !forced) throw new InputError(`--format ${o.format} is not a format kleak reads; it reads ${acceptedFormatsSentence()}.`);
  const input = await openReplayInput(o.path, o.speed ? 16 * 1024 : undefined);
  const source: SourceInfo = { kind: 'replay', path: o.path === '-' ? 'stdin' : o.path };
  const engine = new Engine({ filter: o.filter, ...(o.thresholds ? { thresholds: o.thresholds } : {}), ...(o.kallsyms !== undefined ? { symbolize: symbolsFrom(o.kallsyms) } : {}) });
  const what = o.path === '-' ? 'stdin' : o.path;
  const parser = new DetectingParser(engine, what, input.traceDat ? formatByName('trace-cmd') : forced, (name) => (source.format = name), {
    ...(o.pageSize !== undefined ? { pageSize: o.pageSize } : {}),
    ...(o.slab !== undefined ? { slab: o.slab } : {}),
  });
  if (o.speed) pace(input.stream, engine, o.speed);
  let damage: string | undefined;
  const done = (async () => {
    const lines = await forEachLine(input.stream, (buf, start, end, n) => {
      engine.totals.lines = n;
      parser.bytes(buf, start, end, n);
    }).catch((err: unknown) => {
      input.close();
      // Nothing read yet: the command says so without a report. After lines were read, they stand.
      const damaged = input.damaged?.();
      if (damaged && source.format === undefined) {
        throw new InputError(`${what} is damaged after line ${engine.totals.lines.toLocaleString('en-US')} (${damaged}), before kleak could tell its format.`);
      }
      if (engine.totals.lines === 0 || source.format === undefined) throw err;
      damage = `reading ${what} failed after line ${engine.totals.lines.toLocaleString('en-US')} (${(err as Error).message})`;
      return engine.totals.lines;
    });
    await input.done;
    const damaged = input.damaged?.();
    if (damaged) {
      engine.bad(lines + 1, `the input is damaged here (${damaged}): the report covers the ${lines.toLocaleString('en-US')} lines before it`);
      damage = `${what} is damaged after line ${lines.toLocaleString('en-US')} (${damaged})`;
    } else if (damage !== undefined) engine.bad(lines + 1, `${damage}: the report covers the lines before it`);
    if (lines === 0) {
      if (damaged) throw new InputError(`${what} is damaged before its first line (${damaged}): nothing in it could be read.`);
      throw new InputError(
        input.traceDat ? `trace-cmd report printed nothing for ${what}: the file is damaged or holds no events.` : `${what} is empty: there are no trace lines in it.`,
      );
    }
    try {
      parser.end();
    } catch (err) {
      // The few lines before the damage were too few to tell the format: the damage is the news, not the format.
      if (!damaged || source.format !== undefined) throw err;
      throw new InputError(`${what} is damaged after line ${lines.toLocaleString('en-US')} (${damaged}), before kleak could tell its format.`);
    }
  })();
  return {
    engine,
    source,
    progress: () => (input.size ? Math.min(1, input.bytesRead() / input.size) : undefined),
    done,
    stop: () => input.close(),
    report: () => engine.report(source, o.report),
    damage: () => damage,
  };
}

/** Holds the stream back whenever the trace runs ahead of `speed` trace seconds per wall second. */
function pace(stream: NodeJS.ReadableStream, engine: Engine, speed: number): void {
  const start = performance.now();
  // Registered after the line splitter's listener: runs once each chunk has been folded into the engine.
  stream.on('data', () => {
    const { firstTs, lastTs } = engine.span;
    const ahead = (lastTs - firstTs) / speed - (performance.now() - start) / 1000;
    if (ahead > 0.01) {
      stream.pause();
      setTimeout(() => stream.resume(), ahead * 1000);
    }
  });
}

/** Replays the whole input and returns the final report, and why reading stopped early if it did. */
export async function replayToReport(o: ReplayOptions, exports: StackExportOptions = {}): Promise<{ report: Report; damage: string | undefined; failedExports: string[] }> {
  checkStackExports(exports);
  const run = await startReplay(o);
  await run.done;
  const failedExports = writeStackExports(run.engine, exports, o.report.minAgeSec);
  return { report: run.report(), damage: run.damage(), failedExports };
}

export interface StackExportOptions {
  folded?: string;
  pprof?: string;
  flamegraph?: string;
  force?: boolean;
}

/**
 * --folded / --pprof / --flamegraph: outstanding bytes by stack, written once the trace (or the run) is over; says
 * where. A file that cannot be written is said and left out (returned, for the exit code); the others and the
 * report still come.
 */
export function writeStackExports(engine: Engine, o: StackExportOptions, minAgeSec?: number): string[] {
  if (!o.folded && !o.pprof && !o.flamegraph) return [];
  const w = engine.stackWeights(minAgeSec !== undefined ? { minAgeSec } : {});
  const failed: string[] = [];
  const write = (path: string, data: () => string | Uint8Array, said: string) => {
    try {
      writeNewFile(path, data(), o.force === true);
      say(`kleak: ${said}\n`);
    } catch (err) {
      if (!(err instanceof KleakError)) throw err;
      failed.push(err.message);
      say(`kleak: ${err.message}\n`);
    }
  };
  if (o.folded) write(o.folded, () => foldedStacks(w), `wrote ${w.length} stacks (weights in bytes) to ${o.folded}`);
  if (o.flamegraph) {
    const title = `kleak — outstanding kernel memory by stack (${w.reduce((n, s) => n + s.objects, 0)} objects)`;
    write(o.flamegraph, () => flamegraphHtml(w, title), `wrote a flame graph of ${w.length} stacks to ${o.flamegraph} (open it in a browser)`);
  }
  if (o.pprof) write(o.pprof, () => pprofProfile(w), `wrote a pprof profile of ${w.length} stacks (objects, bytes) to ${o.pprof}`);
  return failed;
}

/** Refuses, before reading or tracing, any export file that would be refused at the end. */
export function checkStackExports(o: StackExportOptions): void {
  for (const path of [o.folded, o.pprof, o.flamegraph]) if (path !== undefined) checkNewFile(path, o.force === true);
}

/** The exit's error when an export could not be written (after the report was printed). */
export function exportFailure(failed: readonly string[]): EnvironmentError | undefined {
  return failed.length ? new EnvironmentError(`${failed.length} output file${failed.length > 1 ? 's' : ''} could not be written (said above); the report is complete.`) : undefined;
}
