// The stack tree of the TUI's flame view: outstanding bytes by kernel stack, root at the syscall or interrupt entry
// and leaves at the allocation site (or the inverse: from the allocation site up). Pure, tested without Ink.
import type { SiteReport } from '../report/model.js';

export interface StackNode {
  name: string;
  /** Path from the root, names joined: the node's identity across redraws. */
  key: string;
  bytes: number;
  objects: number;
  children: StackNode[];
}

/** The tree of the sites' stacks; a site's bytes are split among its stacks by their share of its objects. */
export function buildStackTree(sites: readonly SiteReport[], inverse: boolean): StackNode {
  const root: StackNode = { name: 'all', key: '', bytes: 0, objects: 0, children: [] };
  for (const s of sites) {
    const stacks = s.stacks.length > 0 ? s.stacks : [{ frames: [s.function], outstanding: s.outstanding }];
    const listed = stacks.reduce((n, st) => n + st.outstanding, 0);
    for (const st of stacks) {
      const objects = st.outstanding;
      const bytes = listed > 0 ? Math.round((s.outstandingBytes * objects) / listed) : 0;
      const path = inverse ? st.frames : [...st.frames].reverse();
      let node = root;
      node.bytes += bytes;
      node.objects += objects;
      for (const name of path) {
        let child = node.children.find((c) => c.name === name);
        if (!child) node.children.push((child = { name, key: `${node.key}\u0000${name}`, bytes: 0, objects: 0, children: [] }));
        child.bytes += bytes;
        child.objects += objects;
        node = child;
      }
    }
  }
  const sort = (n: StackNode) => {
    n.children.sort((a, b) => b.bytes - a.bytes || a.name.localeCompare(b.name));
    n.children.forEach(sort);
  };
  sort(root);
  return root;
}

export interface TreeRow {
  node: StackNode;
  depth: number;
  expanded: boolean;
  /** Share of all outstanding bytes, 0..1. */
  share: number;
}

/**
 * The rows on screen: the root's children and, below each expanded node, its own. A node is expanded when the user
 * opened it, or (until the user closes it) when it holds at least `autoShare` of the bytes.
 */
export function treeRows(root: StackNode, opened: ReadonlySet<string>, closed: ReadonlySet<string>, autoShare = 0.1): TreeRow[] {
  const rows: TreeRow[] = [];
  const total = Math.max(1, root.bytes);
  const walk = (n: StackNode, depth: number) => {
    for (const c of n.children) {
      const share = c.bytes / total;
      const expanded = c.children.length > 0 && !closed.has(c.key) && (opened.has(c.key) || share >= autoShare);
      rows.push({ node: c, depth, expanded, share });
      if (expanded) walk(c, depth + 1);
    }
  };
  walk(root, 0);
  return rows;
}
