// The flame view as a tree: outstanding bytes by stack, with each node's share of bytes and objects; ←/→ close and
// open a node, ↑↓ move, r turns it upside down (from the allocation site up). Colored by module.
import { Box, Text } from 'ink';
import { fmtBytes, fmtCount, fit } from '../../report/format.js';
import { color } from '../theme.js';
import type { TreeRow } from '../stack-tree.js';

export function StackTree({ rows, selected, width, height, inverse }: { rows: TreeRow[]; selected: number; width: number; height: number; inverse: boolean }) {
  const first = Math.max(0, Math.min(selected - Math.floor(height / 2), rows.length - height));
  const nameWidth = Math.max(10, width - 30);
  return (
    <Box flexDirection="column">
      <Text bold wrap="truncate-end">
        {` ${(inverse ? 'ALLOCATION SITE ← CALLERS' : 'STACK (root → allocation site)').padEnd(nameWidth)}    BYTES  SHARE  OBJECTS`}
      </Text>
      {rows.length === 0 ? <Text color={color('gray')}> no stacks: record with --stacks to see them</Text> : null}
      {rows.slice(first, first + height - 1).map((r, k) => {
        const i = first + k;
        const mod = /\[([\w-]+)\]$/.exec(r.node.name)?.[1];
        const label = `${'  '.repeat(r.depth)}${r.node.children.length === 0 ? ' ' : r.expanded ? '▾' : '▸'} ${r.node.name}`;
        return (
          <Text key={r.node.key} inverse={i === selected} wrap="truncate-end">
            {i === selected ? '›' : ' '}
            <Text color={mod ? color('magenta') : undefined}>{fit(label, nameWidth).padEnd(nameWidth)}</Text>
            {` ${fmtBytes(r.node.bytes).padStart(8)} ${`${(100 * r.share).toFixed(1)}%`.padStart(6)} ${fmtCount(r.node.objects).padStart(8)}`}
          </Text>
        );
      })}
    </Box>
  );
}
