// Which bpftrace runs, and what it can do here (docs/bpftrace-versions.md): kleak's programs are written for every
// bpftrace from Debian bookworm's 0.17 to trixie's 0.23, and what differs between them is decided here, from the
// running bpftrace's own answers, never assumed.

import { execFileSync } from 'node:child_process';

export interface BpftraceVersion {
  major: number;
  minor: number;
  patch: number;
  /** As bpftrace prints it: "v0.23.2". */
  text: string;
}

/** "bpftrace v0.23.2" (or "bpftrace v0.17.0-rc1", "bpftrace 0.20.2") → its numbers; undefined when unreadable. */
export function parseBpftraceVersion(out: string): BpftraceVersion | undefined {
  const m = /bpftrace\s+v?(\d+)\.(\d+)(?:\.(\d+))?(\S*)/.exec(out);
  if (!m) return undefined;
  return { major: Number(m[1]), minor: Number(m[2]), patch: Number(m[3] ?? 0), text: `v${m[1]}.${m[2]}${m[3] !== undefined ? `.${m[3]}` : ''}${m[4] ?? ''}` };
}

let cached: BpftraceVersion | undefined | null = null;

/** The version of the bpftrace on PATH (asked once). */
export function bpftraceVersion(): BpftraceVersion | undefined {
  if (cached === null) {
    try {
      cached = parseBpftraceVersion(execFileSync('bpftrace', ['--version'], { encoding: 'utf8', timeout: 10_000, stdio: ['ignore', 'pipe', 'ignore'] }));
    } catch {
      cached = undefined;
    }
  }
  return cached;
}

export const atLeast = (v: BpftraceVersion | undefined, major: number, minor: number) => v !== undefined && (v.major > major || (v.major === major && v.minor >= minor));

/**
 * The environment variable that sizes bpftrace's maps: BPFTRACE_MAP_KEYS_MAX before 0.20, BPFTRACE_MAX_MAP_KEYS from
 * 0.20 ("standardize config and env var names", bpftrace's changelog; 0.23 warns that the old name is deprecated).
 * An unknown version gets the old name, which every version reads.
 */
export function mapKeysVariable(v: BpftraceVersion | undefined): string {
  return atLeast(v, 0, 20) ? 'BPFTRACE_MAX_MAP_KEYS' : 'BPFTRACE_MAP_KEYS_MAX';
}

/** How the running version treats its maps' memory, for the notice that says what bpftrace's maps hold. */
export function mapMemoryNote(v: BpftraceVersion | undefined, maxPointers: number): string {
  const name = v ? `bpftrace ${v.text}` : 'this bpftrace';
  return `${name} sizes its maps to --max-pointers ${maxPointers.toLocaleString('en-US')}; a lower --max-pointers takes less; the kernel backend takes a few MiB`;
}

let nameReading: 'tracepoint' | 'raw' | undefined | null = null;

/** Does the one-liner print a non-empty cache name (it exits after one allocation)? */
function readsName(program: string): boolean {
  try {
    const out = execFileSync('bpftrace', ['-e', program], { encoding: 'utf8', timeout: 30_000, stdio: ['ignore', 'pipe', 'ignore'] });
    return /^N\S+/m.test(out);
  } catch {
    return false;
  }
}

/**
 * How this bpftrace can read kmem_cache_alloc's cache name, asked of it once: from the tracepoint's __data_loc
 * string (0.17), or, where that reads empty (0.23.2 on Linux 6.18: a bpftrace bug in __data_loc reads, fixed
 * upstream in bpftrace PR #4238), from the raw tracepoint's struct kmem_cache through BTF; undefined: neither, and a
 * --cache NAME filter would match nothing.
 */
export function cacheNameReading(): 'tracepoint' | 'raw' | undefined {
  if (nameReading === null) {
    nameReading = readsName('tracepoint:kmem:kmem_cache_alloc { printf("N%s\\n", str(args->name)); exit(); }')
      ? 'tracepoint'
      : readsName('rawtracepoint:kmem_cache_alloc { printf("N%s\\n", str(((struct kmem_cache *)arg2)->name)); exit(); }')
        ? 'raw'
        : undefined;
  }
  return nameReading;
}
