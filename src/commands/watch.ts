// kleak watch: samples /proc/slabinfo and /proc/meminfo every interval and says which caches grow, with the
// `kleak live` filter for a growing kmalloc size class. --record keeps the samples; --replay shows them again.

import { readMemcgs } from '../kernel/memcg.js';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { readAll } from '../records/format.js';
import { recordFormatByName } from '../records/formats.js';
import { RecordsModel, type RecordsReport } from '../records/model.js';
import { renderRecords } from './records.js';
import { EnvironmentError, InputError } from '../errors.js';
import { isWatchSample, WatchModel, type WatchReport, type WatchSample } from '../engine/watch.js';
import { parseMeminfo, parseSlabinfo } from '../kernel/slabinfo.js';
import { parseVmallocinfo, type VmallocGroup } from '../kernel/vmallocinfo.js';
import { fit, fmtBytes, fmtCount, fmtRate, signedBytes, sparkline, table, visible } from '../report/format.js';
import { SyncLineWriter } from '../report/ndjson-writer.js';
import { catchStopSignals } from './live.js';
import { RemoteFiles, type SshTarget } from '../sources/ssh.js';
import { openReplayInput } from '../sources/input.js';
import { forEachLine } from '../sources/lines.js';
import { command, say, textWidth, wrapText, writeText, writeData } from '../output.js';

export interface WatchOptions {
  intervalSec: number;
  durationSec: number | undefined;
  top: number;
  record: string | undefined;
  /** Replace an existing --record file. */
  force?: boolean;
  prometheus?: { host: string | undefined; port: number };
  textfile?: string;
  /** Read /proc and /sys under this directory (a copy from another host); default /. */
  root?: string;
  /** Ask kmemleak for a scan before each reading (expensive: never by default). */
  kmemleakScan?: boolean;
  /** --cache: the caches whose SLUB alloc_traces to read (default: the first listed that have them). */
  caches?: string[];
  /** Read the files of this host over ssh (--ssh), copied into a private directory read as --root. */
  ssh?: SshTarget;
  replay: string | undefined;
  json: boolean;
  /** Interactive view (a terminal): Enter on a cache returns it, to trace live. */
  tui: boolean;
}

/** Where /proc and /sys are: `/`, or a copy taken from another host (--root DIR). */
let ROOT_DIR = '';
const at = (path: string) => `${ROOT_DIR}${path}`;

