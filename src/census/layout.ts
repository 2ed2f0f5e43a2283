// The census program's shared structures (bpf/census.h) as offsets: every field is a u64, so a field's offset is
// its index times 8, in census.h's order (a field added there is added here at the same place; the live census
// test fails on any mismatch, since every count it checks passes through these offsets).

export const CTX_FIELDS = [
  'op', 'target', 'page_offset', 'vmemmap', 'page_struct_size', 'page_shift', 'ncpus', 'count', 'next', 'copy_len',
  'cpu_slab', 'size', 'free_offset', 'hardened', 'random',
  'out_used', 'slabs', 'objects', 'allocated', 'torn', 'unreadable', 'truncated', 'frozen_unmatched', 'too_many',
] as const;
export type CtxField = (typeof CTX_FIELDS)[number];
export const CTX_BYTES = CTX_FIELDS.length * 8;
export const ctxOffset = (f: CtxField) => CTX_FIELDS.indexOf(f) * 8;

export const OP = { caches: 1, read: 2, percpu: 3, walk: 4, scan: 5 } as const;
/** CENSUS_SCAN_PFNS: pfns one SCAN run reads. */
export const SCAN_PFNS = 32768;

export const MAX_PFNS = 4096;
export const MAX_CPUS = 64;
export const MAX_OBJS = 1024;
export const MAX_COPY = 256;
export const OUT_BYTES = 4 << 20;
/** sizeof(struct census_buffer) */
export const OUT_VALUE_BYTES = OUT_BYTES + MAX_COPY + 8;

/** struct census_in: words[MAX_PFNS], ok[MAX_PFNS], cpu_offset[MAX_CPUS], pcpu_base. */
export const IN = { words: 0, ok: MAX_PFNS * 8, cpuOffset: MAX_PFNS * 16, pcpuBase: MAX_PFNS * 16 + MAX_CPUS * 8, bytes: MAX_PFNS * 16 + MAX_CPUS * 8 + 8 };

/** struct census_cache: nine u64 then name[64]. */
export const CACHE_RECORD = { cache: 0, cpuSlab: 8, size: 16, objectSize: 24, offset: 32, flags: 40, sheafCapacity: 48, random: 56, hasRandom: 64, name: 72, bytes: 136 };
