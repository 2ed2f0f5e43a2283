// kleak census CACHE: what a slab cache holds right now, including everything allocated before kleak started,
// grouped by what the objects look like (docs/census.md). Read-only, nothing attached. With --interval the census
// repeats and each group gets a series and a verdict; --record keeps every round for kleak replay and kleak diff.

import { hostname } from 'node:os';
import { readFileSync } from 'node:fs';
import { CensusModel, type CensusReport } from '../census/model.js';
import { CensusSession, type CensusRound, kmallocNames } from '../census/session.js';
import { InputError } from '../errors.js';
import type { VerdictThresholds } from '../engine/verdict.js';
import { SyncLineWriter } from '../report/ndjson-writer.js';
import { checkNewFile } from '../report/private-file.js';
import { say } from '../output.js';

export { renderCensus } from '../census/render.js';

export interface CensusOptions {
  /** Cache names; or */
  caches: string[];
  /** the kmalloc caches (plain and cgroup-accounted) serving this size; or */
  bytes?: number;
  /** every cache. */
  all?: boolean;
  top: number;
  /** Seconds between censuses; with durationSec, the census repeats. */
  intervalSec?: number;
  durationSec?: number;
  /** A census recording (NDJSON: a header, then one line per round), new and 0600: it holds kernel addresses. */
  record?: string;
  force?: boolean;
  thresholds?: VerdictThresholds;
}

/** What the command line asks for, checked: names, --bytes N or --all. */
export function cachesFor(names: string[], bytes: number | undefined, all: boolean): Pick<CensusOptions, 'caches' | 'bytes' | 'all'> {
  const asked = (names.length > 0 ? 1 : 0) + (bytes !== undefined ? 1 : 0) + (all ? 1 : 0);
  if (asked !== 1) throw new InputError('kleak census needs one of: cache names, --bytes N (the kmalloc caches of that size), or --all.', 'Example: sudo kleak census kmalloc-128');
  return { caches: names, ...(bytes !== undefined ? { bytes } : {}), ...(all ? { all } : {}) };
}

/** The header line of a census recording. */
export const CENSUS_RECORDING = 'census-recording';

/** Runs one census, or one every intervalSec until durationSec (or a stop signal); returns the report. */
export async function runCensus(o: CensusOptions): Promise<CensusReport> {
  if (o.record !== undefined) checkNewFile(o.record, o.force);
  const session = new CensusSession();
  let writer: SyncLineWriter | undefined;
  let stop = false;
  let wake: () => void = () => {};
  const onSignal = () => {
    stop = true;
    wake();
  };
  try {
    const names = o.all ? session.caches.map((c) => c.name) : o.bytes !== undefined ? kmallocNames(session.caches, o.bytes) : o.caches;
    const wanted = session.named(names);
    const model = new CensusModel(hostname());
    if (o.record !== undefined) {
      writer = new SyncLineWriter(o.record, o.force);
      writer.line(JSON.stringify({ kleak: 1, kind: CENSUS_RECORDING, host: hostname(), caches: names }));
    }
    const repeat = o.intervalSec !== undefined && o.durationSec !== undefined;
    const end = Date.now() + (o.durationSec ?? 0) * 1000;
    if (repeat) {
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
    }
    for (;;) {
      const round = session.take(wanted);
      model.add(round);
      writer?.line(JSON.stringify(round));
      if (repeat) say(`kleak: census ${model.rounds} at ${round.time}: ${round.caches.map((c) => `${c.cache} ${c.allocated.toLocaleString('en-US')} allocated`).join(', ')}\n`);
      if (!repeat || stop || Date.now() + o.intervalSec! * 1000 > end + 50) break;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, o.intervalSec! * 1000);
        wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      if (stop) break;
    }
    return model.report(o.top, o.thresholds);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    writer?.close();
    session.close();
  }
}

/** Does this text begin with a census recording's header line? */
const isCensusRecording = (text: string) => text.trimStart().startsWith(`{"kleak":1,"kind":"${CENSUS_RECORDING}"`);

/** Is this text a census: a recording (its header line) or a --json census report? */
export function isCensusText(text: string): boolean {
  const head = text.slice(0, 4096).trimStart();
  return isCensusRecording(head) || (head.startsWith('{') && /"evidence":\s*"census"/.test(head));
}

/**
 * A census recording or report read back: the rounds of a recording give their series again; a report is shown as
 * it was. A line cut by a kill is counted and said, never fatal; the rounds before it stand.
 */
export function readCensus(path: string, text = readFileSync(path, 'utf8'), top = Number.MAX_SAFE_INTEGER, thresholds?: VerdictThresholds): { report: CensusReport; damage?: string } {
  if (!isCensusRecording(text)) {
    let doc: CensusReport;
    try {
      doc = JSON.parse(text) as CensusReport;
    } catch (err) {
      throw new InputError(`${path} is not a whole census report (${(err as Error).message}).`);
    }
    if (doc.evidence !== 'census' || !Array.isArray(doc.caches) || !Array.isArray(doc.sites)) throw new InputError(`${path} is not a kleak census report.`);
    return { report: { ...doc, sites: doc.sites.slice(0, top) } };
  }
  const lines = text.split('\n');
  let first = 0;
  while (lines[first]!.trim() === '') first++;
  const header = JSON.parse(lines[first]!) as { host?: string };
  const model = new CensusModel(typeof header.host === 'string' ? header.host : 'unknown host');
  const bad: number[] = [];
  for (let i = first + 1; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.trim() === '') continue;
    try {
      const round = JSON.parse(line) as CensusRound;
      if (round.kind !== 'census-round' || !Array.isArray(round.caches) || typeof round.time !== 'string' || !round.caches.every(validCache)) throw new Error('not a census round');
      model.add(round);
    } catch {
      bad.push(i + 1);
    }
  }
  if (model.rounds === 0) throw new InputError(`${path} holds no census round${bad.length ? ` (line ${bad[0]} is damaged)` : ''}.`);
  const damage = bad.length > 0 ? `${path}: ${bad.length} damaged line${bad.length > 1 ? 's' : ''} skipped (line ${bad.slice(0, 5).join(', ')})` : undefined;
  return { report: model.report(top, thresholds), ...(damage ? { damage } : {}) };
}

function validCache(c: unknown): boolean {
  const x = c as CensusRound['caches'][number];
  return typeof x === 'object' && x !== null && typeof x.cache === 'string' && typeof x.objectSize === 'number' && Array.isArray(x.groups) &&
    x.groups.every((g) => typeof g === 'object' && g !== null && typeof g.key === 'string' && typeof g.label === 'string' && Number.isFinite(g.count) && Array.isArray(g.shape) && Array.isArray(g.samples));
}
