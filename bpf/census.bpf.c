// SPDX-License-Identifier: GPL-2.0
/* census.bpf.c: the census, kleak's read-only walk of what a slab cache holds now (docs/census.md).
 *
 * One syscall program, run on demand with BPF_PROG_RUN: it attaches to nothing, so nothing stays behind once kleak's
 * file descriptors close, even after SIGKILL. Each run does one operation named in its context (struct census_ctx
 * in census.h, mirrored in src/census/layout.ts):
 * - CENSUS_OP_CACHES: every kmem_cache (the bpf_iter_kmem_cache kfunc, 6.13+), with the fields the walk needs;
 * - CENSUS_OP_READ: up to CENSUS_MAX_PFNS kernel words at given addresses (kleak finds the direct map and vmemmap
 *   bases with it: both are randomised and this kernel exports neither in kallsyms);
 * - CENSUS_OP_PERCPU: where each CPU's per-CPU area is (each CPU's copy of a per-CPU array map, less the map's own
 *   per-CPU pointer): a cache's kmem_cache_cpu is s->cpu_slab plus that offset;
 * - CENSUS_OP_SCAN: the slab head pfns of a range of physical memory, from each pfn's struct page (page_type says
 *   slab on the head page only), with the cache each belongs to (target 0: every cache): what /proc/kpageflags says, without
 *   the kernel computing every other flag of every page;
 * - CENSUS_OP_WALK: given slab head pfns (from SCAN), the allocated objects of the target cache on them:
 *   an object is free if it is on its slab's freelist or, for a CPU slab, on that CPU's lockless freelist. Each
 *   allocated object's address and first copy_len bytes go to the census_out buffer; kleak classifies them and
 *   keeps only shapes (never the bytes).
 * Every pointer is read with bpf_probe_read_kernel, which returns an error for an unmapped address instead of
 * faulting; every list walk is bounded, and each pointer is checked to be an object boundary of its slab. */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "census.h"

char LICENSE[] SEC("license") = "GPL";

/* CO-RE: only the fields the walk reads; libbpf checks each against the running kernel's BTF. */
struct kmem_cache {
	void *cpu_slab;
	unsigned int size;
	unsigned int object_size;
	unsigned int offset;
	unsigned int sheaf_capacity;
	unsigned int flags;
	unsigned long random;
	const char *name;
} __attribute__((preserve_access_index));

struct slab {
	struct kmem_cache *slab_cache;
	void *freelist;
	unsigned long counters;
} __attribute__((preserve_access_index));

struct page {
	unsigned int page_type;
} __attribute__((preserve_access_index));

enum pagetype {
	PGTY_slab = 0xf5,
};

struct kmem_cache_cpu {
	void **freelist;
	struct slab *slab;
} __attribute__((preserve_access_index));

struct bpf_array {
	void *pptrs[0];
} __attribute__((preserve_access_index));

struct bpf_iter_kmem_cache {
	__u64 __opaque[1];
} __attribute__((aligned(8)));

extern int bpf_iter_kmem_cache_new(struct bpf_iter_kmem_cache *it) __ksym __weak;
extern struct kmem_cache *bpf_iter_kmem_cache_next(struct bpf_iter_kmem_cache *it) __ksym __weak;
extern void bpf_iter_kmem_cache_destroy(struct bpf_iter_kmem_cache *it) __ksym __weak;

/* One large value: objects and cache records are appended here; kleak reads it after each run. */
struct census_buffer {
	__u8 data[CENSUS_OUT_BYTES + CENSUS_MAX_COPY + 8];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct census_buffer);
} census_out SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct census_in);
} census_in SEC(".maps");

/* Only its layout matters: each CPU's copy of element 0 shows where that CPU's per-CPU area is. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} census_percpu SEC(".maps");

/* One slab being walked. */
struct slab_walk {
	__u64 base;
	__u64 cursor;
	__u64 objects;
	__u64 torn;
	__u64 allocated;
	__u8 free_map[CENSUS_MAX_OBJS / 8];
};

struct cpu_find {
	__u64 slab;
	__u64 freelist;
	__u64 found;
};

/* The run's state lives in globals (this object's .bss), not on the stack: bpf_loop hands its callbacks only a
 * stack pointer, and all frames together get 512 bytes of stack. Each kleak process loads its own copy. */
