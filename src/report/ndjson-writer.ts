// Recordings on disk. kleak's NDJSON recording: every ParseSink call as one JSON line (src/parse/ndjson.ts reads them back), so a
// recording replays to the same answer as the live run. Written with synchronous appends in small batches: what
// was recorded survives Ctrl-C, an exception or bpftrace dying; a SIGKILL loses at most the last batch.

import { closeSync, ftruncateSync } from 'node:fs';
import { PartialWriteError, createPrivateFile, writeAll } from './private-file.js';
import type { KernelSnapshot, KmemEvent, ParseSink } from '../event.js';
import { say } from '../output.js';

const FLUSH_BYTES = 64 * 1024;
const FLUSH_MS = 200;

/**
 * Appends lines to a file in small synchronous batches; what was written survives a crash or Ctrl-C. A write that
 * fails (a full disk) ends the file at its last whole batch and stops writing for good: a file that went on after
 * space returned would have a hole, and one cut inside a line would not read back.
 */
export class SyncLineWriter {
  private fd: number;
  private buf = '';
  private bufLines = 0;
  private timer: NodeJS.Timeout;
  /** Why writing stopped, once it has. */
  failed: string | undefined;
  private readonly onExit = () => this.flush();
  /** Lines handed to the writer. */
  lines = 0;
  /** Lines (and bytes) that are in the file. */
  written = 0;
  bytes = 0;

  constructor(
    readonly path: string,
    force = false,
  ) {
    this.fd = createPrivateFile(path, force);
    this.timer = setInterval(() => this.flush(), FLUSH_MS);
    this.timer.unref();
    process.on('exit', this.onExit);
  }

  line(text: string): void {
    this.lines++;
    if (this.failed !== undefined) return;
    this.buf += text + '\n';
    this.bufLines++;
    if (this.buf.length >= FLUSH_BYTES) this.flush();
  }

  flush(): void {
    if (this.buf.length === 0 || this.fd < 0 || this.failed !== undefined) return;
    const data = Buffer.from(this.buf);
    this.buf = '';
    try {
      writeAll(this.fd, data, this.path);
      this.written += this.bufLines;
      this.bytes += data.length;
    } catch (err) {
      // A full disk (or /dev/full) is the user's to fix, said once; tracing and the report go on. (This runs from a
      // timer and at exit: throwing would lose the report.) The whole lines of the batch that reached the disk stay.
      const reached = err instanceof PartialWriteError ? err.written : 0;
      const whole = reached > 0 ? data.lastIndexOf(10, reached - 1) + 1 : 0;
      if (whole > 0) {
        let n = 0;
        for (let i = data.indexOf(10); i >= 0 && i < whole; i = data.indexOf(10, i + 1)) n++;
        this.written += n;
        this.bytes += whole;
      }
      try {
        ftruncateSync(this.fd, this.bytes);
      } catch {
        // A file that cannot be cut back keeps its partial line; the sentence below still says what is whole.
      }
      this.failed = `${(err as Error).message}; ${this.path} keeps the first ${this.written.toLocaleString('en-US')} lines (${this.bytes.toLocaleString('en-US')} bytes) and nothing after them`;
      say(`kleak: ${this.failed}.\n`);
    }
    this.bufLines = 0;
  }

  close(): void {
    if (this.fd < 0) return;
    this.flush();
    clearInterval(this.timer);
    process.off('exit', this.onExit);
    closeSync(this.fd);
    this.fd = -1;
  }
}

export class NdjsonRecorder implements ParseSink {
  private readonly out: SyncLineWriter;
  private header: Record<string, unknown> | undefined;

  /** The file is created at once (a bad path fails before tracing starts); the header goes with the first record. */
  constructor(
    readonly path: string,
    header: Record<string, unknown>,
    force = false,
  ) {
    this.out = new SyncLineWriter(path, force);
    this.header = { kleak: 1, kind: 'header', ...header };
  }

  /** The backend that really runs (the default picks one while starting): said in the header. */
  source(info: Record<string, unknown>): void {
    if (this.header) this.header = { ...this.header, source: info };
    this.writeHeader();
  }

  private writeHeader(): void {
    if (!this.header) return;
    const h = this.header;
    this.header = undefined;
    this.out.line(JSON.stringify(h));
    this.out.flush();
  }

