// Each memory cgroup's kernel memory, as the kernel keeps it (docs/cgroups.md):
// - cgroup v1: memory.kmem.usage_in_bytes (slab, stacks, page tables... charged to it and its descendants) and
//   memory.kmem.tcp.usage_in_bytes;
// - cgroup v2: memory.stat's kernel lines (kernel, slab_reclaimable, slab_unreclaimable, kernel_stack, pagetables,
//   percpu, sock, vmalloc), in bytes.
// And the dying memory cgroups: removed, invisible, still counted because memory charged to them is still held
// (v1: /proc/cgroups' num_cgroups for memory less the folders; v2: cgroup.stat's nr_dying_descendants).
// Read under a root directory (/ or a copy taken from another host). Pure parsing beside the reading.

import { readdirSync, readFileSync, statSync } from 'node:fs';

export interface MemcgSample {
  /** The cgroup's path in the memory hierarchy: "/" or "/kubepods/…". */
  path: string;
  /** Kernel memory charged to it and below it, bytes. */
  bytes: number;
  /** v1 memory.kmem.tcp.usage_in_bytes; v2 the memory.stat kernel lines, bytes. */
  parts?: Record<string, number>;
}

export interface MemcgReading {
  version: 1 | 2;
  cgroups: MemcgSample[];
  /** Dying memory cgroups, when the kernel says. */
  dying?: number;
}

/** memory.stat lines that are kernel memory (cgroup v2), in bytes. */
export const V2_KERNEL_KEYS = ['kernel', 'slab_reclaimable', 'slab_unreclaimable', 'kernel_stack', 'pagetables', 'percpu', 'sock', 'vmalloc'] as const;

/** Cgroups read at most: a host with more is read in part (breadth first, so the top of the tree is there). */
const MAX_CGROUPS = 5000;

const readText = (p: string): string | undefined => {
  try {
    return readFileSync(p, 'utf8');
  } catch {
    return undefined;
  }
};

const isDir = (p: string) => {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
};

/** The memory cgroups under `root` (/ or --root DIR), or undefined when none is mounted there. */
export function readMemcgs(root = ''): MemcgReading | undefined {
  const v1 = `${root}/sys/fs/cgroup/memory`;
  if (isDir(v1) && readText(`${v1}/memory.kmem.usage_in_bytes`) !== undefined) return readTree(v1, 1, root);
  const v2 = isDir(`${root}/sys/fs/cgroup/unified`) && readText(`${root}/sys/fs/cgroup/unified/cgroup.controllers`)?.split(/\s+/).includes('memory') ? `${root}/sys/fs/cgroup/unified` : `${root}/sys/fs/cgroup`;
  if (readText(`${v2}/cgroup.controllers`)?.split(/\s+/).includes('memory')) return readTree(v2, 2, root);
  return undefined;
}

function readTree(mount: string, version: 1 | 2, root: string): MemcgReading {
  const cgroups: MemcgSample[] = [];
  const queue = [''];
  let folders = 0;
  for (let i = 0; i < queue.length && folders < MAX_CGROUPS; i++) {
    const rel = queue[i]!;
    const dir = mount + rel;
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      continue; // removed while read
    }
    folders++;
    for (const e of entries) if (e.isDirectory()) queue.push(`${rel}/${e.name}`);
    const s = version === 1 ? v1Sample(dir) : v2Sample(dir);
    if (s) cgroups.push({ path: rel === '' ? '/' : rel, ...s });
  }
  let dying: number | undefined;
  if (version === 1) {
    const row = parseProcCgroups(readText(`${root}/proc/cgroups`) ?? '').get('memory');
    if (row !== undefined && folders < MAX_CGROUPS) dying = Math.max(0, row - folders);
  } else {
    const m = /^nr_dying_descendants (\d+)$/m.exec(readText(`${mount}/cgroup.stat`) ?? '');
    if (m) dying = Number(m[1]);
  }
  return { version, cgroups, ...(dying !== undefined ? { dying } : {}) };
}

function v1Sample(dir: string): Omit<MemcgSample, 'path'> | undefined {
  const kmem = Number(readText(`${dir}/memory.kmem.usage_in_bytes`)?.trim());
  if (!Number.isFinite(kmem)) return undefined;
  const tcp = Number(readText(`${dir}/memory.kmem.tcp.usage_in_bytes`)?.trim());
  return { bytes: kmem, ...(Number.isFinite(tcp) ? { parts: { tcp } } : {}) };
}

function v2Sample(dir: string): Omit<MemcgSample, 'path'> | undefined {
  const stat = readText(`${dir}/memory.stat`);
  if (stat === undefined) return undefined;
  const parts = parseMemoryStat(stat);
  if (Object.keys(parts).length === 0) return undefined;
  // "kernel" (5.18+) already sums the kernel lines; older kernels have only the parts.
  const bytes = parts.kernel ?? V2_KERNEL_KEYS.filter((k) => k !== 'kernel').reduce((n, k) => n + (parts[k] ?? 0), 0);
  return { bytes, parts };
}

/** The kernel lines of a v2 memory.stat, by name. */
export function parseMemoryStat(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const [k, v] = line.split(' ');
    if (k !== undefined && (V2_KERNEL_KEYS as readonly string[]).includes(k) && /^\d+$/.test(v ?? '')) out[k] = Number(v);
  }
  return out;
}

/** num_cgroups by controller from /proc/cgroups ("#subsys_name hierarchy num_cgroups enabled"). */
export function parseProcCgroups(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length >= 4 && !f[0]!.startsWith('#') && /^\d+$/.test(f[2]!)) out.set(f[0]!, Number(f[2]));
  }
  return out;
}

/**
 * What a container runtime's cgroup path is: a Kubernetes pod (and its container), a Docker, Podman or CRI
 * container, a systemd service; undefined for other paths.
 */
export function containerOf(path: string): string | undefined {
  const leaf = path.split('/').pop() ?? '';
  const id = (x: string) => x.slice(0, 12);
  const pod = /pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})/.exec(path);
  const ctr = /(?:cri-containerd-|crio-|docker-|libpod-)?([0-9a-f]{64})(?:\.scope)?$/.exec(leaf);
  if (pod) return `pod ${pod[1]!.replace(/_/g, '-')}${ctr ? ` container ${id(ctr[1]!)}` : ''}`;
  const runtime = /^(docker|libpod|cri-containerd|crio)-([0-9a-f]{64})\.scope$/.exec(leaf);
  if (runtime) return `${runtime[1] === 'libpod' ? 'podman' : runtime[1]} container ${id(runtime[2]!)}`;
  if (/^[0-9a-f]{64}$/.test(leaf) && /\/docker\//.test(path)) return `docker container ${id(leaf)}`;
  const service = /^(.+)\.service$/.exec(leaf);
  if (service) return `service ${service[1]}`;
  return undefined;
}
