// SPDX-License-Identifier: GPL-2.0
/* kleak.bpf.c: kleak's own BPF program (the `kernel` backend). Pairs slab allocations with their frees in the
 * kernel, keyed by pointer, and keeps per-site totals; kleak reads the maps once an interval
 * (src/sources/kernel-bpf.ts). Nothing crosses to userspace per event.
 *
 * Why this and not bpftrace: tp_btf programs get the tracepoint's arguments without the kernel first filling a
 * trace record (measured here: ~1.03x for empty programs against bpftrace's ~1.3x floor); counts live in per-CPU
 * maps and an atomic, so they cannot drift under load; and kleak reads the pointer table with batch lookups that
 * tolerate entries freed while it reads (bpftrace 0.17's print() aborts on them).
 *
 * Frees no kmem tracepoint shows (docs/formats.md): kfree_rcu()/kvfree_rcu() hand the object to kvfree_call_rcu(),
 * which stores the pointer in a per-CPU page of pointers (struct kvfree_rcu_bulk_data); a grace period later
 * kfree_bulk()/kmem_cache_free_bulk() returns the memory, and neither emits kmem:kfree per object. Two ways in:
 * - where the kernel allows fentry, kleak counts an object freed when it is handed to kvfree_call_rcu (its owner
 *   is done with it; the grace period only delays the memory's return) and walks kmem_cache_free_bulk's array;
 * - everywhere (this project's VM refuses fentry and has no kprobes), the RCU machinery's own work items are
 *   tracepoint-visible: workqueue_execute_start for kfree_rcu_monitor (which moves every pending page of
 *   pointers towards freeing) and kfree_rcu_work (which frees them). kleak walks those pages when the work
 *   starts: every pointer in them has been handed to kfree_rcu. */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "kleak.h"

char LICENSE[] SEC("license") = "GPL";

/* CO-RE: only the fields kleak reads; libbpf finds them in the running kernel's BTF wherever they are. */
struct kmem_cache {
	unsigned int size;
	unsigned int object_size;
	const char *name;
} __attribute__((preserve_access_index));

/* The allocating task's memory cgroup: task->cgroups->subsys[memory_cgrp_id]->cgroup, read without taking a
 * reference (the task is current, and its css_set cannot go while it runs). */
struct kernfs_node {
	__u64 id;
} __attribute__((preserve_access_index));

struct cgroup {
	struct kernfs_node *kn;
	int level;
	struct cgroup *ancestors[];
} __attribute__((preserve_access_index));

struct cgroup_subsys_state {
	struct cgroup *cgroup;
} __attribute__((preserve_access_index));

struct css_set {
	struct cgroup_subsys_state *subsys[16];
} __attribute__((preserve_access_index));

struct task_struct {
	struct css_set *cgroups;
} __attribute__((preserve_access_index));

enum cgroup_subsys_id {
	memory_cgrp_id = 4,
};

struct list_head {
	struct list_head *next;
} __attribute__((preserve_access_index));

struct work_struct {
	void *func;
} __attribute__((preserve_access_index));

struct delayed_work {
	struct work_struct work;
} __attribute__((preserve_access_index));

struct rcu_work {
	struct work_struct work;
} __attribute__((preserve_access_index));

struct kvfree_rcu_bulk_data {
	struct list_head list;
	unsigned long nr_records;
	void *records[];
} __attribute__((preserve_access_index));

struct kfree_rcu_cpu {
	struct list_head bulk_head[2];
	struct delayed_work monitor_work;
} __attribute__((preserve_access_index));

struct kfree_rcu_cpu_work {
	struct rcu_work rcu_work;
	struct list_head bulk_head_free[2];
} __attribute__((preserve_access_index));

const volatile struct kleak_config cfg = {};

/* Pointers in the table: insertions that succeeded minus deletions that succeeded (atomics: exact on every CPU).
 * A kfree when it is 0 costs no map lookup, which is what the common "nothing tracked yet" case pays. */
__u64 tracked = 0;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	/* Not preallocated: the table takes kernel memory for what it holds, up to max_entries (set by kleak). */
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1);
	__type(key, __u64);
	__type(value, struct kleak_alloc);
} ptrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct kleak_site_key);
	__type(value, struct kleak_site_counts);
} sites SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, char[KLEAK_CACHE_LEN]);
} cache_names SEC(".maps");

