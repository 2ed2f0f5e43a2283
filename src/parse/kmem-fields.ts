// Field extraction for the kmem tracepoints' text ("call_site=… ptr=… bytes_req=… bytes_alloc=… name=…"), shared by
// every ftrace-text format and read from the line's bytes, with no string per field (scripts/bench-replay).
// Tolerant of kernel versions (docs/formats.md): %pS or hex call sites, "/size" suffixes, " [module]"
// suffixes, hashed or real or 0x pointers, "(null)" padded with spaces, and the "(value)" that options/fields appends.

import type { KmemEvent, SlabAllocator, Tracepoint } from '../event.js';
import { NULL_PTR_KEY, ptrFromKey, ptrKeyEnd, ptrKeyFromBytes } from '../engine/pointer-table.js';
import { RangeStrings } from './range-strings.js';

const SPACE = 32;

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

/** Cache names by size (an array index beats a Map lookup). */
const kmallocNames: (string | undefined)[] = [];
const kmallocCgNames: (string | undefined)[] = [];

/** How the traced kernel serves a kmalloc of each size, from its slab allocator and page size (kmallocLabels). */
export interface KmallocLabels {
  readonly slab: SlabAllocator;
  /** The largest kmalloc a kmalloc-N cache serves; larger ones are pages-N. */
  readonly maxCacheSize: number;
}

/**
 * SLUB serves kmalloc from caches up to two pages (KMALLOC_MAX_CACHE_SIZE = 2 * PAGE_SIZE: 8 KiB with 4 KiB pages,
 * 128 KiB with arm64's 64 KiB pages) and larger ones from the page allocator. SLAB serves every kmalloc it can from
 * a kmalloc-N cache (up to 4-32 MiB; larger ones fail). SLOB has no kmalloc caches: below a page a kmalloc is carved
 * from its one heap ("slob", bytes_alloc = size + alignment), from a page up it takes pages.
 */
export function kmallocLabels(slab: SlabAllocator = 'slub', pageSize = 4096): KmallocLabels {
  return { slab, maxCacheSize: slab === 'slub' ? 2 * pageSize : slab === 'slab' ? Number.POSITIVE_INFINITY : pageSize - 1 };
}

const SLUB_4K = kmallocLabels();

/** The slab cache a kmalloc of this size lives in (docs/formats.md: 'kmalloc-<n>'; accounted ones go to kmalloc-cg-<n>). */
export function kmallocCache(bytesAlloc: number, accounted: boolean, labels: KmallocLabels = SLUB_4K): string {
  if (bytesAlloc > labels.maxCacheSize) return `pages-${bytesAlloc}`;
  if (labels.slab === 'slob') return 'slob';
  const memo = accounted ? kmallocCgNames : kmallocNames;
  return (memo[bytesAlloc] ??= accounted ? `kmalloc-cg-${bytesAlloc}` : `kmalloc-${bytesAlloc}`);
}

/** Whether a kmalloc-N cache of this size exists on SLUB and SLAB (8, 16, 32, 64, 96, 128, 192, 256, … bytes). */
export function isKmallocCacheSize(bytes: number): boolean {
  return (bytes >= 8 && (bytes & (bytes - 1)) === 0) || bytes === 96 || bytes === 192;
}

/** The bytes of an ASCII text, for comparing in place. */
const bytesOf = (t: string): Uint8Array => Buffer.from(t, 'latin1');
const CALL_SITE = bytesOf('call_site=');
const PTR = bytesOf('ptr=');
const BYTES_REQ = bytesOf('bytes_req=');
const BYTES_ALLOC = bytesOf('bytes_alloc=');
const NAME = bytesOf(' name=');
const ACCOUNTED_TRUE = bytesOf(' accounted=true');
const ACCOUNTED_FALSE = bytesOf(' accounted=false');

function matchAt(buf: Buffer, at: number, key: Uint8Array): boolean {
  for (let k = 0; k < key.length; k++) if (buf[at + k] !== key[k]) return false;
  return true;
}

/**
 * Where `key` is in [from, end): tried first at `expect` (where the kernel's layout puts it, nearly always right),
 * then searched. -1 when absent.
 */
function fieldAt(buf: Buffer, key: Uint8Array, expect: number, from: number, end: number): number {
  if (expect + key.length <= end && matchAt(buf, expect, key)) return expect;
  const first = key[0]!;
  for (let i = from; i + key.length <= end; i++) if (buf[i] === first && matchAt(buf, i, key)) return i;
  return -1;
}

/** End of the value starting at `from`: the next space, or the line's end. */
function valueEnd(buf: Buffer, from: number, end: number): number {
  let i = from;
  while (i < end && buf[i] !== SPACE) i++;
  return i;
}

/** Where the value the last decimal() call read ended. */
let valueStop = 0;

