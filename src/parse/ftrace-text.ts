// The machinery shared by the two ftrace text formats (trace-cmd report, raw trace_pipe): header tokenizer,
// kmem fields, lost-event lines and stack blocks. Each format file configures it and adds its own sniffing.

import { allocatorCaller } from '../engine/stacks.js';
import type { KmemEvent, LineParser, ParseSink, SlabAllocator, Tracepoint } from '../event.js';
import { ALLOCATOR_EVENTS, noStackSite, readAllocatorEvent } from './allocator-fields.js';
import { latin1, newFtraceHeader, parseLostLine, readFtraceHeader } from './ftrace-line.js';
import { KmemFieldReader, kmallocLabels } from './kmem-fields.js';

/** Event names that open a stack block: trace-cmd's `kernel_stack` event, trace_pipe's `<stack trace>`. */
const STACK_EVENTS: ReadonlySet<string> = new Set(['kernel_stack', '<stack trace>', '<stack trace >']);
const USER_STACK_EVENTS: ReadonlySet<string> = new Set(['user_stack', '<user stack trace>']);

/**
 * One frame line of a stack block → function name (offsets and addresses dropped, as stacks group by function):
 * trace-cmd "=> user_preparse (ffffffff81a7f28f)", "=> foo+0x1c  (ffff…)", "=> ffffffff81234567";
 * trace_pipe " => user_preparse", " => user_preparse+0x2f/0x70".
 */
export function stackFrame(line: string): string | undefined {
  const at = line.indexOf('=> ');
  if (at < 0) return undefined;
  for (let i = 0; i < at; i++) if (line.charCodeAt(i) !== 32) return undefined;
  let s = at + 3;
  let e = s;
  while (e < line.length && line.charCodeAt(e) !== 32 && line.charCodeAt(e) !== 43 /* + */) e++;
  if (e === s) return undefined;
  let frame = line.slice(s, e);
  const mod = line.indexOf(' [', e);
  if (mod > 0 && line.indexOf(']', mod) > mod) frame += line.slice(mod, line.indexOf(']', mod) + 1);
  return frame;
}

