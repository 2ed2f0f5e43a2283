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

/** The value of `key=` (key includes the '='), or undefined. Keys are matched at a word start. */
export function fieldValue(body: string, key: string): string | undefined {
  let at = body.indexOf(key);
  while (at > 0 && body.charCodeAt(at - 1) !== SPACE) at = body.indexOf(key, at + 1);
  if (at < 0) return undefined;
  let s = at + key.length;
  while (body.charCodeAt(s) === SPACE) s++; // "ptr=          (null)" on old kernels
  return body.slice(s, valueEnd(body, s));
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

/** The slab cache a kmalloc of this size lives in (DESIGN.md: 'kmalloc-<n>'; accounted ones go to kmalloc-cg-<n>). */
export function kmallocCache(bytesAlloc: number, accounted: boolean): string {
  if (bytesAlloc > KMALLOC_MAX_CACHE_SIZE) return `pages-${bytesAlloc}`;
  return accounted ? `kmalloc-cg-${bytesAlloc}` : `kmalloc-${bytesAlloc}`;
}

export type FieldsResult = KmemEvent | 'null' | string;

/**
 * Builds the event from a kmem tracepoint body. Returns 'null' for a null pointer (not an event, not an error),
 * or a reason string when the body is malformed.
 */
export function kmemEventFromBody(
  event: string,
  body: string,
  ts: number,
  pid: number,
  comm: string,
  cpu: number,
  symbolHint?: string,
): FieldsResult {
  const isAlloc = ALLOC_EVENTS.has(event);
  const rawPtr = fieldValue(body, 'ptr=');
  if (rawPtr === undefined) return 'no ptr= field';
  const ptr = normalisePtr(rawPtr);
  if (ptr === null) return 'null';
  if (ptr === undefined) return `ptr=${rawPtr} is not a pointer`;
  const csKey = body.indexOf('call_site=');
  if (csKey < 0) return 'no call_site= field';
  const csStart = csKey + 10;
  const csEnd = valueEnd(body, csStart);
  let callSite = normaliseCallSite(body.slice(csStart, csEnd), body.slice(csEnd, csEnd + 64));
  // Old kernels print call_site as hex; trace-cmd's kmem plugin still resolves it in the "(func+0x…)" prefix.
  if (symbolHint !== undefined && isHex(callSite)) callSite = symbolHint;
  const e: KmemEvent = { kind: isAlloc ? 'alloc' : 'free', ts, ptr, callSite, tracepoint: event, pid, comm, cpu };
  if (isAlloc) {
    const req = fieldValue(body, 'bytes_req=');
    const alloc = fieldValue(body, 'bytes_alloc=');
    if (alloc === undefined) return 'no bytes_alloc= field';
    const bytesAlloc = Number(alloc);
    if (!Number.isInteger(bytesAlloc)) return `bytes_alloc=${alloc} is not a number`;
    e.bytesAlloc = bytesAlloc;
    if (req !== undefined) e.bytesReq = Number(req);
    const name = event.startsWith('kmem_cache') ? fieldValue(body, 'name=') : undefined;
    e.cache = name ?? (event.startsWith('kmalloc') ? kmallocCache(bytesAlloc, body.includes('accounted=true')) : undefined);
  } else if (event === 'kmem_cache_free') {
    const name = fieldValue(body, 'name=');
    if (name !== undefined) e.cache = name;
  }
  return e;
}
