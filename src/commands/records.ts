// kleak replay of records the kernel keeps (kmemleak reports, allocinfo dumps, slabinfo capture loops): files in
// time order → reader → RecordsModel → the same sites, series and verdicts as traces, and a by-module summary.

import { closeSync, openSync, readSync, statSync } from 'node:fs';
import { openReplayInput } from '../sources/input.js';
import { forEachLine } from '../sources/lines.js';
import type { VerdictThresholds } from '../engine/verdict.js';
import { InputError, cannotRead } from '../errors.js';
import { gunzipWhole } from '../sources/gzip.js';
import type { RecordFormat } from '../records/format.js';
import { RECORD_FORMATS, detectRecordFormat, recordFormatByName } from '../records/formats.js';
import { MAX_RECORD_SITES, OTHER_SITES, RecordsModel, type Reading, type RecordsReport } from '../records/model.js';
import { fit, fmtBytes, fmtCount, fmtRate, signedBytes, sparkline, table, visible } from '../report/format.js';
import { command, textWidth, wrapText, writeText } from '../output.js';

export interface RecordsOptions {
  paths: string[];
  format: string;
  /** Seconds between readings where the records say no time. */
  everySec: number;
  top?: number;
  thresholds?: VerdictThresholds;
}

/**
 * The record format of a file from its first 64 KiB (a trace of gigabytes is not read here), when it is one; else
 * the trace formats get it.
 */
export function sniffRecordFile(path: string): RecordFormat | undefined {
  try {
    return statSync(path).isFile() ? detectRecordFormat(headLines(path)) : undefined;
  } catch {
    return undefined;
  }
}

/** Natural order of names (kmemleak-2 before kmemleak-10): how people number their captures. */
const natural = (a: string, b: string) => a.localeCompare(b, undefined, { numeric: true });

interface LoadedRecords {
  format: RecordFormat;
  paths: string[];
  badLines: RecordsReport['badLines'];
  /** How many lines could not be read in all (badLines keeps the first 1,000). */
  badCount: number;
  /** Some reading said no time (or went back): one every o.everySec was assumed. */
  assumed: boolean;
  /** Where an input ended early (a damaged gzip). */
  damage: string[];
}

/** Records captured by a loop of `cat /proc/FILE`: each dump lists every row, so a short last one was cut. */
const CAPTURE_LOOPS: ReadonlySet<string> = new Set(['slabinfo', 'vmallocinfo', 'allocinfo']);

/**
 * Why the last dump of a capture loop is incomplete, or undefined: the file ended inside a line (or its gzip was
 * damaged), or the dump has under three quarters of the rows or of the count of the dump before it.
 */
function incomplete(last: Reading, before: Reading, cutMidLine: boolean): string | undefined {
  if (cutMidLine) return 'ends inside a line';
  const total = (r: Reading) => r.sites.reduce((n, s) => n + s.count, 0);
  if (last.sites.length < 0.75 * before.sites.length) return `holds ${last.sites.length} rows against ${before.sites.length} in the one before`;
  if (total(last) < 0.75 * total(before)) return `counts ${total(last)} against ${total(before)} in the one before`;
  return undefined;
}

/** The first 200 lines of a file (gunzipped; a cut gzip inflates as far as it goes), for a sniff: 64 KiB read at most. */
function headLines(path: string): string[] {
  let head = Buffer.alloc(65536);
  try {
    const fd = openSync(path, 'r');
    try {
      head = head.subarray(0, readSync(fd, head, 0, head.length, 0));
    } finally {
      closeSync(fd);
    }
  } catch (err) {
    throw cannotRead(path, err);
  }
  const text = head[0] === 0x1f && head[1] === 0x8b ? gunzipWhole(head).data : head;
  return text.toString('utf8').split('\n').slice(0, 200);
}

/**
 * Streams the files (in name order) through the format's reader into `take`, one reading at a time, with its time:
 * a file of gigabytes is never held whole (a 600 MB kmemleak file ended in "Cannot create a string longer than").
 */