/** The kmem events as a trimmed excerpt starts ("kmalloc: call_site=…"). */
const TRIMMED_EVENT = /^(kmalloc|kfree|kmem_cache_alloc|kmem_cache_free|kmalloc_node|kmem_cache_alloc_node): +(?=call_site=|\()/;

/** Lines that carry no event and are not errors: headers, comments, blank lines. */
function isHeaderLine(line: string): boolean {
  if (line.length === 0 || line.charCodeAt(0) === 35 /* # */) return true;
  const t = line.trimStart();
  return (
    t.length === 0 ||
    /^(?:[\w.-]+: )?cpus=\d+$/.test(t) ||
    /^version = \d+$/.test(t) ||
    /^CPU \d+ is empty$/.test(t) ||
    t.startsWith('trace-cmd: ') ||
    t.startsWith('TRACE_CLOCK')
  );
}

export interface FtraceTextOptions {
  /** Bytes per page, for the page allocator's orders (4096 unless the trace's machine said otherwise). */
  pageSize?: number;
  /** The traced kernel's slab allocator (SLUB unless said): which kmalloc sizes have kmalloc-N caches. */
  slab?: SlabAllocator;
}

export class FtraceTextParser implements LineParser {
  private stackCpu = -1;
  private frames: string[] = [];
  private inUserStack = false;
  private readonly header = newFtraceHeader();
  private readonly fields: KmemFieldReader;
  /**
   * vmalloc areas and page allocations waiting for the stack that follows each, by CPU: they have no call site, so
   * their stack names the caller, and the engine gets them only once it is known. A live reader can see another
   * CPU's line between an event and its stack (the stacktrace trigger commits the stack after the event), so an
   * allocation waits until its own CPU's next line.
   */
  private readonly pending = new Map<number, KmemEvent>();
  private readonly pageSize: number;

  constructor(
    private readonly sink: ParseSink,
    o: FtraceTextOptions = {},
  ) {
    this.pageSize = o.pageSize ?? 4096;
    this.fields = new KmemFieldReader(kmallocLabels(o.slab, this.pageSize));
  }

  line(text: string, lineNo: number): void {
    const buf = Buffer.from(text, 'latin1');
    this.bytes(buf, 0, buf.length, lineNo);
  }

  bytes(buf: Buffer, start: number, lineEnd: number, lineNo: number): void {
    const end = lineEnd > start && buf[lineEnd - 1] === 13 ? lineEnd - 1 : lineEnd;
    if (this.stackCpu >= 0 || this.inUserStack) {
      // Frame lines ("   => func") are the only ones not worth the header tokenizer.
      let i = start;
      while (i < end && buf[i] === 32) i++;
      if (buf[i] === 61 /* = */ && buf[i + 1] === 62 /* > */) {
        const frame = stackFrame(latin1(buf, start, end));
        if (frame !== undefined) {
          if (!this.inUserStack) this.frames.push(frame);
          return;
        }
      }
    }
    this.flushStack();
    this.inUserStack = false;

    const h = this.header;
    if (!readFtraceHeader(buf, start, end, h)) {
      if (this.trimmed(buf, start, end, lineNo)) return;
      const text = latin1(buf, start, end);
      const lost = parseLostLine(text);
      if (lost) this.sink.lost(lost.count, lost.cpu);
      else if (!isHeaderLine(text)) this.sink.bad(lineNo, 'not an ftrace event line');
      return;
    }
    const ev = h.event;
    if (h.bare && h.kmem && this.bareLines++ === 0) {
      this.sink.notice?.('lines with only a timestamp before the event (no task, pid or CPU) were read without pid, comm or CPU: their objects have ages, but no process.');
    }
    if (STACK_EVENTS.has(ev)) {
      this.stackCpu = h.cpu;
      return;
    }
    if (this.pending.size > 0) this.emitPending(h.cpu);
    if (h.kmem) {
      const r = this.fields.read(ev as Tracepoint, buf, h.bodyStart, end, h.ts, h.pid, h.commStart, h.commEnd, h.cpu);
      if (typeof r === 'string') {
        if (r !== 'null') this.sink.bad(lineNo, r);
      } else {
        this.sink.event(r);
        if (this.fields.oddSize !== undefined && !this.saidOddSize) this.sayOddSize(lineNo);
      }
    } else if (USER_STACK_EVENTS.has(ev)) {
      this.inUserStack = true;
    } else if (ALLOCATOR_EVENTS.has(ev)) {
      let c = h.commStart;
      while (c < h.commEnd && buf[c] === 32) c++;
      const at = { ts: h.ts, pid: h.pid, cpu: h.cpu, comm: latin1(buf, c, h.commEnd) };
      const r = readAllocatorEvent(ev, latin1(buf, h.bodyStart, end), at, this.pageSize);
      if (typeof r === 'string') {
        if (r !== 'null') this.sink.bad(lineNo, r);
      } else if (r.kind === 'alloc' && (r.allocator === 'vmalloc' || r.allocator === 'page')) {
        this.pending.set(h.cpu, r);
      } else {
        // A free of an allocation still waiting for its stack (freed at once, on another CPU) comes after it.
        if (this.pending.size > 0) for (const [cpu, p] of this.pending) if (p.ptr === r.ptr) this.emitPending(cpu);
        this.sink.event(r);
      }
    }
    // Any other tracepoint is not ours: neither an event nor a bad line.
  }

  end(): void {
    this.flushStack();
    for (const cpu of [...this.pending.keys()]) this.emitPending(cpu);
  }

  private trimmedLines = 0;
  private bareLines = 0;
  private saidOddSize = false;

  /** A kmalloc size no kmalloc-N cache has: the labels assume SLUB (or SLAB), and that is said once. */
  private sayOddSize(lineNo: number): void {
    this.saidOddSize = true;
    this.sink.notice?.(
      `line ${lineNo} has a kmalloc of ${this.fields.oddSize} bytes allocated, a size no kmalloc-N cache has: a SLOB kernel's (replay with --slab-allocator slob to label them "slob") or slub_debug's padding; kmalloc-N labels here are by that size.`,
    );
  }

  /**
   * An excerpt whose "comm-pid [cpu] flags ts:" prefix was trimmed by whoever pasted it ("kmalloc: call_site=… ptr=…"):
   * its fields are read, with no time, pid or CPU; the report says so. False when the line is not one.
   */
  private trimmed(buf: Buffer, start: number, end: number, lineNo: number): boolean {
    let i = start;
    while (i < end && buf[i] === 32) i++;
    const m = TRIMMED_EVENT.exec(latin1(buf, i, Math.min(end, i + 32)));
    if (!m) return false;
    const r = this.fields.read(m[1] as Tracepoint, buf, i + m[0].length, end, 0, -1, i, i, 0);
    if (typeof r === 'string') {
      if (r !== 'null') this.sink.bad(lineNo, r);
    } else {
      this.sink.event(r);
    }
    if (this.trimmedLines++ === 0) {
      this.sink.notice?.('lines without their "comm-pid [cpu] flags timestamp:" prefix (trimmed when pasted) were read without time, pid or CPU: their objects have no age and their sites no growth over time.');
    }
    return true;
  }

  private flushStack(): void {
    if (this.stackCpu >= 0) {
      const p = this.pending.get(this.stackCpu);
      if (p !== undefined && (p.allocator === 'vmalloc' || p.allocator === 'page')) {
        // The stack of the vmalloc area or page read last on this CPU: its first frame outside the allocator is the caller.
        this.pending.set(this.stackCpu, { ...p, stack: this.frames, callSite: allocatorCaller(p.allocator, this.frames) ?? noStackSite(p.allocator) });
        this.emitPending(this.stackCpu);
      } else if (this.frames.length > 0) this.sink.stack(this.stackCpu, this.frames);
      this.frames = [];
      this.stackCpu = -1;
    }
  }

  private emitPending(cpu: number): void {
    const p = this.pending.get(cpu);
    if (p === undefined) return;
    this.pending.delete(cpu);
    this.sink.event(p);
  }
}