/* The last memory css each CPU named, with its cgroup's id and whether --cgroup keeps it. A css is freed only after
 * its cgroup is gone and a grace period; one reused at the same address for another cgroup before this CPU's next
 * allocation would lend it the old name once. */
struct kleak_cgroup_seen {
	__u64 css;
	__u64 id;
	__u32 pass;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct kleak_cgroup_seen);
} cgroup_seen SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, KLEAK_COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096); /* kleak sets it: 4 KiB without --events */
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 1); /* kleak sets it: 1 without --stacks */
	__uint(key_size, sizeof(__u32));
	__uint(value_size, KLEAK_STACK_DEPTH * sizeof(__u64));
} stacks SEC(".maps");

static __always_inline void bump(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);
	if (v)
		*v += 1;
}

static __always_inline struct kleak_site_counts *site_of(const struct kleak_alloc *a)
{
	struct kleak_site_key k = { .call_site = a->call_site, .cache_id = a->cache_id, .bytes_alloc = a->bytes_alloc, .flags = a->flags };
	struct kleak_site_counts *c = bpf_map_lookup_elem(&sites, &k);
	if (c)
		return c;
	struct kleak_site_counts zero = {};
	bpf_map_update_elem(&sites, &k, &zero, BPF_NOEXIST);
	return bpf_map_lookup_elem(&sites, &k);
}

static __always_inline int same(const char *a, const volatile char *b, int n)
{
	for (int i = 0; i < n; i++) {
		if (a[i] != b[i])
			return 0;
		if (a[i] == 0)
			return 1;
	}
	return 1;
}

static __always_inline int on_alloc(void *ctx, __u64 call_site, __u64 ptr, __u32 bytes_req, __u32 bytes_alloc,
				    struct kmem_cache *s, __u32 flags)
{
	if (!ptr || bytes_alloc < cfg.min_bytes || bytes_alloc > cfg.max_bytes)
		return 0;
	if (call_site >= cfg.own_lo && call_site < cfg.own_hi)
		return 0;
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	if ((cfg.pid && tgid != cfg.pid) || tgid == cfg.self_tgid)
		return 0;
	struct kleak_alloc a = {};
	if (cfg.cgroups) {
		/* Direct loads through the task's BTF pointer (plain loads with a fault fixup, not helper calls). The
		 * memory css is two loads from the task; its cgroup's id three more, usually cold in the cache: each CPU
		 * remembers the last css it named (consecutive allocations on a CPU are mostly one task's). */
		struct task_struct *task = bpf_get_current_task_btf();
		__u32 id = bpf_core_enum_value(enum cgroup_subsys_id, memory_cgrp_id) & 15;
		struct cgroup_subsys_state *css = task->cgroups->subsys[id];
		__u32 zero = 0;
		struct kleak_cgroup_seen *seen = bpf_map_lookup_elem(&cgroup_seen, &zero);
		if (seen && seen->css == (__u64)css) {
			a.cgroup = seen->id;
			if (!seen->pass)
				return 0;
		} else {
			struct cgroup *cg = css->cgroup;
			__u32 pass = 1;
			a.cgroup = cg->kn->id;
			if (cfg.cgroup_id) {
				/* --cgroup: the task's memory cgroup is that cgroup or below it. */
				__u32 level = cfg.cgroup_level & 255;
				struct cgroup *anc = NULL;
				/* ancestors[] is a flexible array, which the verifier does not let a BTF pointer index: a read. */
				if (cg->level < (int)level || bpf_core_read(&anc, sizeof(anc), &cg->ancestors[level]) != 0 || BPF_CORE_READ(anc, kn, id) != cfg.cgroup_id)
					pass = 0;
			}
			if (seen) {
				seen->css = (__u64)css;
				seen->id = a.cgroup;
				seen->pass = pass;
			}
			if (!pass)
				return 0;
		}
	}
	bpf_get_current_comm(a.comm, sizeof(a.comm));
	if (cfg.comm_on && !same(a.comm, cfg.comm, KLEAK_COMM_LEN))
		return 0;
	if (s) {
		a.cache_id = (__u64)s;
		char *known = bpf_map_lookup_elem(&cache_names, &a.cache_id);
		if (!known || cfg.cache_on) {
			char name[KLEAK_CACHE_LEN] = {};
			bpf_probe_read_kernel_str(name, sizeof(name), BPF_CORE_READ(s, name));
			if (cfg.cache_on && !same(name, cfg.cache, KLEAK_CACHE_LEN))
				return 0;
			if (!known)
				bpf_map_update_elem(&cache_names, &a.cache_id, name, BPF_NOEXIST);
		}
	}
	a.ts_ns = bpf_ktime_get_ns();
	a.call_site = call_site;
	a.bytes_req = bytes_req;
	a.bytes_alloc = bytes_alloc;
	a.pid = tgid;
	a.flags = flags;
	a.stack_id = -1;
	__u32 allocator = flags >> KLEAK_ALLOCATOR_SHIFT;
	int by_stack = allocator == KLEAK_A_VMALLOC || allocator == KLEAK_A_PAGE;
	int want_stack = by_stack;
	a.stack_weight = 1;
	/* The site's counters, found once: for the stack sample here and the counts below (a vmalloc area's or a
	 * page's site is its stack, so theirs is found after it). */
	struct kleak_site_counts *c = NULL;
	if (cfg.stacks && !by_stack) {
		/* Sampled: every site's first allocations (each standing for itself), then one in stack_every at random
		 * (standing for stack_every), so the reader's estimate of each stack's share is not biased towards the
		 * paths a site took first (docs/design.md "Stacks"). */
		want_stack = 1;
		if (cfg.stack_every > 1) {
			c = site_of(&a);
			if (c && c->allocs >= KLEAK_STACK_FIRST) {
				want_stack = bpf_get_prandom_u32() % cfg.stack_every == 0;
				a.stack_weight = cfg.stack_every;
			}
		}
	}
	if (want_stack) {
		/* Hash-only compare: two stacks with one hash would share an id, which at 32 bits is rarer than the
		 * collisions the full compare reports as lost. */
		long id = bpf_get_stackid(ctx, &stacks, BPF_F_FAST_STACK_CMP);
		if (id >= 0)
			a.stack_id = id;
		else
			bump(KLEAK_STACK_LOST);
	}
	if (by_stack)
		a.call_site = a.stack_id + 1;