async function loadRecords(o: RecordsOptions, take: (ts: number, r: Reading) => void): Promise<LoadedRecords> {
  const paths = [...o.paths].sort(natural);
  const forced = o.format === 'auto' ? undefined : recordFormatByName(o.format);
  const format = forced ?? detectRecordFormat(headLines(paths[0]!));
  if (!format) throw new InputError(`${paths[0]} is not a kernel record kleak reads (${RECORD_FORMATS.map((f) => f.describe).join(', ')}).`);
  const badLines: RecordsReport['badLines'] = [];
  let badCount = 0;
  const damage: string[] = [];
  let last: number | undefined;
  let assumed = false;
  let readings = 0;
  const accept = (r: Reading) => {
    let ts = r.ts;
    if (ts === undefined || (last !== undefined && ts <= last)) {
      ts = last === undefined ? 0 : last + o.everySec;
      assumed = true;
    }
    take(ts, r);
    readings++;
    last = ts;
  };
  for (const path of paths) {
    // A capture loop's file cut inside its last dump (a copy taken while the loop ran): that dump is incomplete, and
    // its missing rows would read as objects freed. It is held back until the next dump or the end of the file.
    let held: Reading | undefined;
    let before: Reading | undefined;
    const reader = format.reader(
      (line, reason) => {
        badCount++;
        if (badLines.length < 1000) badLines.push({ file: path, line, reason });
      },
      (r) => {
        if (held) accept(held);
        before = held;
        held = r;
      },
    );
    const input = await openReplayInput(path);
    let cut = false;
    await forEachLine(input.stream, (buf, start, end, n) => reader.line(buf.toString('utf8', start, end), n), { unterminated: () => (cut = true) }).catch((err: unknown) => {
      throw new InputError(`cannot read ${path}: ${(err as Error).message}.`);
    });
    reader.end();
    const damaged = input.damaged?.();
    if (damaged) damage.push(`${path} is damaged (${damaged}); its readings before the damage are kept`);
    if (held) {
      const why = CAPTURE_LOOPS.has(format.name) && before ? incomplete(held, before, cut || damaged !== undefined) : undefined;
      if (why) damage.push(`the last ${format.name} dump of ${path} ${why}: it was cut short and is left out`);
      else accept(held);
    }
  }
  if (readings === 0) throw new InputError(`${paths.join(', ')} hold no ${format.describe} (a reading starts with ${format.name === 'kmemleak' ? '"unreferenced object"' : `its "${format.name} - version" header`}).`);
  return { format, paths, badLines, badCount, assumed, damage };
}

function reportOf(model: RecordsModel, l: LoadedRecords, o: RecordsOptions): RecordsReport {
  const { format, badLines, assumed } = l;
  const notices: string[] = [];
  if (assumed) notices.push(`the ${format.name === 'kmemleak' ? 'reports' : 'dumps'} do not say when each was taken: kleak assumed one every ${o.everySec} s (--every SEC), in file-name order.`);
  if (model.readings < 3) notices.push(`only ${model.readings} reading${model.readings === 1 ? '' : 's'}: a verdict needs a series (${o.thresholds?.minPoints ?? 3} or more).`);
  if (badLines.length > 0) notices.push(`${l.badCount.toLocaleString('en-US')} lines were not in the documented layout and were skipped (first: ${badLines[0]!.file} line ${badLines[0]!.line}: ${badLines[0]!.reason}).`);
  notices.push(...l.damage.map((d) => `${d}.`));
  if (model.sitesMerged > 0) notices.push(`past ${MAX_RECORD_SITES.toLocaleString('en-US')} sites, ${model.sitesMerged.toLocaleString('en-US')} more were counted together as "${OTHER_SITES}".`);
  return model.report(format.name, { badLines, notices, ...(assumed ? { assumedEverySec: o.everySec } : {}), ...(o.top !== undefined ? { top: o.top } : {}) });
}

export async function recordsReport(o: RecordsOptions): Promise<RecordsReport> {
  const model = new RecordsModel(o.thresholds);
  const l = await loadRecords(o, (ts, r) => model.add(ts, r));
  return reportOf(model, l, o);
}