  get records(): number {
    return this.out.lines;
  }

  event(e: KmemEvent): void {
    this.writeHeader();
    this.out.line(this.eventLine(e));
  }

  /** Call sites, comms and cache names repeat: each is encoded once. */
  private readonly encoded = new Map<string, string>();
  private enc(t: string): string {
    let j = this.encoded.get(t);
    if (j === undefined) {
      j = JSON.stringify(t);
      if (this.encoded.size < 100_000) this.encoded.set(t, j);
    }
    return j;
  }

  /**
   * One event as JSON.stringify would write it (its toJSON, undefined fields left out), built by hand: under a busy
   * kernel the recorder writes every event, and JSON.stringify of each object made the live reader fall behind.
   */
  private eventLine(e: KmemEvent): string {
    // A pointer is hex digits (or a hashed pointer's): nothing to escape, and too many distinct ones to cache.
    const ptr = e.ptr;
    let l = `{"kind":"${e.kind}","ts":${e.tsNs !== undefined ? seconds(e.tsNs) : num(e.ts)},"ptr":${PLAIN.test(ptr) ? `"${ptr}"` : JSON.stringify(ptr)},"callSite":${this.enc(e.callSite)}`;
    if (e.bytesReq !== undefined) l += `,"bytesReq":${num(e.bytesReq)}`;
    if (e.bytesAlloc !== undefined) l += `,"bytesAlloc":${num(e.bytesAlloc)}`;
    if (e.cache !== undefined) l += `,"cache":${this.enc(e.cache)}`;
    l += `,"tracepoint":${this.enc(e.tracepoint)}`;
    if (e.pid !== undefined) l += `,"pid":${num(e.pid)}`;
    if (e.comm !== undefined) l += `,"comm":${this.enc(e.comm)}`;
    if (e.cgroup !== undefined) l += `,"cgroup":${this.enc(e.cgroup)}`;
    if (e.cpu !== undefined) l += `,"cpu":${num(e.cpu)}`;
    if (e.stack !== undefined) l += `,"stack":[${e.stack.map((f) => this.enc(f)).join(',')}]`;
    if (e.allocator !== undefined) l += `,"allocator":"${e.allocator}"`;
    return l + '}';
  }
  stack(cpu: number, frames: string[]): void {
    this.push({ kind: 'stack', cpu, frames });
  }
  lost(count: number, cpu?: number): void {
    this.push({ kind: 'lost', count, ...(cpu !== undefined ? { cpu } : {}) });
  }
  bad(): void {
    // Bad lines of the tracer's output are counted by the engine; the recording keeps only what parsed.
  }
  snapshot(s: KernelSnapshot): void {
    this.push({ kind: 'snapshot', ...s });
  }

  private push(o: object): void {
    this.writeHeader();
    this.out.line(JSON.stringify(o));
  }

  close(trailer?: Record<string, unknown>): void {
    if (trailer) this.push({ kind: 'end', ...trailer });
    this.writeHeader();
    this.out.close();
  }
}

/** Text JSON writes as it is, between quotes. */
const PLAIN = /^[\w.+ -]*$/;

/**
 * Whole ns as decimal seconds, from integers (a float's shortest form took 300 ns). It parses back to ns / 1e9
 * exactly: both are the double nearest the same decimal value.
 */
function seconds(ns: number): string {
  if (!Number.isSafeInteger(ns) || ns < 0) return num(ns / 1e9);
  const s = Math.floor(ns / 1e9);
  return `${s}.${String(ns - s * 1e9).padStart(9, '0')}`;
}

/** A number as JSON writes it (NaN and infinities are null). */
function num(n: number): string {
  return Number.isFinite(n) ? String(n) : 'null';
}

/** Feeds every sink call to several sinks (the engine and a recorder). */
export function teeSink(...sinks: ParseSink[]): ParseSink {
  return {
    event: (e) => sinks.forEach((s) => s.event(e)),
    stack: (cpu, f) => sinks.forEach((s) => s.stack(cpu, f)),
    lost: (n, cpu) => sinks.forEach((s) => s.lost(n, cpu)),
    bad: (l, r) => sinks.forEach((s) => s.bad(l, r)),
    snapshot: (snap) => sinks.forEach((s) => s.snapshot?.(snap)),
  };
}