	/* Insert first: the common case (a new pointer) costs one map operation, not a lookup and an update. */
	long err = bpf_map_update_elem(&ptrs, &ptr, &a, BPF_NOEXIST);
	if (err == -17 /* EEXIST */) {
		/* Allocated again while tracked: its free went by a path kleak does not see (or was lost). */
		struct kleak_alloc *old = bpf_map_lookup_elem(&ptrs, &ptr);
		if (old) {
			struct kleak_site_counts *oc = site_of(old);
			if (oc) {
				oc->missed += 1;
				oc->missed_bytes += old->bytes_alloc;
			}
		}
		if (bpf_map_update_elem(&ptrs, &ptr, &a, BPF_EXIST) != 0) {
			bump(KLEAK_UNTRACKED);
			return 0;
		}
	} else if (err) {
		bump(KLEAK_UNTRACKED); /* the table is full */
		return 0;
	} else {
		__sync_fetch_and_add(&tracked, 1);
	}
	if (!c)
		c = site_of(&a);
	if (c) {
		c->allocs += 1;
		c->alloc_bytes += bytes_alloc;
	}
	if (cfg.events) {
		struct kleak_event e = { .kind = 0, .ptr = ptr, .a = a };
		if (bpf_ringbuf_output(&events, &e, sizeof(e), BPF_RB_NO_WAKEUP))
			bump(KLEAK_RB_LOST);
	}
	return 0;
}

static __always_inline int on_free(__u64 ptr)
{
	if (!ptr || !tracked)
		return 0;
	struct kleak_alloc *a = bpf_map_lookup_elem(&ptrs, &ptr);
	if (!a)
		return 0;
	struct kleak_alloc copy = *a;
	if (bpf_map_delete_elem(&ptrs, &ptr) != 0)
		return 0; /* another CPU took it first */
	__sync_fetch_and_add(&tracked, -1);
	struct kleak_site_counts *c = site_of(&copy);
	if (c) {
		c->frees += 1;
		c->free_bytes += copy.bytes_alloc;
	}
	if (cfg.events) {
		struct kleak_event e = { .kind = 1, .ptr = ptr };
		e.a.ts_ns = bpf_ktime_get_ns();
		e.a.pid = bpf_get_current_pid_tgid() >> 32;
		if (bpf_ringbuf_output(&events, &e, sizeof(e), BPF_RB_NO_WAKEUP))
			bump(KLEAK_RB_LOST);
	}
	return 1;
}