/**
 * The report after each reading (after evenly spaced ones past `max`), for the terminal view to replay. The
 * readings are counted in a first pass, so that only the frames shown are made.
 */
export async function recordsFrames(o: RecordsOptions, max = 300): Promise<RecordsReport[]> {
  let total = 0;
  const l0 = await loadRecords(o, () => total++);
  const model = new RecordsModel(o.thresholds);
  const every = Math.ceil(total / max);
  const frames: RecordsReport[] = [];
  let k = 0;
  let made: RecordsReport | undefined;
  const l = await loadRecords(o, (ts, r) => {
    model.add(ts, r);
    k++;
    if (k % every === 0 || k === total) frames.push((made = reportOf(model, { format: l0.format, paths: o.paths, badLines: [], badCount: 0, assumed: false, damage: [] }, o)));
  });
  // The last frame carries the notices of the whole input.
  if (made) frames[frames.length - 1] = reportOf(model, l, o);
  return frames;
}

/** The records replay on a terminal; the final report is printed after, as the trace replay does. */
export async function recordsInTui(o: RecordsOptions): Promise<void> {
  const frames = await recordsFrames(o);
  const { render } = await import('ink');
  const { createElement } = await import('react');
  const { RecordsApp } = await import('../tui/RecordsApp.js');
  process.stdout.write('\x1b[?1049h\x1b[H');
  try {
    const app = render(createElement(RecordsApp, { frames }), { exitOnCtrlC: false, patchConsole: false });
    await app.waitUntilExit();
  } finally {
    process.stdout.write('\x1b[?1049l');
  }
  writeText(renderRecords(frames[frames.length - 1]!));
}

export function renderRecords(r: RecordsReport, width = textWidth()): string {
  const out: string[] = [];
  const secs = r.span.lastTs - r.span.firstTs;
  out.push(`kleak replay — ${r.format}: ${r.readings} readings over ${secs.toFixed(0)} s${r.assumedEverySec ? ` (one every ${r.assumedEverySec} s assumed)` : ''}`);
  for (const n of r.notices) out.push(`note: ${n}`);
  out.push('');
  type Site = RecordsReport['sites'][number];
  out.push(
    ...table<Site>(
      [
        { head: 'SITE', width: 28, cell: (s) => fit(s.label, 28) },
        { head: 'MODULE', width: 12, drop: 2, cell: (s) => fit(s.module ? `[${s.module}]` : '-', 12) },
        { head: 'COUNT', width: 8, right: true, cell: (s) => fmtCount(s.count) },
        { head: 'BYTES', width: 10, right: true, cell: (s) => fmtBytes(s.bytes) },
        { head: 'COUNT/min', width: 9, right: true, drop: 3, cell: (s) => fmtRate(s.countPerMin) },
        { head: 'BYTES/min', width: 10, right: true, cell: (s) => signedBytes(s.bytesPerMin) },
        { head: ' TREND', width: 13, drop: 1, cell: (s) => ' ' + sparkline(s.series, 12, true) },
        { head: 'VERDICT', width: 8, cell: (s) => s.verdict },
      ],
      r.sites,
      width,
    ),
  );
  const grow = r.sites.filter((s) => s.verdict === 'growing' && s.where && s.where !== s.label);
  for (const s of grow.slice(0, 5)) out.push(`  ${s.label}${s.module ? ` [${s.module}]` : ''}: ${s.where}`);
  for (const s of r.sites.filter((x) => x.next).slice(0, 5)) out.push(`${visible(s.label)} is growing: ${command(s.next!)} names who holds it`);
  out.push('');
  out.push('BY MODULE: ' + r.modules.map((m) => `${m.module === 'the kernel itself' ? m.module : `[${m.module}]`} ${fmtBytes(m.bytes)} (${signedBytes(m.bytesPerMin)}/min${m.growingSites ? `, ${m.growingSites} growing` : ''})`).join(' · '));
  return wrapText(out.join('\n') + '\n', width);
}