/**
 * A decimal value spanning [from, valueEnd), or NaN; valueStop is set to its end. options/fields prints numbers as
 * hex with the decimal after them ("bytes_req=0xfa0 (4000)"): the hex is read, and the " (…)" is left to the
 * field searches, which skip it.
 */
function decimal(buf: Buffer, from: number, end: number): number {
  if (buf[from] === 48 /* 0 */ && buf[from + 1] === 120 /* x */) return hexNumber(buf, from + 2, end);
  let n = 0;
  let i = from;
  for (; i < end; i++) {
    const c = buf[i]!;
    if (c < 48 || c > 57) break;
    n = n * 10 + c - 48;
  }
  valueStop = i;
  return i === from || (i < end && buf[i] !== SPACE) ? NaN : n;
}

function hexNumber(buf: Buffer, from: number, end: number): number {
  let n = 0;
  let i = from;
  for (; i < end; i++) {
    const c = buf[i]!;
    const d = c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : -1;
    if (d < 0) break;
    n = n * 16 + d;
  }
  valueStop = i;
  return i === from || (i < end && buf[i] !== SPACE) ? NaN : n;
}

/**
 * A kmem event read from bytes: the pointer is kept as the engine's key (PtrKey), its text made only if someone
 * asks (tests, recordings), as the replay of a large trace never does.
 */
class ReadKmemEvent implements KmemEvent {
  constructor(
    readonly kind: 'alloc' | 'free',
    readonly ts: number,
    /** ptrKey of the pointer, or undefined when it has none and `printed` holds its text. */
    readonly key: number | undefined,
    /** Hex digits as printed (leading zeros kept), or the pointer's text when it has no numeric key. */
    private readonly printed: number | string,
    readonly callSite: string,
    readonly tracepoint: Tracepoint,
    readonly pid: number,
    readonly comm: string | undefined,
    readonly cpu: number,
    readonly bytesReq: number | undefined,
    readonly bytesAlloc: number | undefined,
    readonly cache: string | undefined,
  ) {}

  get ptr(): string {
    if (typeof this.printed === 'string') return this.printed;
    const k = this.key!;
    return k >= 0 ? ptrFromKey(k) : (-k - 1).toString(16).padStart(this.printed, '0');
  }

  /** The event as docs/design.md writes it (NDJSON recordings): ptr as text, no parser bookkeeping. */
  toJSON(): KmemEvent {
    const { kind, ts, ptr, callSite, bytesReq, bytesAlloc, cache, tracepoint, pid, comm, cpu } = this;
    return { kind, ts, ptr, callSite, bytesReq, bytesAlloc, cache, tracepoint, pid, comm, cpu };
  }
}

interface CallSiteText {
  site: string;
  /** An old kernel's raw address: resolved per line from trace-cmd's "(func+0x…)" prefix when there is one. */
  hex: boolean;
}

export type FieldsResult = KmemEvent | 'null' | string;

/**
 * Reads the kmem tracepoint fields of one trace's lines. Fields are looked for where the kernel prints them, in its
 * order, and searched for when a kernel version or option moved them; call sites, comms and cache names come back
 * as the same strings each time (RangeStrings).
 */
export class KmemFieldReader {
  /**
   * The first kmalloc size no kmalloc-N cache has, read while labelling as SLUB or SLAB does: a SLOB kernel's
   * (size + alignment) or slub_debug's padding. The parser says so once.
   */
  oddSize: number | undefined;

  /** @param labels how the traced machine serves each kmalloc size (its slab allocator and page size). */
  constructor(private readonly labels: KmallocLabels = SLUB_4K) {}

  private readonly callSites = new RangeStrings<CallSiteText>((raw) => {
    const site = normaliseCallSite(raw, '');
    return { site, hex: isHex(site) };
  });
  private readonly texts = new RangeStrings<string>((t) => t);

