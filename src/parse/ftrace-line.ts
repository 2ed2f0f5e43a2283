// Tokenizer for the header that trace_pipe and `trace-cmd report` lines share:
//   [instance: ]comm-pid [(tgid)] [cpu] [flags] secs.usecs: event: body
// Hand-written over the line's bytes rather than a regex over a string, numbers parsed in place and known event
// names matched without making strings: this runs once per line at millions of lines a second, and a byte loop
// over a Buffer measured ~3x faster here than charCodeAt over a sliced line (scripts/bench-replay).

export interface FtraceHeader {
  /** End of a leading "instance: " prefix (trace-cmd -B / extract -B), or -1; sliced only on demand. */
  instanceEnd: number;
  /** Where comm (with its padding) starts and ends in the line: read only for allocations (KmemFieldReader). */
  commStart: number;
  commEnd: number;
  pid: number;
  cpu: number;
  ts: number;
  event: string;
  /** The event is one of the kmem allocation or free tracepoints. */
  kmem: boolean;
  /** Index just after "event:"; the text may start with padding. */
  bodyStart: number;
  /** The line had only a timestamp before the event (no comm, pid, CPU or flags): pid is -1, comm empty. */
  bare: boolean;
}

const SPACE = 32;
const ZERO = 48;
const NINE = 57;

function isDigit(c: number | undefined): boolean {
  return (c as number) >= ZERO && (c as number) <= NINE;
}

/**
 * Finds "[ddd]" preceded by a space (the CPU column) in [from, end); comm may hold spaces, dashes, colons and
 * brackets.
 */
function findCpuColumn(buf: Buffer, from: number, end: number): number {
  for (let i = from + 1; i < end; i++) {
    if (buf[i] !== 91 /* [ */ || buf[i - 1] !== SPACE || !isDigit(buf[i + 1])) continue;
    let j = i + 2;
    while (isDigit(buf[j])) j++;
    if (buf[j] === 93 /* ] */ && j < end) return i;
  }
  return -1;
}

function nameIs(buf: Buffer, at: number, name: string): boolean {
  for (let k = 1; k < name.length; k++) if (buf[at + k] !== name.charCodeAt(k)) return false;
  return buf[at + name.length] === 58 /* : */;
}

/** The kmem and stack event names, told apart by a letter or two and then compared in full; undefined for any other. */
function knownEvent(buf: Buffer, i: number): string | undefined {
  if (buf[i] !== 107 /* k */) return undefined;
  let name: string;
  const c1 = buf[i + 1];
  if (c1 === 102 /* f */) name = 'kfree';
  else if (c1 === 101 /* e */) name = 'kernel_stack';
  else if (c1 !== 109 /* m */) return undefined;
  else if (buf[i + 2] === 97 /* a */) name = buf[i + 7] === 95 /* _ */ ? 'kmalloc_node' : 'kmalloc';
  else if (buf[i + 11] === 102 /* f */) name = 'kmem_cache_free';
  else name = buf[i + 16] === 95 /* _ */ ? 'kmem_cache_alloc_node' : 'kmem_cache_alloc';
  return nameIs(buf, i, name) ? name : undefined;
}

/** Parses the header of the line [start, end) of `buf` into `h` (reused, so no object per line); false when it has none. */
export function readFtraceHeader(buf: Buffer, lineStart: number, end: number, h: FtraceHeader): boolean {
  let start = lineStart;
  h.instanceEnd = -1;
  // comm is printed right-aligned in 16 columns and is at most 15 characters, so an event line starts with a
  // space unless trace-cmd put a buffer-instance (or file) name in front of it.
  if (buf[start] !== SPACE) {
    let colon = start;
    while (colon < end - 1 && !(buf[colon] === 58 && buf[colon + 1] === SPACE)) colon++;
    if (colon < end - 1 && colon > start) {
      const bracket = findCpuColumn(buf, start, end);
      if (bracket > colon) {
        h.instanceEnd = colon;
        start = colon + 2;
      }
    }
  }
  h.bare = false;
  const open = findCpuColumn(buf, start, end);
  if (open < 0) return readBareHeader(buf, start, end, h);
  // comm-pid: walk back over padding, the pid, then the dash (comm itself may contain dashes).
  let e = open - 1;
  while (e > start && buf[e] === SPACE) e--;
  // trace_pipe with options/record-tgid prints "(tgid)" between pid and cpu.
  if (buf[e] === 41 /* ) */) {
    let p = e;
    while (p > start && buf[p] !== 40 /* ( */) p--;
    if (buf[p] !== 40) return false;
    e = p - 1;
    while (e > start && buf[e] === SPACE) e--;
  }
  let d = e;
  let pid = 0;
  let mul = 1;
  while (d > start && isDigit(buf[d])) {
    pid += (buf[d]! - ZERO) * mul;
    mul *= 10;
    d--;
  }
  if (d === e || buf[d] !== 45 /* - */) return false;
  // comm's leading padding is trimmed only when comm is needed.
  h.commStart = start;
  h.commEnd = d;
  h.pid = pid;

  let i = open + 1;
  let cpu = 0;
  while (isDigit(buf[i])) cpu = cpu * 10 + buf[i++]! - ZERO;
  h.cpu = cpu;
  i++; // ']'
  // Next token: flags (".....", ".N..", "d..1.") or already the timestamp "secs.frac:".
  for (let tries = 0; ; tries++) {
    while (i < end && buf[i] === SPACE) i++;
    const after = readTimestamp(buf, i, end, h);
    if (after >= 0) {
      i = after;
      break;
    }
    if (tries === 1) return false;
    while (i < end && buf[i] !== SPACE) i++;
    if (i >= end) return false;
  }
  return readEvent(buf, i, end, h);
}

