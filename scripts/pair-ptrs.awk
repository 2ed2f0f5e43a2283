#!/usr/bin/awk -f
# The by-hand method kleak replaces (and the baseline scripts/bench-replay measures it against): pair kmalloc /
# kmem_cache_alloc pointers with kfree / kmem_cache_free pointers in `trace-cmd report` or trace_pipe text and
# print the outstanding count per call-site function.   usage: awk -f scripts/pair-ptrs.awk trace.report
/ (kmalloc|kmem_cache_alloc|kmalloc_node|kmem_cache_alloc_node): / {
  if (match($0, /ptr=[^ ]+/) == 0) next
  p = substr($0, RSTART + 4, RLENGTH - 4)
  match($0, /call_site=[^ +\/]+/)
  site[p] = substr($0, RSTART + 10, RLENGTH - 10)
  next
}
/ (kfree|kmem_cache_free): / {
  if (match($0, /ptr=[^ ]+/)) delete site[substr($0, RSTART + 4, RLENGTH - 4)]
}
END {
  for (p in site) if (p != "(nil)" && p !~ /^0+$/) n[site[p]]++
  for (f in n) print n[f], f
}
