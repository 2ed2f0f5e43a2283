/* census.h: what kleak's census program (census.bpf.c) and kleak (src/census/layout.ts) share. Every field is a
 * __u64 or a fixed array of them, so that both sides agree on offsets without padding rules. */
#ifndef KLEAK_CENSUS_H
#define KLEAK_CENSUS_H

#define CENSUS_OP_CACHES 1
#define CENSUS_OP_READ 2
#define CENSUS_OP_PERCPU 3
#define CENSUS_OP_WALK 4
#define CENSUS_OP_SCAN 5   /* slab head pfns in [next, count), read from struct page: (pfn, kmem_cache *) pairs */
#define CENSUS_SCAN_PFNS 32768 /* pfns scanned per run: about a millisecond */

#define CENSUS_MAX_PFNS 4096 /* pfns (or words to read) handed in per run */
#define CENSUS_MAX_CPUS 64   /* CPUs whose lockless freelists are walked (power of two) */
#define CENSUS_MAX_OBJS 1024 /* objects per slab the walk marks; a larger slab is counted, not walked */
#define CENSUS_MAX_COPY 256  /* bytes of each allocated object handed to kleak (power of two) */
#define CENSUS_OUT_BYTES (4 << 20)

/* The program's context: kleak fills the first part, the program the second; the kernel copies it back. */
struct census_ctx {
	__u64 op;
	__u64 target;           /* struct kmem_cache * of the cache to walk */
	__u64 page_offset;      /* direct map base */
	__u64 vmemmap;          /* struct page of pfn 0 */
	__u64 page_struct_size; /* sizeof(struct page) */
	__u64 page_shift;
	__u64 ncpus;
	__u64 count;            /* pfns (WALK) or words (READ) in census_in */
	__u64 next;             /* WALK: index of the next pfn; kleak runs again from here while next < count */
	__u64 copy_len;         /* bytes of each allocated object to copy, a multiple of 8, < CENSUS_MAX_COPY */
	__u64 cpu_slab;         /* the target's s->cpu_slab (a per-CPU pointer) */
	__u64 size;             /* s->size: the stride of objects in a slab */
	__u64 free_offset;      /* s->offset: where a free object keeps its next pointer */
	__u64 hardened;         /* CONFIG_SLAB_FREELIST_HARDENED: next pointers are stored obfuscated */
	__u64 random;           /* s->random */
	/* results */
	__u64 out_used;         /* bytes written to census_out */
	__u64 slabs;            /* slabs of the target seen */
	__u64 objects;          /* their object slots (CACHES: caches listed) */
	__u64 allocated;        /* allocated objects found */
	__u64 torn;             /* slabs whose free lists changed under the walk or did not validate */
	__u64 unreadable;       /* pfns whose struct slab could not be read */
	__u64 truncated;        /* allocated objects that did not fit in census_out */
	__u64 frozen_unmatched; /* CPU slabs whose CPU was not found (their lockless free objects count as allocated) */
	__u64 too_many;         /* slabs with more than CENSUS_MAX_OBJS objects, not walked */
};

/* Input too large for the context (which the program can index only at fixed offsets). */
struct census_in {
	__u64 words[CENSUS_MAX_PFNS]; /* WALK: slab head pfns; READ: addresses, replaced by the words read */
	__u64 ok[CENSUS_MAX_PFNS];    /* READ: 1 where the word could be read */
	__u64 cpu_offset[CENSUS_MAX_CPUS]; /* WALK: each CPU's per-CPU offset; PERCPU: filled by the program */
	__u64 pcpu_base;              /* PERCPU: the map's own per-CPU pointer */
};

/* One cache, as CENSUS_OP_CACHES writes it to census_out. */
struct census_cache {
	__u64 cache;
	__u64 cpu_slab;
	__u64 size;
	__u64 object_size;
	__u64 offset;
	__u64 flags;
	__u64 sheaf_capacity;
	__u64 random;
	__u64 has_random;
	char name[64];
};

#endif
