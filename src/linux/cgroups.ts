// Memory cgroups by name: where the memory controller's hierarchy is mounted (cgroup v1's "memory" hierarchy, or
// the unified v2 one), and a cgroup's kernfs id (what kleak's BPF program records per allocation) to its path and
// back. A cgroup's id is its directory's inode number (kernfs gives each node its id as inode). See docs/cgroups.md.

import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { InputError } from '../errors.js';
import { visible } from '../output.js';

export interface MemoryHierarchy {
  /** Where it is mounted (/sys/fs/cgroup/memory on v1). */
  mount: string;
  version: 1 | 2;
}

/** The memory controller's hierarchy from /proc/self/mountinfo, or undefined when the controller is not mounted. */
export function memoryHierarchy(mountinfo = readOrEmpty('/proc/self/mountinfo')): MemoryHierarchy | undefined {
  let v2: string | undefined;
  for (const line of mountinfo.split('\n')) {
    // "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS"
    const dash = line.indexOf(' - ');
    if (dash < 0) continue;
    const mountPoint = unescapeMount(line.slice(0, dash).split(' ')[4] ?? '');
    const [fstype, , superOptions = ''] = line.slice(dash + 3).split(' ');
    if (fstype === 'cgroup' && superOptions.split(',').includes('memory')) return { mount: mountPoint, version: 1 };
    if (fstype === 'cgroup2' && v2 === undefined) v2 = mountPoint;
  }
  if (v2 !== undefined && readOrEmpty(`${v2}/cgroup.controllers`).split(/\s+/).includes('memory')) return { mount: v2, version: 2 };
  return undefined;
}

/** mountinfo escapes space, tab, newline and backslash as octal. */
const unescapeMount = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));

function readOrEmpty(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

/** Cgroup ids to paths ("/" the root, "/kubepods/pod…"), read from the hierarchy's directories when one is unknown. */
export class CgroupNames {
  private readonly byId = new Map<bigint, string>();
  private lastWalk = -Infinity;

  constructor(
    private readonly hierarchy: MemoryHierarchy,
    /** At most one walk of the hierarchy this often: an id that stays unknown is a removed (dying) cgroup. */
    private readonly minWalkMs = 1000,
  ) {}

  name(id: bigint): string {
    if (id === 0n) return '';
    let n = this.byId.get(id);
    if (n === undefined && performance.now() - this.lastWalk >= this.minWalkMs) {
      this.walk();
      n = this.byId.get(id);
    }
    return n ?? `(removed cgroup ${id})`;
  }

  private walk(): void {
    this.lastWalk = performance.now();
    // Breadth first, bounded: a host with a million cgroups must not stall a report.
    const queue: string[] = [''];
    for (let i = 0; i < queue.length && this.byId.size < 100_000; i++) {
      const rel = queue[i]!;
      const dir = this.hierarchy.mount + rel;
      try {
        this.byId.set(statSync(dir, { bigint: true }).ino, rel === '' ? '/' : rel);
        for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) queue.push(`${rel}/${e.name}`);
      } catch {
        // removed while walking
      }
    }
  }
}

/**
 * --cgroup PATH as the BPF filter wants it: the cgroup's id and its level (the root is level 0). PATH is relative to
 * the memory hierarchy ("/kleak-a", "kubepods/pod1") or a directory under its mount.
 */
export function resolveCgroup(h: MemoryHierarchy, path: string): { id: bigint; level: number; path: string } {
  const rel = path.startsWith(`${h.mount}/`) || path === h.mount ? path.slice(h.mount.length) : path;
  const parts = rel.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw new InputError(`--cgroup takes a cgroup's path, without "..": "${visible(path)}".`);
  const dir = [h.mount, ...parts].join('/');
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new InputError(`there is no memory cgroup "${visible(path)}" (looked for ${visible(dir)}).`, `Memory cgroups are the folders under ${h.mount} (cgroup v${h.version}); /proc/PID/cgroup says which one a process is in.`);
  }
  return { id: statSync(dir, { bigint: true }).ino, level: parts.length, path: `/${parts.join('/')}` };
}