SEC("tp_btf/kmalloc")
int BPF_PROG(kmalloc, unsigned long call_site, const void *ptr, unsigned long bytes_req, unsigned long bytes_alloc, unsigned int gfp_flags)
{
	__u32 flags = (cfg.gfp_account && (gfp_flags & cfg.gfp_account)) ? KLEAK_F_ACCOUNTED : 0;
	return on_alloc(ctx, call_site, (__u64)ptr, bytes_req, bytes_alloc, 0, flags);
}

SEC("tp_btf/kmem_cache_alloc")
int BPF_PROG(kmem_cache_alloc, unsigned long call_site, const void *ptr, struct kmem_cache *s)
{
	if (!s)
		return 0;
	return on_alloc(ctx, call_site, (__u64)ptr, BPF_CORE_READ(s, object_size), BPF_CORE_READ(s, size), s, 0);
}

/* vmalloc: areas are keyed by their start address; the size includes the guard page. */
SEC("tp_btf/alloc_vmap_area")
int BPF_PROG(alloc_vmap_area, unsigned long addr, unsigned long size, unsigned long align, unsigned long vstart,
	     unsigned long vend, int failed)
{
	if (failed)
		return 0;
	return on_alloc(ctx, 0, addr, size, size, 0, KLEAK_A_VMALLOC << KLEAK_ALLOCATOR_SHIFT);
}

SEC("tp_btf/free_vmap_area_noflush")
int BPF_PROG(free_vmap_area_noflush, unsigned long va_start)
{
	on_free(va_start);
	return 0;
}

/* Pages: keyed by their struct page (the tracepoint's own argument; no pfn arithmetic needed). */
SEC("tp_btf/mm_page_alloc")
int BPF_PROG(mm_page_alloc, void *page, unsigned int order)
{
	if (!page)
		return 0;
	__u64 bytes = (__u64)cfg.page_size << order;
	return on_alloc(ctx, 0, (__u64)page, bytes, bytes, 0, KLEAK_A_PAGE << KLEAK_ALLOCATOR_SHIFT);
}

SEC("tp_btf/mm_page_free")
int BPF_PROG(mm_page_free, void *page)
{
	on_free((__u64)page);
	return 0;
}

SEC("tp_btf/mm_page_free_batched")
int BPF_PROG(mm_page_free_batched, void *page)
{
	on_free((__u64)page);
	return 0;
}

/* percpu: keyed by the __percpu pointer. Its memory is the size on each possible CPU; the tracepoint's bytes_alloc
 * is the size times the chunk's units, which counts units no CPU backs (docs/allocators.md). */
SEC("tp_btf/percpu_alloc_percpu")
int BPF_PROG(percpu_alloc_percpu, unsigned long call_site, unsigned long reserved, unsigned long is_atomic, unsigned long size,
	     unsigned long align, void *base_addr, int off, void *ptr, unsigned long bytes_alloc)
{
	__u64 bytes = cfg.possible_cpus ? size * cfg.possible_cpus : bytes_alloc;
	return on_alloc(ctx, call_site, (__u64)ptr, size, bytes, 0, KLEAK_A_PERCPU << KLEAK_ALLOCATOR_SHIFT);
}

SEC("tp_btf/percpu_free_percpu")
int BPF_PROG(percpu_free_percpu, void *base_addr, int off, void *ptr)
{
	on_free((__u64)ptr);
	return 0;
}

SEC("tp_btf/kfree")
int BPF_PROG(kfree, unsigned long call_site, const void *ptr)
{
	return on_free((__u64)ptr);
}

SEC("tp_btf/kmem_cache_free")
int BPF_PROG(kmem_cache_free, unsigned long call_site, const void *ptr)
{
	return on_free((__u64)ptr);
}

/* kvfree_call_rcu(head, ptr) since 5.19-ish; before, kvfree_call_rcu(head, func) with func the rcu_head's offset
 * in the object (kfree_rcu) or, with no head, the object itself (kvfree_rcu with one argument). */
SEC("fentry/kvfree_call_rcu")
int BPF_PROG(kvfree_call_rcu, void *head, void *arg)
{
	__u64 ptr = (__u64)arg;
	if (head && ptr < 4096)
		ptr = (__u64)head - ptr;
	if (on_free(ptr))
		bump(KLEAK_RCU_FREES);
	return 0;
}

