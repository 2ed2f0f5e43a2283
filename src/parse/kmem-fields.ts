// Field extraction for the kmem tracepoints' text ("call_site=… ptr=… bytes_req=… bytes_alloc=… name=…"), shared by
// every ftrace-text format. Tolerant of kernel versions (FORMATS-VERSIONS.md §4.1-4.2): %pS or hex call sites,
// "/size" suffixes, " [module]" suffixes, hashed or real or 0x pointers, "(null)" padded with spaces, and the
// "(value)" that options/fields appends.

import type { KmemEvent } from '../event.js';

export const ALLOC_EVENTS: ReadonlySet<string> = new Set(['kmalloc', 'kmem_cache_alloc', 'kmalloc_node', 'kmem_cache_alloc_node']);
export const FREE_EVENTS: ReadonlySet<string> = new Set(['kfree', 'kmem_cache_free']);

/** Largest object served from a kmalloc-<n> slab cache; bigger kmallocs come from the page allocator (SLUB, 4 KiB pages). */
export const KMALLOC_MAX_CACHE_SIZE = 8192;

const SPACE = 32;

function valueEnd(body: string, from: number): number {
  const e = body.indexOf(' ', from);
  return e < 0 ? body.length : e;
}

function isHex(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (!((c >= 48 && c <= 57) || (c >= 97 && c <= 102))) return false;
  }
  return s.length > 0;
}

/**
 * Normalises a printed pointer: lower-case hex without 0x. Returns null for a null pointer (ignored by the rules),
 * undefined when the text is not a pointer at all.
 */
export function normalisePtr(raw: string): string | null | undefined {
  if (raw === '(nil)' || raw === '(null)') return null;
  let p = raw.charCodeAt(0) === 48 && (raw.charCodeAt(1) === 120 || raw.charCodeAt(1) === 88) ? raw.slice(2) : raw;
  if (!isHex(p)) {
    p = p.toLowerCase();
    if (!isHex(p)) return undefined;
  }
  for (let i = 0; i < p.length; i++) if (p.charCodeAt(i) !== 48) return p;
  return null;
}

/**
 * normalisePtr for the range [start, end) of a line, in one pass and one slice (the per-line hot path).
 */
function ptrIn(line: string, start: number, end: number): string | null | undefined {
  let s = start;
  if (line.charCodeAt(s) === 48 && line.charCodeAt(s + 1) === 120) s += 2;
  let nonZero = false;
  for (let i = s; i < end; i++) {
    const c = line.charCodeAt(i);
    if (c === 48) continue;
    if ((c >= 49 && c <= 57) || (c >= 97 && c <= 102)) nonZero = true;
    else return normalisePtr(line.slice(start, end)); // "(nil)", "(null)", upper case, or not a pointer
  }
  if (s === end) return undefined;
  return nonZero ? line.slice(s, end) : null;
}

/**
 * "user_preparse+0x2f/0x70" → "user_preparse+0x2f"; "foo+0x10/0x20 [xfs]" → "foo+0x10 [xfs]"; "0xffffffff8123" → "ffffffff8123".
 * `rest` is the text after the value, where a " [module]" suffix would be.
 */
export function normaliseCallSite(raw: string, rest: string): string {
  let cs = raw;
  const slash = cs.indexOf('/');
  if (slash > 0) cs = cs.slice(0, slash);
  if (cs.startsWith('0x')) cs = cs.slice(2);
  if (rest.startsWith(' [')) {
    const close = rest.indexOf(']');
    if (close > 0 && !rest.slice(0, close).includes('=')) cs += rest.slice(0, close + 1);
  }
  return cs;
}

/** The function of a call site: offset dropped, module kept ("foo+0x10 [xfs]" → "foo [xfs]"). */
export function siteFunction(callSite: string): string {
  const plus = callSite.indexOf('+');
  if (plus < 0) return callSite;
  const mod = callSite.indexOf(' [', plus);
  return mod < 0 ? callSite.slice(0, plus) : callSite.slice(0, plus) + callSite.slice(mod);
}

const kmallocNames = new Map<number, string>();
const kmallocCgNames = new Map<number, string>();

/** The slab cache a kmalloc of this size lives in (DESIGN.md: 'kmalloc-<n>'; accounted ones go to kmalloc-cg-<n>). */
export function kmallocCache(bytesAlloc: number, accounted: boolean): string {
  const memo = accounted ? kmallocCgNames : kmallocNames;
  let name = memo.get(bytesAlloc);
  if (name === undefined) {
    name = bytesAlloc > KMALLOC_MAX_CACHE_SIZE ? `pages-${bytesAlloc}` : accounted ? `kmalloc-cg-${bytesAlloc}` : `kmalloc-${bytesAlloc}`;
    memo.set(bytesAlloc, name);
  }
  return name;
}

