import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import type { KmemEvent } from '../../src/event.js';
import { ndjson } from '../../src/parse/ndjson.js';
import { NdjsonRecorder } from '../../src/report/ndjson-writer.js';
import { parseLines } from '../helpers/collect.js';

const alloc: KmemEvent = { kind: 'alloc', ts: 1.5, ptr: 'ffff888102654000', callSite: 'user_preparse+0x2f', tracepoint: 'kmalloc', bytesAlloc: 4096, bytesReq: 4024, cache: 'kmalloc-4096', pid: 7, comm: 'python3', cpu: 1 };

describe('kleak NDJSON recordings', () => {
  it('replays exactly what the recorder wrote: events, stacks, losses, snapshots, the header', () => {
    const path = `${mkdtempSync(`${tmpdir()}/kleak-nd-`)}/r.ndjson`;
    const rec = new NdjsonRecorder(path, { source: { kind: 'live', backend: 'bpftrace', mode: 'events' }, filter: { bytes: 4096 } });
    rec.event(alloc);
    rec.stack(1, ['user_preparse', '__key_create_or_update']);
    rec.lost(12, 0);
    rec.event({ kind: 'free', ts: 2, ptr: 'ffff888102654000', callSite: '', tracepoint: 'kfree' });
    rec.snapshot({ ts: 3, untracked: 0, sites: [{ callSite: 'user_preparse', allocs: 1, frees: 1, outstanding: 0, outstandingBytes: 0 }] });
    rec.close({ how: 'stopped' });
    const c = parseLines(ndjson, readFileSync(path, 'utf8').trimEnd());
    expect(c.badLines).toEqual([]);
    expect(c.events).toEqual([{ ...alloc }, { kind: 'free', ts: 2, ptr: 'ffff888102654000', callSite: '', tracepoint: 'kfree' }]);
    expect(c.stacks).toEqual([{ cpu: 1, frames: ['user_preparse', '__key_create_or_update'] }]);
    expect(c.lostEvents).toEqual([{ count: 12, cpu: 0 }]);
    expect(c.snapshots[0]!.sites[0]!.allocs).toBe(1);
  });

  it('writes each event as JSON.stringify would (its own serializer, for speed): real events of every parser, awkward text too', async () => {
    const { gunzipSync } = await import('node:zlib');
    const { tracePipe } = await import('../../src/parse/trace-pipe.js');
    const { bpftraceEvents } = await import('../../src/parse/bpftrace-events.js');
    const rec = (n: string) => gunzipSync(readFileSync(new URL(`../../recordings/${n}`, import.meta.url))).toString('utf8');
    const events: KmemEvent[] = [];
    const keep = { event: (e: KmemEvent) => events.push(e), stack: () => {}, lost: () => {}, bad: () => {} };
    for (const [format, name] of [[tracePipe, 'keys29-hashed-stacks.pipe.gz'], [tracePipe, 'alloc7-29-11.pipe.gz'], [bpftraceEvents, 'bt-events19-stacks.out.gz']] as const) {
      const p = format.createParser(keep);
      rec(name).split('\n').forEach((l, i) => p.line(l, i + 1));
      p.end();
    }
    // The tracefs backend's binary events carry whole ns, which the recorder writes without a float.
    const { RawRingDecoder, parseEventFormat } = await import('../../src/sources/tracefs-raw.js');
    const { Kallsyms } = await import('../../src/kernel/kallsyms.js');
    const F = new URL('../sources/fixtures/raw-keys5/', import.meta.url);
    const formats = ['kmalloc', 'kfree', 'kernel_stack'].map((n) => parseEventFormat(readFileSync(new URL(`${n}.format`, F), 'utf8'))!);
    const raw = new RawRingDecoder(formats, { syms: Kallsyms.load(readFileSync(new URL('kallsyms.txt', F), 'utf8')), pageSize: 4096, slab: 'slub', gfpAccount: 0, comm: () => 'python3' });
    const pages = gunzipSync(readFileSync(new URL('cpu0.raw.gz', F)));
    const before = events.length;
    for (let o = 0; o < pages.length; o += 4096) raw.page(pages.subarray(o, o + 4096), 4096, 0, events);
    expect(events.length - before).toBeGreaterThan(500);
        events.push({ ...alloc, comm: 'a "quoted"\\name\u0001', callSite: 'drv_open+0x2a [my\tdrv]', ts: Number.NaN, stack: ['x', 'y "z"'] });
    expect(events.length).toBeGreaterThan(1000);
    expect(events.some((e) => e.allocator !== undefined) && events.some((e) => e.stack !== undefined)).toBe(true);
    const path = `${mkdtempSync(`${tmpdir()}/kleak-nd-`)}/s.ndjson`;
    const r = new NdjsonRecorder(path, {});
    for (const e of events) r.event(e);
    r.close();
    const lines = readFileSync(path, 'utf8').trimEnd().split('\n').slice(1);
    expect(lines).toHaveLength(events.length);
    lines.forEach((l, i) => expect(JSON.parse(l)).toEqual(JSON.parse(JSON.stringify(events[i]))));
  });

  it('the report of a replayed recording names the backend that made it and its filter', () => {
    const e = new Engine();
    const p = ndjson.createParser(e);
    p.line(JSON.stringify({ kleak: 1, kind: 'header', source: { kind: 'live', backend: 'tracefs', mode: 'events' }, filter: { bytes: 4096 } }), 1);
    p.line(JSON.stringify(alloc), 2);
    p.end();
    const r = e.report({ kind: 'replay', format: 'ndjson', path: 'x' });
    expect(r.source.recordedWith).toBe('tracefs events');
    expect(r.filter).toEqual({ bytes: 4096 });
    expect(r.sites[0]!.outstanding).toBe(1);
  });

  it.each([['{not json'], ['[1,2]'], ['{"kind":"mystery"}'], ['{"kind":"alloc","ts":"soon"}']])('reports %j as bad', (line) => {
    expect(parseLines(ndjson, line).badLines).toHaveLength(1);
  });

  it('records with fields of the wrong type are bad lines with their numbers, never wrong numbers or a crash', () => {
    const lines = [
      JSON.stringify({ kleak: 1, kind: 'header' }),
      JSON.stringify({ ...alloc, bytesAlloc: -4096 }),
      JSON.stringify({ ...alloc, stack: 'notarray' }),
      JSON.stringify({ kind: 'lost', count: -5 }),
      JSON.stringify({ kind: 'lost', count: 1e400 }),
      JSON.stringify({ kind: 'snapshot', ts: 1, untracked: 0, sites: [null] }),
      JSON.stringify({ kind: 'snapshot', ts: 1, untracked: 0, sites: [], outstanding: [{ ptr: 5 }] }),
      JSON.stringify(alloc),
      JSON.stringify({ kind: 'end', how: 'stopped' }),
    ];
    const c = parseLines(ndjson, lines);
    expect(c.badLines.map((b) => b.lineNo)).toEqual([2, 3, 4, 5, 6, 7]);
    expect(c.events).toHaveLength(1);
    expect(c.lostEvents).toEqual([]);
  });

  it('a recording with no end record (kleak killed, a full disk) replays with a notice that it was cut short', () => {
    const e = new Engine();
    const p = ndjson.createParser(e);
    p.line(JSON.stringify({ kleak: 1, kind: 'header', source: { kind: 'live', backend: 'kernel', mode: 'pairs' } }), 1);
    p.line(JSON.stringify(alloc), 2);
    p.end();
    expect(e.report({ kind: 'replay', format: 'ndjson' }).notices.map((n) => n.text).join(' ')).toMatch(/no end record: kleak was stopped before it finished/);
    const whole = new Engine();
    const q = ndjson.createParser(whole);
    q.line(JSON.stringify({ kleak: 1, kind: 'header' }), 1);
    q.line(JSON.stringify({ kind: 'end', how: 'stopped' }), 2);
    q.end();
    expect(whole.report({ kind: 'replay', format: 'ndjson' }).notices.map((n) => n.text).join(' ')).not.toMatch(/no end record/);
  });
});
