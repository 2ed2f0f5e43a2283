/* kleak.h: what kleak.bpf.c and its reader (src/sources/kernel-bpf.ts) share: the layouts of the config, the
 * records in the maps and the counters. Every field is a fixed-size integer so the reader can decode by offset;
 * a change here is a change in src/kernel/bpf-layout.ts too (test/bpf/layout.test.ts compares them). */
#ifndef KLEAK_H
#define KLEAK_H

#define KLEAK_COMM_LEN 16
#define KLEAK_CACHE_LEN 32
#define KLEAK_BULK_MAX 8192
/* Frames kept per stack: the tracing machinery takes ~4, the rest reach the syscall or irq entry. The walk stops
 * here, and its depth is most of what --stacks costs. */
#define KLEAK_STACK_DEPTH 20
#define KLEAK_STACK_FIRST 16 /* allocations of each site whose stack is always captured with sampled stacks */
#define KLEAK_RCU_NODES 64 /* kfree_rcu bulk pages walked per list and run */

/* Set by kleak before load (read-only data): user values reach the program as data, never as program text. */
struct kleak_config {
	__u64 min_bytes;
	__u64 max_bytes;
	__u32 pid;        /* 0: any process */
	__u32 self_tgid;  /* kleak's own pid: its allocations are not the user's */
	__u32 comm_on;
	__u32 cache_on;
	__u32 stacks;
	__u32 gfp_account; /* __GFP_ACCOUNT's value on this kernel (from BTF): kmalloc-cg-N */
	__u64 rcu_monitor_fn; /* kfree_rcu_monitor's address (kallsyms), 0: do not walk kfree_rcu batches */
	__u64 rcu_work_fn;    /* kfree_rcu_work's address */
	char comm[KLEAK_COMM_LEN];
	char cache[KLEAK_CACHE_LEN];
	__u32 page_size;   /* the system's page size: a page allocation of order N is page_size << N bytes */
	__u32 events;      /* also stream each tracked allocation and its free through the ring buffer (--events) */
	/* Call sites in [own_lo, own_hi) are not tracked: the BPF memory allocator's refill (alloc_bulk), which
	 * kleak's own hash map inserts cause; tracked, each refill's objects would need more inserts, more refills. */
	__u64 own_lo;
	__u64 own_hi;
	/* Whose: each allocation carries its task's memory cgroup (the cgroup of the memory controller's css: v1's
	 * memory hierarchy, or the unified one), as the cgroup's kernfs id, which is its directory's inode number. */
	__u32 cgroups;      /* 1: record it */
	__u32 cgroup_level; /* --cgroup: keep tasks whose memory cgroup has this ancestor at this level... */
	__u64 cgroup_id;    /* ...with this id (0: no filter) */
	/* The possible CPUs: a percpu allocation takes its size on each (the tracepoint's bytes_alloc counts every
	 * per-CPU unit of the chunk, possible or not: 4 units on this 2-CPU VM, twice the memory). */
	__u32 possible_cpus;
	/* --stacks: capture the stack of every allocation (1), or of each site's first KLEAK_STACK_FIRST allocations
	 * and then one in stack_every (N > 1): the stack walk is most of what --stacks costs; counts stay exact. */
	__u32 stack_every;
};

/* One outstanding allocation: the value of the pointer table, keyed by the pointer. */
struct kleak_alloc {
	__u64 ts_ns;      /* bpf_ktime_get_ns: the same clock as the snapshots */
	__u64 call_site;
	__u64 cache_id;   /* struct kmem_cache * of kmem_cache_alloc; 0 for kmalloc */
	__u32 bytes_req;
	__u32 bytes_alloc;
	__u32 pid;
	__s32 stack_id;   /* -1: no stack (not asked, or lost) */
	__u32 flags;      /* KLEAK_F_* */
	__u32 stack_weight; /* allocations its stack stands for: 1, or stack_every for one sampled at random */
	char comm[KLEAK_COMM_LEN];
	__u64 cgroup;     /* the allocating task's memory cgroup id (0: not recorded) */
};

#define KLEAK_F_ACCOUNTED 1
/* The allocator, in bits 8-15 of flags. vmalloc and page allocations have no call site: their call_site holds
 * their stack id + 1 (0: no stack), and kleak names the first frame outside the allocator. */
#define KLEAK_ALLOCATOR_SHIFT 8
enum kleak_allocator {
	KLEAK_A_SLAB = 0,
	KLEAK_A_VMALLOC = 1,
	KLEAK_A_PAGE = 2,
	KLEAK_A_PERCPU = 3,
};

/* --events: one record per tracked allocation (kind 0, with its record) and per free of a tracked pointer
 * (kind 1, ts and pid of the free). Written without a wakeup: kleak reads the ring a few times a second, so no
 * event costs a wakeup (bpftrace's per-event wakeup cost ~11 us here). */
struct kleak_event {
	__u32 kind;
	__u32 pad;
	__u64 ptr;
	struct kleak_alloc a;
};

/* Per call site (or stack, for vmalloc and pages), cache, size and allocator: cumulative since the start (a per-CPU hash: summed by the reader, never drifts). */
struct kleak_site_key {
	__u64 call_site;
	__u64 cache_id;
	__u32 bytes_alloc;
	__u32 flags;
};

struct kleak_site_counts {
	__u64 allocs;
	__u64 frees;
	__u64 missed;
	__u64 alloc_bytes;
	__u64 free_bytes;
	__u64 missed_bytes;
};

/* Indexes into the per-CPU counters array. */
enum kleak_counter {
	KLEAK_UNTRACKED = 0,  /* allocations the full pointer table could not hold */
	KLEAK_STACK_LOST,     /* allocations whose stack could not be stored (stack map full or a hash collision) */
	KLEAK_RCU_FREES,      /* tracked pointers handed to kfree_rcu / kvfree_rcu */
	KLEAK_BULK_FREES,     /* tracked pointers freed through kmem_cache_free_bulk / kfree_bulk */
	KLEAK_BULK_CUT,       /* bulk frees longer than KLEAK_BULK_MAX: the rest was not looked at */
	KLEAK_RCU_BATCHES,    /* kfree_rcu batches walked */
	KLEAK_RCU_CUT,        /* kfree_rcu batch lists longer than kleak walks: the rest was not looked at */
	KLEAK_RB_LOST,        /* events the ring buffer had no room for (--events) */
	KLEAK_COUNTERS,
};

#endif