struct census_ctx st;
struct slab_walk sw;
struct cpu_find cf;
__u64 map_addr;

static __always_inline __u64 read_word(__u64 addr, int *ok)
{
	__u64 v = 0;
	if (bpf_probe_read_kernel(&v, sizeof(v), (void *)addr) != 0)
		*ok = 0;
	return v;
}

/* SLUB's free pointer, stored at object + s->offset: hardened kernels store ptr ^ s->random ^ swab(&stored). */
static __always_inline __u64 free_next(__u64 obj, int *ok)
{
	__u64 at = obj + st.free_offset;
	__u64 stored = read_word(at, ok);
	return st.hardened ? stored ^ st.random ^ __builtin_bswap64(at) : stored;
}

/* Marks the object at `p` free; 1 stops the walk (end of list, or a pointer that is not an object of this slab). */
static __always_inline int mark_free(__u64 p)
{
	if (p == 0)
		return 1;
	if (p < sw.base || st.size == 0) {
		sw.torn = 1;
		return 1;
	}
	__u64 off = p - sw.base;
	__u64 idx = off / st.size;
	if (idx >= sw.objects || idx * st.size != off) {
		sw.torn = 1;
		return 1;
	}
	__u32 byte = (idx >> 3) & (CENSUS_MAX_OBJS / 8 - 1);
	__u8 bit = 1 << (idx & 7);
	if (sw.free_map[byte] & bit) { /* a loop: the list changed under the walk */
		sw.torn = 1;
		return 1;
	}
	sw.free_map[byte] |= bit;
	return 0;
}

static long follow_freelist(__u64 i, void *unused)
{
	int ok = 1;
	if (mark_free(sw.cursor))
		return 1;
	sw.cursor = free_next(sw.cursor, &ok);
	if (!ok) {
		sw.torn = 1;
		return 1;
	}
	return 0;
}

static long copy_object(__u64 idx, void *unused)
{
	if (sw.free_map[(idx >> 3) & (CENSUS_MAX_OBJS / 8 - 1)] & (1 << (idx & 7)))
		return 0;
	sw.allocated++;
	__u32 zero = 0;
	struct census_buffer *out = bpf_map_lookup_elem(&census_out, &zero);
	if (!out)
		return 1;
	__u64 used = st.out_used;
	__u32 len = st.copy_len & (CENSUS_MAX_COPY - 1);
	if (used > CENSUS_OUT_BYTES) {
		st.truncated++;
		return 0;
	}
	__u64 obj = sw.base + idx * st.size;
	__builtin_memcpy(&out->data[used], &obj, 8);
	if (len > 0 && bpf_probe_read_kernel(&out->data[used + 8], len, (void *)obj) != 0)
		sw.torn = 1;
	st.out_used = used + 8 + len;
	return 0;
}

/* Is the slab the CPU slab of some CPU? Then that CPU's lockless freelist holds more of its free objects. */
static long find_cpu(__u64 cpu, void *unused)
{
	__u32 zero = 0;
	struct census_in *in = bpf_map_lookup_elem(&census_in, &zero);
	if (!in)
		return 1;
	int ok = 1;
	__u64 pcpu = st.cpu_slab + in->cpu_offset[cpu & (CENSUS_MAX_CPUS - 1)];
	__u64 s = read_word(pcpu + bpf_core_field_offset(struct kmem_cache_cpu, slab), &ok);
	if (ok && s == cf.slab) {
		cf.freelist = read_word(pcpu + bpf_core_field_offset(struct kmem_cache_cpu, freelist), &ok);
		cf.found = ok;
		return 1;
	}
	return 0;
}