/** "secs.frac: " at i: sets h.ts and returns the index after it, or -1. */
function readTimestamp(buf: Buffer, i: number, end: number, h: FtraceHeader): number {
  if (!isDigit(buf[i])) return -1;
  let j = i;
  let secs = 0;
  while (isDigit(buf[j])) secs = secs * 10 + buf[j++]! - ZERO;
  let frac = 0;
  let scale = 1;
  if (buf[j] === 46 /* . */) {
    j++;
    while (isDigit(buf[j])) {
      frac = frac * 10 + buf[j++]! - ZERO;
      scale *= 10;
    }
  }
  if (buf[j] !== 58 /* : */ || buf[j + 1] !== SPACE || j + 1 >= end) return -1;
  h.ts = secs + frac / scale;
  return j + 2;
}

/**
 * A line with only a timestamp before its event ("  270.088368: kfree: call_site=…", as some tools and trimmed
 * copies print it, in the printk and the field-list style): read with no comm, pid (-1) or CPU (0).
 */
function readBareHeader(buf: Buffer, start: number, end: number, h: FtraceHeader): boolean {
  let i = start;
  while (i < end && buf[i] === SPACE) i++;
  const after = readTimestamp(buf, i, end, h);
  if (after < 0) return false;
  h.bare = true;
  h.commStart = i;
  h.commEnd = i;
  h.pid = -1;
  h.cpu = 0;
  return readEvent(buf, after, end, h);
}

/** The event name at i (after the timestamp) and where its body starts. */
function readEvent(buf: Buffer, from: number, end: number, h: FtraceHeader): boolean {
  let i = from;
  while (i < end && buf[i] === SPACE) i++;
  let event = knownEvent(buf, i);
  h.kmem = event !== undefined && event !== 'kernel_stack';
  let colon: number;
  if (event !== undefined) colon = i + event.length;
  else {
    colon = i;
    while (colon < end && buf[colon] !== 58 /* : */) colon++;
    // "<stack trace>" and "<user stack trace>" records have no body and no colon.
    if (colon >= end) {
      h.event = latin1(buf, i, end).trimEnd();
      h.bodyStart = end;
      return true;
    }
    event = latin1(buf, i, colon);
  }
  h.event = event;
  // The body may start with padding (trace-cmd pads the name to 20 columns); field lookups search past it.
  h.bodyStart = colon + 1;
  return true;
}

/** Bytes [start, end) of `buf` as a latin1 string. */
export function latin1(buf: Buffer, start: number, end: number): string {
  return buf.toString('latin1', start, end);
}

export function newFtraceHeader(): FtraceHeader {
  return { instanceEnd: -1, commStart: 0, commEnd: 0, pid: 0, cpu: 0, ts: 0, event: '', kmem: false, bodyStart: 0, bare: false };
}

/** The header as a fresh object with comm sliced out (for tests and tools; parsers use readFtraceHeader). */
export function parseFtraceHeader(
  line: string,
): (Omit<FtraceHeader, 'commStart' | 'commEnd' | 'instanceEnd' | 'kmem' | 'bare'> & { comm: string; instance: string | undefined }) | undefined {
  const buf = Buffer.from(line, 'latin1');
  const h = newFtraceHeader();
  if (!readFtraceHeader(buf, 0, buf.length, h)) return undefined;
  const { commStart, commEnd, instanceEnd, kmem: _kmem, bare: _bare, ...rest } = h;
  return { ...rest, comm: latin1(buf, commStart, commEnd).trimStart(), instance: instanceEnd >= 0 ? latin1(buf, 0, instanceEnd) : undefined };
}

/** "CPU:1 [LOST 1234 EVENTS]" (trace_pipe), "CPU:1 [1234 EVENTS DROPPED]" / "CPU:1 [EVENTS DROPPED]" (trace-cmd). */
export function parseLostLine(line: string): { cpu: number; count: number } | undefined {
  const at = line.indexOf('CPU:');
  if (at < 0 || (at > 0 && line.charCodeAt(at - 1) !== SPACE)) return undefined;
  const m = /^CPU:(\d+) \[(?:LOST (\d+) EVENTS|(\d+) EVENTS DROPPED|EVENTS DROPPED)\]/.exec(line.slice(at));
  if (!m) return undefined;
  const n = m[2] ?? m[3];
  // An unknown count still means at least one event is missing.
  return { cpu: Number(m[1]), count: n === undefined ? 1 : Number(n) };
}