struct bulk_walk {
	void **p;
};

static long free_one(__u64 i, struct bulk_walk *w)
{
	void *obj = 0;
	bpf_probe_read_kernel(&obj, sizeof(obj), &w->p[i]);
	if (on_free((__u64)obj))
		bump(KLEAK_BULK_FREES);
	return 0;
}

SEC("fentry/kmem_cache_free_bulk")
int BPF_PROG(kmem_cache_free_bulk, void *s, unsigned long size, void **p)
{
	if (!tracked || !p)
		return 0;
	struct bulk_walk w = { .p = p };
	__u32 n = size;
	if (size > KLEAK_BULK_MAX) {
		n = KLEAK_BULK_MAX;
		bump(KLEAK_BULK_CUT);
	}
	bpf_loop(n, free_one, &w, 0);
	return 0;
}

struct records_walk {
	__u64 records; /* address of records[0] */
};

static long free_record(__u64 i, struct records_walk *w)
{
	void *obj = 0;
	bpf_probe_read_kernel(&obj, sizeof(obj), (void *)(w->records + i * sizeof(void *)));
	if (on_free((__u64)obj))
		bump(KLEAK_RCU_FREES);
	return 0;
}

struct node_walk {
	__u64 head; /* the list's struct list_head */
	__u64 node; /* the next node's list_head */
};

/* One kvfree_rcu_bulk_data page: free every pointer in it, then step to the next page. */
static long walk_node(__u64 n, struct node_walk *w)
{
	if (!w->node || w->node == w->head)
		return 1;
	__u64 bnode = w->node - bpf_core_field_offset(struct kvfree_rcu_bulk_data, list);
	unsigned long nr = 0;
	bpf_probe_read_kernel(&nr, sizeof(nr), (void *)(bnode + bpf_core_field_offset(struct kvfree_rcu_bulk_data, nr_records)));
	struct records_walk r = { .records = bnode + bpf_core_field_offset(struct kvfree_rcu_bulk_data, records) };
	bpf_loop(nr > KLEAK_BULK_MAX ? KLEAK_BULK_MAX : nr, free_record, &r, 0);
	bpf_probe_read_kernel(&w->node, sizeof(w->node), (void *)w->node);
	return 0;
}

/* Walks one list of kvfree_rcu_bulk_data pages and frees every pointer in them. Read without the kernel's lock:
 * a page being filled meanwhile shows fewer records, and the rest are read when kfree_rcu_work takes the page. */
static __always_inline void walk_bulk_list(__u64 head)
{
	struct node_walk w = { .head = head };
	bpf_probe_read_kernel(&w.node, sizeof(w.node), (void *)head);
	bpf_loop(KLEAK_RCU_NODES, walk_node, &w, 0);
	if (w.node && w.node != head)
		bump(KLEAK_RCU_CUT);
}

SEC("tp_btf/workqueue_execute_start")
int BPF_PROG(workqueue_execute_start, struct work_struct *work)
{
	if (!cfg.rcu_monitor_fn || !tracked)
		return 0;
	if (!bpf_core_field_exists(struct kfree_rcu_cpu, bulk_head) || !bpf_core_field_exists(struct kfree_rcu_cpu_work, bulk_head_free))
		return 0;
	__u64 fn = (__u64)BPF_CORE_READ(work, func);
	__u64 w = (__u64)work;
	if (fn == cfg.rcu_monitor_fn) {
		__u64 krcp = w - bpf_core_field_offset(struct kfree_rcu_cpu, monitor_work) - bpf_core_field_offset(struct delayed_work, work);
		__u64 heads = krcp + bpf_core_field_offset(struct kfree_rcu_cpu, bulk_head);
		walk_bulk_list(heads);
		walk_bulk_list(heads + sizeof(struct list_head));
		bump(KLEAK_RCU_BATCHES);
	} else if (fn == cfg.rcu_work_fn) {
		__u64 krwp = w - bpf_core_field_offset(struct kfree_rcu_cpu_work, rcu_work) - bpf_core_field_offset(struct rcu_work, work);
		__u64 heads = krwp + bpf_core_field_offset(struct kfree_rcu_cpu_work, bulk_head_free);
		walk_bulk_list(heads);
		walk_bulk_list(heads + sizeof(struct list_head));
		bump(KLEAK_RCU_BATCHES);
	}
	return 0;
}
