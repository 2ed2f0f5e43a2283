// Tokenizer for the header that trace_pipe and `trace-cmd report` lines share:
//   [instance: ]comm-pid [(tgid)] [cpu] [flags] secs.usecs: event: body
// Hand-written rather than a regex: this runs once per line at millions of lines a second.

export interface FtraceHeader {
  instance: string | undefined;
  comm: string;
  pid: number;
  cpu: number;
  ts: number;
  event: string;
  /** Index in the line where the event's text starts (after "event: " and padding). */
  bodyStart: number;
}

const SPACE = 32;
const ZERO = 48;
const NINE = 57;

function isDigit(c: number): boolean {
  return c >= ZERO && c <= NINE;
}

/** Finds " [ddd]" (the CPU column); comm may hold spaces, dashes, colons and brackets, so digits are required. */
function findCpuColumn(line: string, from: number): number {
  let i = line.indexOf(' [', from);
  while (i >= 0) {
    const c = line.charCodeAt(i + 2);
    if (isDigit(c)) {
      let j = i + 3;
      while (isDigit(line.charCodeAt(j))) j++;
      if (line.charCodeAt(j) === 93 /* ] */) return i + 1;
    }
    i = line.indexOf(' [', i + 2);
  }
  return -1;
}

export function parseFtraceHeader(line: string): FtraceHeader | undefined {
  let start = 0;
  let instance: string | undefined;
  // comm is printed right-aligned in 16 columns and is at most 15 characters, so an event line starts with a
  // space unless trace-cmd put a buffer-instance (or file) name in front of it.
  if (line.charCodeAt(0) !== SPACE) {
    const colon = line.indexOf(': ');
    const bracket = findCpuColumn(line, 0);
    if (colon > 0 && bracket > colon) {
      instance = line.slice(0, colon);
      start = colon + 2;
    }
  }
  const open = findCpuColumn(line, start);
  if (open < 0) return undefined;
  // comm-pid: walk back over padding, the pid, then the dash (comm itself may contain dashes).
  let e = open - 1;
  while (e > start && line.charCodeAt(e) === SPACE) e--;
  // trace_pipe with options/record-tgid prints "(tgid)" between pid and cpu.
  if (line.charCodeAt(e) === 41 /* ) */) {
    const p = line.lastIndexOf('(', e);
    if (p < 0) return undefined;
    e = p - 1;
    while (e > start && line.charCodeAt(e) === SPACE) e--;
  }
  let d = e;
  while (d > start && isDigit(line.charCodeAt(d))) d--;
  if (d === e || line.charCodeAt(d) !== 45 /* - */) return undefined;
  const pid = parseInt(line.slice(d + 1, e + 1), 10);
  let cs = start;
  while (cs < d && line.charCodeAt(cs) === SPACE) cs++;
  const comm = line.slice(cs, d);

  const close = line.indexOf(']', open);
  const cpu = parseInt(line.slice(open + 1, close), 10);
  // Next token: flags (".....", ".N..", "d..1.") or already the timestamp; the timestamp is the token ending in ':'.
  let i = close + 1;
  let ts = NaN;
  let tsEnd = -1;
  for (let tries = 0; tries < 2; tries++) {
    while (line.charCodeAt(i) === SPACE) i++;
    let j = i;
    while (j < line.length && line.charCodeAt(j) !== SPACE) j++;
    if (line.charCodeAt(j - 1) === 58 /* : */ && isDigit(line.charCodeAt(i))) {
      ts = Number(line.slice(i, j - 1));
      tsEnd = j;
      break;
    }
    i = j;
  }
  if (tsEnd < 0 || Number.isNaN(ts)) return undefined;
  i = tsEnd;
  while (line.charCodeAt(i) === SPACE) i++;
  const colon = line.indexOf(':', i);
  // "<stack trace>" and "<user stack trace>" records have no body and no colon.
  if (colon < 0) return { instance, comm, pid, cpu, ts, event: line.slice(i).trimEnd(), bodyStart: line.length };
  const event = line.slice(i, colon);
  let b = colon + 1;
  while (line.charCodeAt(b) === SPACE) b++;
  return { instance, comm, pid, cpu, ts, event, bodyStart: b };
}

/** "CPU:1 [LOST 1234 EVENTS]" (trace_pipe), "CPU:1 [1234 EVENTS DROPPED]" / "CPU:1 [EVENTS DROPPED]" (trace-cmd). */
export function parseLostLine(line: string): { cpu: number; count: number } | undefined {
  const at = line.indexOf('CPU:');
  if (at < 0 || at > 0 && line.charCodeAt(at - 1) !== SPACE) return undefined;
  const m = /^CPU:(\d+) \[(?:LOST (\d+) EVENTS|(\d+) EVENTS DROPPED|EVENTS DROPPED)\]/.exec(line.slice(at));
  if (!m) return undefined;
  const n = m[2] ?? m[3];
  // An unknown count still means at least one event is missing.
  return { cpu: Number(m[1]), count: n === undefined ? 1 : Number(n) };
}