  /**
   * The event of a kmem line whose fields are in [bodyStart, end) of `buf`: 'null' for a null pointer (not an
   * event, not an error), or why the fields are malformed. `commStart`..`commEnd`: the comm column with padding.
   */
  read(event: Tracepoint, buf: Buffer, bodyStart: number, end: number, ts: number, pid: number, commStart: number, commEnd: number, cpu: number): FieldsResult {
    const isAlloc = !(event === 'kfree' || event === 'kmem_cache_free');
    let i = bodyStart;
    while (i < end && buf[i] === SPACE) i++;
    // trace-cmd's kmem plugin prints "(func+0x…) " before call_site=; an old kernel's hex call site needs it.
    let prefix: CallSiteText | undefined;
    let prefixStart = -1;
    let prefixEnd = -1;
    if (buf[i] === 40 /* ( */) {
      const p = this.callSites.getTo(buf, i + 1, end, 41 /* ) */);
      const c = this.callSites.lastEnd;
      if (c < end && buf[c + 1] === SPACE) {
        prefix = p;
        prefixStart = i + 1;
        prefixEnd = c;
        i = c + 2;
      }
    }
    const csKey = fieldAt(buf, CALL_SITE, i, bodyStart, end);
    if (csKey < 0) return 'no call_site= field';
    const csStart = csKey + 10;
    let callSite: string;
    let csEnd = csStart + prefixEnd - prefixStart;
    if (prefix !== undefined && !prefix.hex && csKey === i && (csEnd === end || buf[csEnd] === SPACE) && buf[csEnd + 1] !== 91) {
      // The plugin's prefix names the call site as call_site= does, in as many characters: already looked up.
      callSite = prefix.site;
    } else {
      const cs = this.callSites.getTo(buf, csStart, end, SPACE);
      csEnd = this.callSites.lastEnd;
      callSite = cs.site;
      if (buf[csEnd + 1] === 91 /* [ */ && csEnd + 1 < end) {
        // " [module]" after the value
        callSite = normaliseCallSite(this.texts.get(buf, csStart, csEnd), buf.toString('latin1', csEnd, Math.min(end, csEnd + 64)));
      } else if (cs.hex && prefixStart >= 0) {
        callSite = this.texts.get(buf, prefixStart, prefixEnd);
      }
    }
    const ptrKey = fieldAt(buf, PTR, csEnd + 1, csEnd, end);
    if (ptrKey < 0 || buf[ptrKey - 1] !== SPACE) return 'no ptr= field';
    let ps = ptrKey + 4;
    while (ps < end && buf[ps] === SPACE) ps++; // "ptr=          (null)" on old kernels
    let key: number | undefined = ptrKeyFromBytes(buf, ps, end);
    const pe = ptrKeyEnd;
    let printed: number | string;
    if (key === NULL_PTR_KEY) return 'null';
    if (Number.isNaN(key)) {
      const text = buf.toString('latin1', ps, pe);
      const ptr = normalisePtr(text);
      if (ptr === null) return 'null';
      if (ptr === undefined) return `ptr=${text} is not a pointer`;
      key = undefined;
      printed = ptr;
    } else {
      printed = buf[ps + 1] === 120 || buf[ps + 1] === 88 ? pe - ps - 2 : pe - ps;
    }
    let bytesReq: number | undefined;
    let bytesAlloc: number | undefined;
    let cache: string | undefined;
    let comm: string | undefined;
    if (isAlloc) {
      const reqKey = fieldAt(buf, BYTES_REQ, pe + 1, pe, end);
      if (reqKey >= 0) {
        bytesReq = decimal(buf, reqKey + 10, end);
        // "bytes_req=56bytes_alloc=64" (fields glued by whoever pasted the line) is no number, never a silent 0
        if (Number.isNaN(bytesReq)) return `bytes_req=${buf.toString('latin1', reqKey + 10, valueEnd(buf, reqKey + 10, end))} is not a number`;
      }
      const allocKey = fieldAt(buf, BYTES_ALLOC, reqKey < 0 ? pe + 1 : valueStop + 1, pe, end);
      if (allocKey < 0) return 'no bytes_alloc= field';
      bytesAlloc = decimal(buf, allocKey + 12, end);
      if (Number.isNaN(bytesAlloc)) return `bytes_alloc=${buf.toString('latin1', allocKey + 12, valueEnd(buf, allocKey + 12, end))} is not a number`;
      cache = this.cacheOf(event, buf, pe, end, bytesAlloc);
      let c = commStart;
      while (c < commEnd && buf[c] === SPACE) c++;
      comm = this.texts.get(buf, c, commEnd);
    } else if (event === 'kmem_cache_free') {
      cache = this.cacheOf(event, buf, pe, end, 0);
    }
    return new ReadKmemEvent(isAlloc ? 'alloc' : 'free', ts, key, printed, callSite, event, pid, comm, cpu, bytesReq, bytesAlloc, cache);
  }

  /** kmem_cache events name their cache (" name=…" after `from`); a kmalloc's is derived from its size. */
  private cacheOf(event: Tracepoint, buf: Buffer, from: number, end: number, bytesAlloc: number): string | undefined {
    if (event.charCodeAt(4) === 95 /* kmem_cache_… */) {
      const at = fieldAt(buf, NAME, end, from, end);
      return at < 0 ? undefined : this.texts.get(buf, at + 6, valueEnd(buf, at + 6, end));
    }
    // "accounted=true" ends the line on current kernels; options/fields may append "(value)"s, so search then.
    const accounted =
      matchAt(buf, end - ACCOUNTED_TRUE.length, ACCOUNTED_TRUE) ||
      (!matchAt(buf, end - ACCOUNTED_FALSE.length, ACCOUNTED_FALSE) && fieldAt(buf, ACCOUNTED_TRUE, end, from, end) >= 0);
    if (this.oddSize === undefined && this.labels.slab !== 'slob' && bytesAlloc <= this.labels.maxCacheSize && !isKmallocCacheSize(bytesAlloc)) this.oddSize = bytesAlloc;
    return kmallocCache(bytesAlloc, accounted, this.labels);
  }
}