static long walk_pfn(__u64 i, void *unused)
{
	__u32 zero = 0;
	struct census_in *in = bpf_map_lookup_elem(&census_in, &zero);
	if (!in || st.next >= st.count)
		return 1;
	/* Stop before a slab whose objects might not fit; kleak runs again from `next`. */
	if (st.out_used > 0 && st.out_used + (__u64)CENSUS_MAX_OBJS * (8 + st.copy_len) > CENSUS_OUT_BYTES)
		return 1;
	__u64 pfn = in->words[st.next & (CENSUS_MAX_PFNS - 1)];
	st.next++;
	__u64 page = st.vmemmap + pfn * st.page_struct_size;
	int ok = 1;
	__u64 cache = read_word(page + bpf_core_field_offset(struct slab, slab_cache), &ok);
	if (!ok) {
		st.unreadable++;
		return 0;
	}
	if (cache != st.target)
		return 0;
	st.slabs++;
	__u64 freelist = read_word(page + bpf_core_field_offset(struct slab, freelist), &ok);
	__u64 counters = read_word(page + bpf_core_field_offset(struct slab, counters), &ok);
	if (!ok) {
		st.torn++;
		return 0;
	}
	__u32 objects = (counters >> 16) & 0x7fff;
	__u32 frozen = (counters >> 31) & 1;
	if (objects > CENSUS_MAX_OBJS) {
		st.too_many++;
		return 0;
	}
	__builtin_memset(&sw, 0, sizeof(sw));
	sw.base = st.page_offset + (pfn << st.page_shift);
	sw.objects = objects;
	sw.cursor = freelist;
	bpf_loop(CENSUS_MAX_OBJS, follow_freelist, NULL, 0);
	if (frozen) {
		cf.slab = page;
		cf.freelist = 0;
		cf.found = 0;
		bpf_loop(st.ncpus < CENSUS_MAX_CPUS ? st.ncpus : CENSUS_MAX_CPUS, find_cpu, NULL, 0);
		if (cf.found) {
			sw.cursor = cf.freelist;
			bpf_loop(CENSUS_MAX_OBJS, follow_freelist, NULL, 0);
		} else {
			st.frozen_unmatched++;
		}
	}
	bpf_loop(objects, copy_object, NULL, 0);
	if (sw.torn)
		st.torn++;
	st.objects += objects;
	st.allocated += sw.allocated;
	return 0;
}

static long read_one(__u64 i, void *unused)
{
	__u32 zero = 0;
	struct census_in *in = bpf_map_lookup_elem(&census_in, &zero);
	if (!in || i >= st.count)
		return 1;
	__u32 k = i & (CENSUS_MAX_PFNS - 1);
	__u64 v = 0;
	in->ok[k] = bpf_probe_read_kernel(&v, 8, (void *)in->words[k]) == 0;
	in->words[k] = v;
	return 0;
}

/* SCAN reads struct pages SCAN_GROUP at a time: one helper call per group instead of one per page. */
#define SCAN_GROUP 32
#define SCAN_MAX_PAGE_STRUCT 64
__u8 scan_pages[SCAN_GROUP * SCAN_MAX_PAGE_STRUCT];

static __always_inline int scan_found(__u64 pfn, __u64 page)
{
	__u32 zero = 0;
	struct census_buffer *out = bpf_map_lookup_elem(&census_out, &zero);
	__u64 used = st.out_used;
	if (!out || used > CENSUS_OUT_BYTES - 16)
		return 1;
	int ok = 1;
	__u64 cache = read_word(page + bpf_core_field_offset(struct slab, slab_cache), &ok);
	if (!ok || (st.target != 0 && cache != st.target))
		return 0;
	__builtin_memcpy(&out->data[used], &pfn, 8);
	__builtin_memcpy(&out->data[used + 8], &cache, 8);
	st.out_used = used + 16;
	st.slabs++;
	return 0;
}

static long scan_group(__u64 i, void *unused)
{
	if (st.next >= st.count || st.out_used > CENSUS_OUT_BYTES - 16 * SCAN_GROUP)
		return 1;
	__u64 first = st.next;
	__u64 n = st.count - first < SCAN_GROUP ? st.count - first : SCAN_GROUP;
	__u64 pss = st.page_struct_size;
	__u64 type_at = bpf_core_field_offset(struct page, page_type);
	__u64 slab_type = bpf_core_enum_value(enum pagetype, PGTY_slab);
	st.next = first + n;
	if (pss != SCAN_MAX_PAGE_STRUCT || n != SCAN_GROUP ||
	    bpf_probe_read_kernel(scan_pages, sizeof(scan_pages), (void *)(st.vmemmap + first * pss)) != 0) {
		/* A short group, or one that crosses a hole: page by page. */
		for (__u64 j = 0; j < SCAN_GROUP && j < n; j++) {
			__u64 page = st.vmemmap + (first + j) * pss;
			unsigned int type = 0;
			if (bpf_probe_read_kernel(&type, sizeof(type), (void *)(page + type_at)) != 0) {
				st.unreadable++;
				continue;
			}
			if ((type >> 24) == slab_type && scan_found(first + j, page))
				return 1;
		}
		return 0;
	}
	for (__u64 j = 0; j < SCAN_GROUP; j++) {
		__u64 at = (j * SCAN_MAX_PAGE_STRUCT + type_at) & (sizeof(scan_pages) - 4);
		unsigned int type = *(unsigned int *)&scan_pages[at];
		if ((type >> 24) == slab_type && scan_found(first + j, st.vmemmap + (first + j) * pss))
			return 1;
	}
	return 0;
}

