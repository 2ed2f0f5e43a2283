// Tokenizer for the header that trace_pipe and `trace-cmd report` lines share:
//   [instance: ]comm-pid [(tgid)] [cpu] [flags] secs.usecs: event: body
// Hand-written rather than a regex, numbers parsed in place and known event names matched without slicing:
// this runs once per line at millions of lines a second (scripts/bench-replay).

export interface FtraceHeader {
  /** End of a leading "instance: " prefix (trace-cmd -B / extract -B), or -1; sliced only on demand. */
  instanceEnd: number;
  /** Where comm (with its padding) starts and ends in the line: sliced only when an event needs it (commText). */
  commStart: number;
  commEnd: number;
  pid: number;
  cpu: number;
  ts: number;
  event: string;
  /** Index in the line just after "event:"; the text may start with padding. */
  bodyStart: number;
}

const SPACE = 32;
const ZERO = 48;
const NINE = 57;

function isDigit(c: number): boolean {
  return c >= ZERO && c <= NINE;
}

/** Finds "[ddd]" preceded by a space (the CPU column); comm may hold spaces, dashes, colons and brackets. */
function findCpuColumn(line: string, from: number): number {
  let i = line.indexOf('[', from);
  while (i > 0) {
    if (line.charCodeAt(i - 1) === SPACE && isDigit(line.charCodeAt(i + 1))) {
      let j = i + 2;
      while (isDigit(line.charCodeAt(j))) j++;
      if (line.charCodeAt(j) === 93 /* ] */) return i;
    }
    i = line.indexOf('[', i + 1);
  }
  return -1;
}

/**
 * The kmem and stack event names, matched in place by their first letters (cheaper than startsWith against each
 * name, measured); undefined for any other event.
 */
function knownEvent(line: string, i: number): string | undefined {
  if (line.charCodeAt(i) !== 107 /* k */) return undefined;
  const c1 = line.charCodeAt(i + 1);
  let name: string;
  if (c1 === 102 /* f */) name = 'kfree';
  else if (c1 === 101 /* e */) name = 'kernel_stack';
  else if (c1 === 109 /* m */) {
    if (line.charCodeAt(i + 2) === 97 /* a */) name = line.charCodeAt(i + 7) === 95 /* _ */ ? 'kmalloc_node' : 'kmalloc';
    else {
      // kmem_cache_alloc, kmem_cache_alloc_node, kmem_cache_free
      const c11 = line.charCodeAt(i + 11);
      name = c11 === 102 ? 'kmem_cache_free' : line.charCodeAt(i + 16) === 95 ? 'kmem_cache_alloc_node' : 'kmem_cache_alloc';
    }
  } else return undefined;
  // The colon at the name's length plus the letters tested above tell these names apart; comparing every letter
  // measurably slows the per-line path and no other tracepoint shares those letters and length.
  return line.charCodeAt(i + name.length) === 58 /* : */ && line.charCodeAt(i + 3) === name.charCodeAt(3) ? name : undefined;
}

/** Parses the header into `h` (reused across lines, so no object per line); false when the line has none. */
export function readFtraceHeader(line: string, h: FtraceHeader): boolean {
  let start = 0;
  h.instanceEnd = -1;
  // comm is printed right-aligned in 16 columns and is at most 15 characters, so an event line starts with a
  // space unless trace-cmd put a buffer-instance (or file) name in front of it.
  if (line.charCodeAt(0) !== SPACE) {
    const colon = line.indexOf(': ');
    if (colon > 0) {
      const bracket = findCpuColumn(line, 0);
      if (bracket > colon) {
        h.instanceEnd = colon;
        start = colon + 2;
      }
    }
  }
  const open = findCpuColumn(line, start);
  if (open < 0) return false;
  // comm-pid: walk back over padding, the pid, then the dash (comm itself may contain dashes).
  let e = open - 1;
  while (e > start && line.charCodeAt(e) === SPACE) e--;
  // trace_pipe with options/record-tgid prints "(tgid)" between pid and cpu.
  if (line.charCodeAt(e) === 41 /* ) */) {
    const p = line.lastIndexOf('(', e);
    if (p < 0) return false;
    e = p - 1;
    while (e > start && line.charCodeAt(e) === SPACE) e--;
  }
  let d = e;
  let pid = 0;
  let mul = 1;
  while (d > start && isDigit(line.charCodeAt(d))) {
    pid += (line.charCodeAt(d) - ZERO) * mul;
    mul *= 10;
    d--;
  }
  if (d === e || line.charCodeAt(d) !== 45 /* - */) return false;
  // comm's leading padding is trimmed only when comm is needed (commText).
  h.commStart = start;
  h.commEnd = d;
  h.pid = pid;

  let i = open + 1;
  let cpu = 0;
  while (isDigit(line.charCodeAt(i))) cpu = cpu * 10 + line.charCodeAt(i++) - ZERO;
  h.cpu = cpu;
  i++; // ']'
  // Next token: flags (".....", ".N..", "d..1.") or already the timestamp "secs.frac:".
  for (let tries = 0; ; tries++) {
    while (line.charCodeAt(i) === SPACE) i++;
    if (isDigit(line.charCodeAt(i))) {
      let j = i;
      let secs = 0;
      while (isDigit(line.charCodeAt(j))) secs = secs * 10 + line.charCodeAt(j++) - ZERO;
      let frac = 0;
      let scale = 1;
      if (line.charCodeAt(j) === 46 /* . */) {
        j++;
        while (isDigit(line.charCodeAt(j))) {
          frac = frac * 10 + line.charCodeAt(j++) - ZERO;
          scale *= 10;
        }
      }
      if (line.charCodeAt(j) === 58 /* : */ && line.charCodeAt(j + 1) === SPACE) {
        h.ts = secs + frac / scale;
        i = j + 2;
        break;
      }
    }
    if (tries === 1) return false;
    i = line.indexOf(' ', i);
    if (i < 0) return false;
  }
  while (line.charCodeAt(i) === SPACE) i++;
  let event = knownEvent(line, i);
  let colon: number;
  if (event !== undefined) colon = i + event.length;
  else {
    colon = line.indexOf(':', i);
    // "<stack trace>" and "<user stack trace>" records have no body and no colon.
    if (colon < 0) {
      h.event = line.slice(i).trimEnd();
      h.bodyStart = line.length;
      return true;
    }
    event = line.slice(i, colon);
  }
  h.event = event;
  // The body may start with padding (trace-cmd pads the name to 20 columns); field lookups search past it.
  h.bodyStart = colon + 1;
  return true;
}

/** The task name of the header's line, padding trimmed. */
export function commText(line: string, h: FtraceHeader): string {
  let s = h.commStart;
  while (s < h.commEnd && line.charCodeAt(s) === SPACE) s++;
  return line.slice(s, h.commEnd);
}

export function newFtraceHeader(): FtraceHeader {
  return { instanceEnd: -1, commStart: 0, commEnd: 0, pid: 0, cpu: 0, ts: 0, event: '', bodyStart: 0 };
}

/** The header as a fresh object with comm sliced out (for tests and tools; parsers use readFtraceHeader). */
export function parseFtraceHeader(
  line: string,
): (Omit<FtraceHeader, 'commStart' | 'commEnd' | 'instanceEnd'> & { comm: string; instance: string | undefined }) | undefined {
  const h = newFtraceHeader();
  if (!readFtraceHeader(line, h)) return undefined;
  const { commStart: _s, commEnd: _e, instanceEnd, ...rest } = h;
  return { ...rest, comm: commText(line, h), instance: instanceEnd >= 0 ? line.slice(0, instanceEnd) : undefined };
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
