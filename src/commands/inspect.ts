// kleak inspect: what the outstanding objects are. Reads their bytes from the running kernel, names function
// pointers through /proc/kallsyms, shows text as text, and groups objects that look alike.
import { readFileSync } from 'node:fs';
import { decodeWords, groupAlike, hexDump } from '../engine/object-decode.js';
import { cannotRead, InputError } from '../errors.js';
import { Kallsyms } from '../kernel/kallsyms.js';
import type { JsonReport } from '../report/json.js';
import type { SiteReport } from '../report/model.js';
import { MAX_LENGTH, MAX_OBJECTS, readKernelObjects } from '../sources/kernel-memory.js';
import { writeText } from '../output.js';

export interface InspectOptions {
  ptrs: string[];
  from: string | undefined;
  site: string | undefined;
  length: number | undefined;
}

export interface Target {
  ptr: string;
  what: string;
  length: number;
}

function targets(o: InspectOptions): Target[] {
  if (o.from === undefined) {
    if (o.ptrs.length === 0) throw new InputError('kleak inspect needs pointers, or --from REPORT.json.', 'Example: sudo kleak inspect ffff888102654000 --length 128');
    return o.ptrs.map((ptr) => ({ ptr, what: '', length: o.length ?? 128 }));
  }
  let text: string;
  try {
    text = readFileSync(o.from, 'utf8');
  } catch (err) {
    throw cannotRead(o.from, err);
  }
  let report: JsonReport;
  try {
    report = JSON.parse(text) as JsonReport;
  } catch {
    // A trace, a recording or a gzip given where a report belongs: said as such, not as a JSON parser's message.
    const what = text.startsWith('\x1f\x8b') || text.startsWith('\x1f\uFFFD') ? 'a gzip file' : text.trimStart().startsWith('{') ? 'not one whole JSON document' : 'not JSON';
    throw new InputError(
      `${o.from} is not a kleak --json report (it is ${what}); inspect --from reads the report of a live run.`,
      `Make one with kleak live --json > report.json (or s in the TUI); a trace or recording gives one with kleak replay FILE --json > report.json.`,
    );
  }
  if (!Array.isArray((report as Partial<JsonReport>).sites)) throw new InputError(`${o.from} is JSON but not a kleak report of sites (it has no "sites").`, 'Make one with kleak live --json > report.json.');
  const sites = (report.sites ?? []).filter((s) => o.site === undefined || s.function === o.site);
  if (sites.length === 0) throw new InputError(o.site ? `the report has no outstanding allocations at ${o.site}.` : 'the report has no outstanding allocations.');
  return sites.flatMap((s) => siteTargets(s, o.length));
}

/** Reads and describes up to MAX_OBJECTS targets: hex dump, named words, text, alike objects grouped. */
export async function describeObjects(all: Target[]): Promise<string[]> {
  const list = all.slice(0, MAX_OBJECTS);
  for (const t of list) t.length = Math.min(t.length, MAX_LENGTH);
  const length = Math.max(...list.map((t) => t.length));
  // Reads come in 64-byte pieces; what lies past an object is its neighbour in the slab, not shown.
  const bytes = (await readKernelObjects(list.map((t) => t.ptr), length)).map((b, i) => b.subarray(0, Math.min(b.length, Math.ceil(list[i]!.length / 8) * 8)));
  const syms = Kallsyms.load();
  const decoded = bytes.map((b) => decodeWords(b, syms));
  const out: string[] = [];
  if (all.length > list.length) out.push(`inspecting the first ${list.length} of ${all.length} objects`);
  if (syms.size === 0) out.push('/proc/kallsyms shows no addresses (kptr_restrict): function pointers cannot be named');
  for (const { members: idx, differAt } of groupAlike(decoded)) {
    const first = idx[0]!;
    const b = bytes[first]!;
    out.push('');
    out.push(idx.length > 1 ? `${idx.length} objects look alike: ${idx.map((i) => list[i]!.ptr).join(' ')}` : `${list[first]!.ptr}`);
    if (list[first]!.what) out.push(`  (${list[first]!.what})`);
    if (differAt.length) out.push(`  they differ at ${differAt.map((o) => `+0x${o.toString(16)}`).join(' ')} (per-object pointers, or bytes the kernel never wrote); the first is shown`);
    if (b.every((x) => x === 0)) {
      out.push('  all zero: unreadable (freed, or not a kernel address) or zero-filled');
      continue;
    }
    for (const l of hexDump(b, decoded[first]!)) out.push(`  ${l}`);
    const fns = decoded[first]!.filter((w) => w.kind === 'function').map((w) => `+0x${w.offset.toString(16)} ${w.label}`);
    if (fns.length) out.push(`  function pointers: ${fns.join(', ')}`);
    const text = decoded[first]!.filter((w) => w.kind === 'text').map((w) => JSON.parse(w.label) as string).join('');
    if (text.length >= 8) out.push(`  text: ${JSON.stringify(text)}`);
  }
  return out;
}

/** The samples of one site of a report as inspect targets. */
export function siteTargets(s: SiteReport, length?: number): Target[] {
  return s.samples.map((p) => ({
    ptr: p.ptr,
    what: `${s.function}, ${s.cache}${p.bytesReq !== undefined ? `, ${p.bytesReq} bytes requested` : ''}, age ${p.ageSec}s`,
    length: length ?? Math.min(p.bytesReq ?? 128, 128),
  }));
}

export async function runInspect(o: InspectOptions): Promise<number> {
  writeText((await describeObjects(targets(o))).join('\n') + '\n');
  return 0;
}