static long percpu_one(__u64 cpu, void *unused)
{
	__u32 zero = 0;
	struct census_in *in = bpf_map_lookup_elem(&census_in, &zero);
	void *p = bpf_map_lookup_percpu_elem(&census_percpu, &zero, cpu);
	if (in && p)
		in->cpu_offset[cpu & (CENSUS_MAX_CPUS - 1)] = (__u64)p;
	return 0;
}

static __always_inline int op_percpu(void)
{
	__u32 zero = 0;
	struct census_in *in = bpf_map_lookup_elem(&census_in, &zero);
	if (!in)
		return -1;
	__u64 pptr = 0;
	/* The map's address as a number: stored and read back through a global, since the verifier forbids arithmetic on
	 * a map pointer (it allows storing it for CAP_PERFMON, which the census needs anyway). */
	map_addr = (__u64)&census_percpu;
	__u64 at = *(volatile __u64 *)&map_addr + bpf_core_field_offset(struct bpf_array, pptrs);
	bpf_probe_read_kernel(&pptr, 8, (void *)at);
	in->pcpu_base = pptr;
	bpf_loop(st.ncpus < CENSUS_MAX_CPUS ? st.ncpus : CENSUS_MAX_CPUS, percpu_one, NULL, 0);
	return 0;
}

static __always_inline int op_caches(void)
{
	struct bpf_iter_kmem_cache it;
	struct kmem_cache *s;
	__u32 zero = 0;
	struct census_buffer *out = bpf_map_lookup_elem(&census_out, &zero);
	if (!out || !bpf_iter_kmem_cache_new)
		return -1;
	bpf_iter_kmem_cache_new(&it);
	while ((s = bpf_iter_kmem_cache_next(&it))) {
		__u64 used = st.out_used;
		if (used > CENSUS_OUT_BYTES - sizeof(struct census_cache))
			break;
		struct census_cache *r = (void *)&out->data[used];
		r->cache = (__u64)s;
		r->cpu_slab = (__u64)BPF_CORE_READ(s, cpu_slab);
		r->size = BPF_CORE_READ(s, size);
		r->object_size = BPF_CORE_READ(s, object_size);
		r->offset = BPF_CORE_READ(s, offset);
		r->flags = BPF_CORE_READ(s, flags);
		r->sheaf_capacity = bpf_core_field_exists(s->sheaf_capacity) ? BPF_CORE_READ(s, sheaf_capacity) : 0;
		r->has_random = bpf_core_field_exists(s->random);
		r->random = r->has_random ? BPF_CORE_READ(s, random) : 0;
		bpf_probe_read_kernel_str(r->name, sizeof(r->name), BPF_CORE_READ(s, name));
		st.out_used = used + sizeof(struct census_cache);
		st.objects++;
	}
	bpf_iter_kmem_cache_destroy(&it);
	return 0;
}

SEC("syscall")
int census(struct census_ctx *ctx)
{
	int ret = 0;
	__builtin_memcpy(&st, ctx, sizeof(st));
	switch (st.op) {
	case CENSUS_OP_CACHES:
		ret = op_caches();
		break;
	case CENSUS_OP_READ:
		bpf_loop(CENSUS_MAX_PFNS, read_one, NULL, 0);
		break;
	case CENSUS_OP_PERCPU:
		ret = op_percpu();
		break;
	case CENSUS_OP_SCAN:
		bpf_loop(CENSUS_SCAN_PFNS / SCAN_GROUP, scan_group, NULL, 0);
		break;
	case CENSUS_OP_WALK:
		bpf_loop(CENSUS_MAX_PFNS, walk_pfn, NULL, 0);
		break;
	default:
		ret = -1;
	}
	__builtin_memcpy(ctx, &st, sizeof(st));
	return ret;
}