function sample(): WatchSample {
  let slab: string;
  try {
    slab = readFileSync(at('/proc/slabinfo'), 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EACCES') throw new EnvironmentError('kleak watch needs root: /proc/slabinfo is readable by root only.', 'Run it with sudo.');
    if (code === 'ENOENT') throw new EnvironmentError(`this kernel has no ${at('/proc/slabinfo')}.`, 'It is built without slabinfo support (CONFIG_SLUB_DEBUG on SLUB kernels).');
    throw new EnvironmentError(`cannot read ${at('/proc/slabinfo')}: ${(err as Error).message}.`);
  }
  const vmalloc = readVmalloc();
  const memcgs = readMemcgs(ROOT_DIR);
  return {
    ts: performance.timeOrigin / 1000 + performance.now() / 1000, meminfo: parseMeminfo(readFileSync(at('/proc/meminfo'), 'utf8')), slabs: parseSlabinfo(slab), ...(vmalloc ? { vmalloc } : {}),
    ...(memcgs ? { memcgs: memcgs.cgroups, ...(memcgs.dying !== undefined ? { dyingMemcgs: memcgs.dying } : {}) } : {}),
  };
}

let vmallocSaid = false;
/** /proc/vmallocinfo by caller; undefined (said once) where it cannot be read. */
function readVmalloc(): VmallocGroup[] | undefined {
  try {
    const r = parseVmallocinfo(readFileSync(at('/proc/vmallocinfo'), 'utf8'));
    if (r.badLines.length > 0 && !vmallocSaid) {
      vmallocSaid = true;
      say(`kleak: ${r.badLines.length} lines of /proc/vmallocinfo were not in the documented layout (first: line ${r.badLines[0]}); they are left out.\n`);
    }
    return r.groups;
  } catch (err) {
    if (!vmallocSaid) {
      vmallocSaid = true;
      say(`kleak: /proc/vmallocinfo cannot be read (${(err as Error).message}): vmalloc callers are not shown.\n`);
    }
    return undefined;
  }
}

function aliasesOf(cache: string): number | undefined {
  const f = at(`/sys/kernel/slab/${cache}/aliases`);
  return existsSync(f) ? Number(readFileSync(f, 'utf8').trim()) || undefined : undefined;
}

function mergeable(): boolean | undefined {
  try {
    return !/\bslab_nomerge\b/.test(readFileSync(at('/proc/cmdline'), 'utf8'));
  } catch {
    return undefined;
  }
}

async function watchInTui(o: WatchOptions, model: WatchModel, take: () => void, writer: SyncLineWriter | undefined, records: RecordWatch): Promise<number | { trace: string }> {
  const { render } = await import('ink');
  const { createElement } = await import('react');
  const { WatchApp, vmallocSection } = await import('../tui/WatchApp.js');
  const { recordRows } = await import('../tui/RecordsApp.js');
  // Tab cycles: vmalloc callers, then each kernel record this host keeps.
  const sections = () => {
    const v = vmallocSection(model.report({ top: 100 }));
    const recs = Object.entries(records.reports(100)).map(([name, r]) => ({ title: `${name} (${r.readings} readings)`, countLabel: 'COUNT', rows: recordRows(r) }));
    return [...(v ? [v] : []), ...recs];
  };
  const timer = setInterval(take, o.intervalSec * 1000);
  const stopTimer = o.durationSec ? setTimeout(() => app.unmount(), o.durationSec * 1000) : undefined;
  let chosen: string | undefined;
  const merged = mergeable();
  const report = () => model.report({ top: 100, aliases: aliasesOf, ...(merged !== undefined ? { merged } : {}) });
  process.stdout.write('\x1b[?1049h\x1b[H');
  const app = render(createElement(WatchApp, { report, sections, onTrace: (c: string) => (chosen = c), onQuit: () => undefined }), { exitOnCtrlC: false, patchConsole: false });
  try {
    await app.waitUntilExit();
  } finally {
    process.stdout.write('\x1b[?1049l');
    clearInterval(timer);
    if (stopTimer) clearTimeout(stopTimer);
    writer?.close();
  }
  if (chosen !== undefined) return { trace: chosen };
  writeText(renderWatch(model.report({ top: o.top, aliases: aliasesOf, ...(merged !== undefined ? { merged } : {}) })));
  return 0;
}

/**
 * The watch report as text, fitted to `width` columns: narrow terminals lose the trend, then the rates, never a row;
 * the live command for each growing row is a line of its own under its table, never split (issue 22 item 15).
 */
export function renderWatch(r: WatchReport, width = textWidth()): string {
  const out: string[] = [];
  const secs = r.span.lastTs - r.span.firstTs;
  out.push(`kleak watch — ${r.span.samples} samples over ${secs.toFixed(1)} s`);
  if (r.missedReadings) out.push(`${r.missedReadings.count} reading${r.missedReadings.count > 1 ? 's' : ''} failed and are gaps in the series (the last: ${visible(r.missedReadings.why)})`);
  out.push('kernel memory: ' + r.meminfo.map((m) => `${m.name} ${fmtBytes(m.kb * 1024)} (${signedBytes(m.kbPerMin * 1024)}/min)`).join(' · '));
  for (const m of r.meminfo.filter((x) => x.verdict === 'growing' && x.next)) out.push(`${m.name} is growing: ${command(m.next!)} names who holds it`);
  if (r.mergedCaches) out.push("caches may be merged (no slab_nomerge on the kernel command line): a growing kmalloc-N can hold other caches' objects");
  out.push('');
  type Cache = WatchReport['caches'][number];
  const next = (c: Cache) => (c.liveFilter ? `sudo kleak live ${c.liveFilter}` : `sudo kleak live --cache ${c.name}`);
  out.push(
    ...table<Cache>(
      [
        { head: 'CACHE', width: 22, cell: (c) => fit(c.name, 22) },
        { head: 'OBJSIZE', width: 7, right: true, drop: 2, cell: (c) => String(c.objSize) },
        { head: 'ACTIVE', width: 9, right: true, cell: (c) => fmtCount(c.activeObjs) },
        { head: 'BYTES', width: 10, right: true, cell: (c) => fmtBytes(c.activeBytes) },
        { head: 'OBJS/min', width: 9, right: true, drop: 3, cell: (c) => fmtRate(c.objsPerMin) },
        { head: 'BYTES/min', width: 10, right: true, cell: (c) => signedBytes(c.bytesPerMin) },
        { head: ' TREND', width: 13, drop: 1, cell: (c) => ' ' + sparkline(c.series, 12, true) },
        { head: 'VERDICT', width: 8, cell: (c) => c.verdict + (c.aliases ? ` (${c.aliases} merged caches)` : '') },
      ],
      r.caches,
      width,
    ),
  );
  for (const c of r.caches.filter((x) => x.verdict === 'growing')) out.push(`  ${fit(c.name, 40)} is growing: ${command(next(c))}`);
  for (const c of r.caches.filter((x) => x.stepped).slice(0, 5)) {
    out.push(`  ${fit(c.name, 40)} rose by ${fmtCount(c.stepped!.objects)} objects in whole slabs and stayed (too few steps to call it growing): ${command(c.stepped!.census)} counts them exactly`);
  }
  if (r.memcgs && r.memcgs.length > 0) {
    type Memcg = NonNullable<WatchReport['memcgs']>[number];
    out.push('');
    out.push(
      ...table<Memcg>(
        [
          { head: 'MEMORY CGROUP (kernel memory)', width: 40, cell: (m) => fit(`${m.path}${m.container ? ` (${m.container})` : ''}`, 40) },
          { head: 'BYTES', width: 10, right: true, cell: (m) => fmtBytes(m.bytes) },
          { head: 'BYTES/min', width: 10, right: true, cell: (m) => signedBytes(m.bytesPerMin) },
          { head: ' TREND', width: 13, drop: 1, cell: (m) => ' ' + sparkline(m.series, 12, true) },
          { head: 'VERDICT', width: 8, cell: (m) => m.verdict },
        ],
        r.memcgs,
        width,
      ),
    );
    for (const m of r.memcgs.filter((x) => x.verdict === 'growing' && x.next)) out.push(`  ${fit(m.path, 40)} is growing: ${command(m.next!)}`);
  }
  if (r.dyingMemcgs) {
    const d = r.dyingMemcgs;
    out.push(`dying memory cgroups (removed, still pinned by memory charged to them): ${fmtCount(d.count)} (${fmtRate(d.perMin)}/min) ${d.verdict}${d.verdict === 'growing' ? ': cgroups are removed while what they allocated is still held (page cache, slab objects); kleak live --cgroup on the next one finds what' : ''}`);
  }
  if (r.vmallocCallers && r.vmallocCallers.length > 0) {
    type Caller = NonNullable<WatchReport['vmallocCallers']>[number];
    out.push('');
    out.push(
      ...table<Caller>(
        [
          { head: 'VMALLOC CALLER', width: 30, cell: (v) => fit(`${v.caller}${v.module ? ` [${v.module}]` : ''}`, 30) },
          { head: 'TYPE', width: 8, drop: 2, cell: (v) => fit(v.type, 8) },
          { head: 'AREAS', width: 6, right: true, cell: (v) => fmtCount(v.areas) },
          { head: 'BYTES', width: 10, right: true, cell: (v) => fmtBytes(v.bytes) },
          { head: 'AREAS/min', width: 9, right: true, drop: 3, cell: (v) => fmtRate(v.areasPerMin) },
          { head: 'BYTES/min', width: 10, right: true, cell: (v) => signedBytes(v.bytesPerMin) },
          { head: ' TREND', width: 13, drop: 1, cell: (v) => ' ' + sparkline(v.series, 12, true) },
          { head: 'VERDICT', width: 8, cell: (v) => v.verdict },
        ],
        r.vmallocCallers,
        width,
      ),
    );
    if (r.vmallocCallers.some((v) => v.verdict === 'growing')) out.push(`  growing vmalloc callers: ${command('sudo kleak live --alloc vmalloc --stacks')} names who holds them`);
  }
  return wrapText(out.join('\n') + '\n', width);
}

async function exportWatchMetrics(o: WatchOptions, report: () => WatchReport): Promise<{ tick(): void; stop(): Promise<void> }> {
  if (!o.prometheus && !o.textfile) return { tick: () => undefined, stop: async () => undefined };
  const { watchMetrics, startMetricsExport } = await import('../report/prometheus.js');
  const exp = await startMetricsExport(watchMetrics(report), o);
  return { tick: exp.write, stop: exp.stop };
}

/** The records the kernel keeps that watch reads when they are there, and what turns each on when not. */
const RECORDS = [
  { name: 'allocinfo', path: '/proc/allocinfo', enable: 'a 6.10+ kernel with CONFIG_MEM_ALLOC_PROFILING (sysctl vm.mem_profiling=1)' },
  { name: 'kmemleak', path: '/sys/kernel/debug/kmemleak', enable: 'CONFIG_DEBUG_KMEMLEAK and debugfs mounted (mount -t debugfs none /sys/kernel/debug)' },
] as const;

/** Where SLUB lists the live objects of a cache by allocating location (slub_debug=U): debugfs, or older sysfs. */
function allocTracesPath(cache: string): string | undefined {
  if (!/^[\w.:-]+$/.test(cache)) return undefined;
  return [`/sys/kernel/debug/slab/${cache}/alloc_traces`, `/sys/kernel/slab/${cache}/alloc_calls`].find((p) => existsSync(at(p)));
}

/** Caches read by default: the first ones watch lists that have alloc_traces (each read walks the cache's objects). */
const ALLOC_TRACES_DEFAULT = 5;

class RecordWatch {
  readonly models = new Map<string, RecordsModel>();
  readonly bad = new Map<string, RecordsReport['badLines']>();
  readonly present: string[] = [];
  readonly missing: string[] = [];

  constructor(
    private readonly scan: boolean,
    /** --cache: the caches whose alloc_traces to read; undefined: the first ones listed that have them. */
    private readonly traceCaches: readonly string[] | undefined,
  ) {
    for (const r of RECORDS) {
      if (existsSync(at(r.path))) {
        this.present.push(r.name);
        this.models.set(r.name, new RecordsModel());
        this.bad.set(r.name, []);
      } else this.missing.push(`no ${r.name} (${r.enable})`);
    }
    const named = traceCaches?.filter((c) => allocTracesPath(c) !== undefined) ?? [];
    if (traceCaches !== undefined && named.length < traceCaches.length) {
      const without = traceCaches.filter((c) => !named.includes(c));
      this.missing.push(`no alloc_traces for ${without.join(', ')} (boot with slub_debug=U,${without[0]} and mount debugfs: mount -t debugfs none /sys/kernel/debug)`);
    } else if (traceCaches === undefined && !existsSync(at('/sys/kernel/debug/slab')) && !existsSync(at('/sys/kernel/slab/kmalloc-64/alloc_calls'))) {
      this.missing.push('no SLUB alloc_traces (boot with slub_debug=U, or slub_debug=U,CACHE for one cache, and mount debugfs)');
    }
  }

  /** alloc_traces of the caches asked for (or the first listed that have them): one section each, bytes from the object size. */
  takeAllocTraces(ts: number, listed: readonly { name: string; objSize: number }[]): void {
    const sizes = new Map(listed.map((c) => [c.name, c.objSize]));
    const caches = this.traceCaches ?? listed.map((c) => c.name).filter((c) => allocTracesPath(c) !== undefined).slice(0, ALLOC_TRACES_DEFAULT);
    for (const cache of caches) {
      const path = allocTracesPath(cache);
      const name = `alloc_traces ${cache}`;
      if (path === undefined) continue;
      try {
        const bad = this.bad.get(name) ?? [];
        this.bad.set(name, bad);
        const readings = readAll(recordFormatByName('alloc_traces')!, readFileSync(at(path), 'utf8'), (line, reason) => void (bad.length < 100 && bad.push({ file: at(path), line, reason })));
        const last = readings[readings.length - 1] ?? { sites: [] };
        const size = sizes.get(cache) ?? 0;
        let model = this.models.get(name);
        if (!model) this.models.set(name, (model = new RecordsModel()));
        model.add(ts, { sites: last.sites.map((x) => ({ ...x, bytes: x.count * size })) });
      } catch (err) {
        say(`kleak: reading ${at(path)} failed: ${(err as Error).message}.\n`);
      }
    }
  }

  take(ts: number): void {
    for (const r of RECORDS) {
      const model = this.models.get(r.name);
      if (!model) continue;
      try {
        if (r.name === 'kmemleak' && this.scan) writeFileSync(at(r.path), 'scan');
        const bad = this.bad.get(r.name)!;
        const readings = readAll(recordFormatByName(r.name)!, readFileSync(at(r.path), 'utf8'), (line, reason) => void (bad.length < 100 && bad.push({ file: at(r.path), line, reason })));
        // kmemleak's file holds one report; several readings in it would be copies of one another.
        model.add(ts, readings[readings.length - 1] ?? { sites: [] });
      } catch (err) {
        say(`kleak: reading ${at(r.path)} failed: ${(err as Error).message}; it is left out from now on.\n`);
        this.models.delete(r.name);
      }
    }
  }

  reports(top: number): Record<string, RecordsReport> {
    return Object.fromEntries([...this.models].map(([name, m]) => [name, m.report(name, { badLines: this.bad.get(name) ?? [], notices: [], top })]));
  }
}

/** Runs watch; in the interactive view, resolves with the cache the user chose to trace (or undefined). */
export async function runWatch(o: WatchOptions): Promise<number | { trace: string }> {
  const model = new WatchModel();
  let records: RecordWatch | undefined;
  const finish = () => {
    const r = model.report({ top: o.top, aliases: o.replay ? undefined : aliasesOf, ...(o.replay ? {} : { merged: mergeable() }) });
    const kept = records?.reports(o.top) ?? {};
    if (o.json) writeData(JSON.stringify({ ...r, records: kept }, null, 2) + '\n');
    else writeText(renderWatch(r) + Object.values(kept).map((k) => '\n' + renderRecords(k)).join(''));
    return 0;
  };
  if (o.replay) {
    // Streamed line by line (a day of samples is gigabytes): memory is the model's, not the file's.
    const input = await openReplayInput(o.replay);
    let n = 0;
    let lastNonBlank = 0;
    /** The first bad lines (named) and how many in all: a hostile file may have millions. */
    const bad: number[] = [];
    let badCount = 0;
    const badLine = (lineNo: number) => {
      badCount++;
      if (bad.length < 5) bad.push(lineNo);
      lastBad = lineNo;
    };
    let lastBad = 0;
    await forEachLine(input.stream, (buf, start, end, lineNo) => {
      // Not a capture at all (a device that never ends, a trace given by mistake): said early, not read to its end.
      if (n === 0 && (lineNo > 10_000 || input.bytesRead() > 64 << 20)) {
        throw new InputError(`${o.replay} holds no watch sample in its first ${lineNo.toLocaleString('en-US')} lines: it is not a watch capture (record one with kleak watch --record FILE).`);
      }
      const line = buf.toString('utf8', start, end);
      if (line.trim() === '') return;
      lastNonBlank = lineNo;
      let rec: { kind?: string } & Partial<WatchSample>;
      try {
        rec = JSON.parse(line) as typeof rec;
      } catch {
        // A line cut by a kill (or damaged): counted and named, the rest still read.
        return badLine(lineNo);
      }
      if (rec.kind !== 'watch-sample') return;
      // A sample whose fields are not what a sample holds (a slab of null, a count that is text): bad, and named.
      if (!isWatchSample(rec)) return badLine(lineNo);
      model.add(rec);
      n++;
    }).catch((err: unknown) => {
      throw err instanceof InputError ? err : new InputError(`cannot read ${o.replay}: ${(err as Error).message}.`);
    });
    const damaged = input.damaged?.();
    if (n === 0) throw new InputError(`${o.replay} holds no watch samples${damaged ? ` before its damage (${damaged})` : ''} (record them with kleak watch --record FILE).`);
    if (badCount > 0) {
      const cut = badCount === 1 && lastBad === lastNonBlank ? ', the last one: cut short when the recording stopped' : '';
      say(`kleak: skipped ${badCount.toLocaleString('en-US')} line${badCount > 1 ? 's' : ''} of ${o.replay} that ${badCount > 1 ? 'are' : 'is'} not a whole watch sample (line ${bad.join(', ')}${badCount > bad.length ? ', ...' : ''}${cut}).\n`);
    }
    if (damaged) say(`kleak: ${o.replay} is damaged (${damaged}); the report covers the samples before it.\n`);
    return finish();
  }
  const remote = o.ssh ? new RemoteFiles(o.ssh) : undefined;
  try {
    if (remote) await remote.read();
    ROOT_DIR = remote ? remote.root : o.root && o.root !== '/' ? o.root.replace(/\/+$/, '') : '';
    return await watchHere(o, model, finish, (r) => (records = r), remote);
  } finally {
    remote?.close();
  }
}

/** The watch of this host's files, or of a remote host's copied into a private directory at each reading. */
async function watchHere(o: WatchOptions, model: WatchModel, finish: () => number, setRecords: (r: RecordWatch) => void, remote: RemoteFiles | undefined): Promise<number | { trace: string }> {
  const records = new RecordWatch(o.kmemleakScan === true, o.caches);
  setRecords(records);
  const rec = records;
  if (rec.missing.length > 0) say(`kleak: this kernel keeps ${rec.missing.join('; ')}: watch reads what it has.\n`);
  const writer = o.record ? new SyncLineWriter(o.record, o.force) : undefined;
  writer?.line(JSON.stringify({ kleak: 1, kind: 'header', what: 'watch', intervalSec: o.intervalSec, started: new Date().toISOString() }));
  const takeNow = () => {
    const s = sample();
    model.add(s);
    rec.take(s.ts);
    rec.takeAllocTraces(s.ts, model.report({ top: o.top }).caches);
    writer?.line(JSON.stringify({ kind: 'watch-sample', ...s, ...(o.ssh ? { host: o.ssh.destination } : {}) }));
  };
  // A remote host's files are copied first; a reading still on its way is not asked for twice.
  let busy = false;
  let failed: Error | undefined;
  const take = () => {
    if (!remote) return takeNow();
    if (busy || failed) return;
    busy = true;
    remote.read().then(takeNow, (err: Error) => {
      failed = err;
      say(`kleak: ${err.message}; watch stops here.\n`);
      process.kill(process.pid, 'SIGTERM');
    }).finally(() => (busy = false));
  };
  takeNow();
  const metrics = await exportWatchMetrics(o, () => model.report({ top: o.top, aliases: aliasesOf, merged: mergeable() }));
  // The first reading failing is an error (said above); a later one that fails (out of file descriptors, a
  // copy from the remote host that did not come) is a gap, counted in the report and said when it starts.
  let missing = false;
  const takeAndExport = () => {
    try {
      take();
      if (missing) say('kleak: readings work again.\n');
      missing = false;
    } catch (err) {
      const why = (err as Error).message.replace(/\.$/, '');
      model.miss(why);
      if (!missing) say(`kleak: a reading failed (${why}); it is a gap in the series, and watch goes on.\n`);
      missing = true;
    }
    metrics.tick();
  };
  if (o.tui) {
    try {
      return await watchInTui(o, model, takeAndExport, writer, rec);
    } finally {
      await metrics.stop();
    }
  }
  const stopper = catchStopSignals();
  say(`kleak: watching ${o.ssh ? `${o.ssh.destination}'s ` : ''}/proc/slabinfo, /proc/meminfo and /proc/vmallocinfo every ${o.intervalSec}s; ${o.durationSec ? `for ${o.durationSec}s` : 'Ctrl-C to stop'}${writer ? `; recording to ${writer.path}` : ''}\n`);
  await new Promise<void>((resolve) => {
    const started = Date.now();
    const timer = setInterval(() => {
      takeAndExport();
      if (!o.json) writeText(renderWatch(model.report({ top: o.top, aliases: aliasesOf, merged: mergeable() })) + '\n');
      if (o.durationSec && Date.now() - started >= o.durationSec * 1000 - 1) stop();
    }, o.intervalSec * 1000);
    const stop = () => {
      clearInterval(timer);
      resolve();
    };
    stopper.attach({ stop: async () => stop() });
  });
  stopper.release();
  writer?.close();
  await metrics.stop();
  return finish();
}