/** A decimal field value at `at` ("4024 "), or NaN. */
function decimalAt(text: string, at: number): number {
  let n = 0;
  let i = at;
  for (;;) {
    const c = text.charCodeAt(i);
    if (c < 48 || c > 57) break;
    n = n * 10 + c - 48;
    i++;
  }
  const c = text.charCodeAt(i);
  return i === at || (i < text.length && c !== SPACE) ? NaN : n;
}

/** Where `key` (e.g. " ptr=") starts at or after `from`, or -1. */
function keyAt(text: string, key: string, from: number): number {
  return text.indexOf(key, from);
}

export type FieldsResult = KmemEvent | 'null' | string;

/**
 * Builds the event from a kmem tracepoint line whose fields start at `bodyStart`. Returns 'null' for a null pointer
 * (not an event, not an error), or a reason string when the fields are malformed. Fields are looked up in the
 * order the kernel prints them, each search starting where the previous one ended.
 */
export function kmemEventFromLine(
  event: string,
  line: string,
  bodyStart: number,
  ts: number,
  pid: number,
  comm: string | undefined,
  cpu: number,
): FieldsResult {
  const isAlloc = ALLOC_EVENTS.has(event);
  const csKey = keyAt(line, 'call_site=', bodyStart);
  if (csKey < 0) return 'no call_site= field';
  const csStart = csKey + 10;
  const csEnd = valueEnd(line, csStart);
  // "ptr=" rather than " ptr=": a pattern starting with a space is several times slower to find (measured).
  const ptrKey = keyAt(line, 'ptr=', csEnd);
  if (ptrKey < 0 || line.charCodeAt(ptrKey - 1) !== SPACE) return 'no ptr= field';
  let ps = ptrKey + 4;
  while (line.charCodeAt(ps) === SPACE) ps++; // "ptr=          (null)" on old kernels
  const pe = valueEnd(line, ps);
  const ptr = ptrIn(line, ps, pe);
  if (ptr === null) return 'null';
  if (ptr === undefined) return `ptr=${line.slice(ps, pe)} is not a pointer`;
  let callSite = line.slice(csStart, csEnd);
  // "/0x70" and " [module]" are rare enough to test for before paying for normalisation.
  if (callSite.indexOf('/') >= 0 || callSite.charCodeAt(0) === 48 || line.charCodeAt(csEnd + 1) === 91) {
    callSite = normaliseCallSite(callSite, line.slice(csEnd, csEnd + 64));
  }
  // Old kernels print call_site as hex; trace-cmd's kmem plugin still resolves it in the "(func+0x…)" prefix.
  if (isHex(callSite)) {
    let b = bodyStart;
    while (line.charCodeAt(b) === SPACE) b++;
    const close = line.charCodeAt(b) === 40 /* ( */ ? line.indexOf(') ', b) : -1;
    if (close > 0) callSite = line.slice(b + 1, close);
  }
  const e: KmemEvent = {
    kind: isAlloc ? 'alloc' : 'free', ts, ptr, callSite, tracepoint: event, pid, comm, cpu,
    bytesReq: undefined, bytesAlloc: undefined, cache: undefined,
  };
  if (isAlloc) {
    const reqKey = keyAt(line, 'bytes_req=', pe);
    const allocKey = keyAt(line, 'bytes_alloc=', reqKey < 0 ? pe : reqKey);
    if (allocKey < 0) return 'no bytes_alloc= field';
    const bytesAlloc = decimalAt(line, allocKey + 12);
    if (Number.isNaN(bytesAlloc)) return `bytes_alloc=${line.slice(allocKey + 12, valueEnd(line, allocKey + 12))} is not a number`;
    e.bytesAlloc = bytesAlloc;
    if (reqKey >= 0) e.bytesReq = decimalAt(line, reqKey + 10);
    if (event.charCodeAt(4) === 95 /* kmem_cache_… */) {
      const nameKey = keyAt(line, ' name=', pe);
      if (nameKey >= 0) e.cache = line.slice(nameKey + 6, valueEnd(line, nameKey + 6));
    } else {
      const accounted = line.endsWith('accounted=true') || (!line.endsWith('accounted=false') && line.includes(' accounted=true'));
      e.cache = kmallocCache(bytesAlloc, accounted);
    }
  } else if (event === 'kmem_cache_free') {
    const nameKey = keyAt(line, ' name=', pe);
    if (nameKey >= 0) e.cache = line.slice(nameKey + 6, valueEnd(line, nameKey + 6));
  }
  return e;
}
