// One table for every sampled gauge kleak shows in a terminal: kernel records (kmemleak, allocinfo, alloc_traces,
// slabinfo dumps) and vmalloc callers. A row is a site with a count, bytes, a rate, a trend and a verdict.
import { Box, Text } from 'ink';
import type { RecordSiteReport } from '../../records/model.js';
import { fit, fmtBytes, fmtCount, fmtRate, signedBytes, sparkline, visible } from '../../report/format.js';
import { verdictColor } from '../theme.js';

/** A row: a record's site (or a vmalloc caller shaped as one), with a key that tells rows apart. */
export type GaugeRow = RecordSiteReport & { key: string };


export function GaugeTable({ rows, selected, columns, height, countLabel = 'COUNT' }: { rows: GaugeRow[]; selected: number; columns: number; height: number; countLabel?: string }) {
  const label = Math.max(12, columns - 77);
  // Keep the selected row in view.
  const first = Math.max(0, Math.min(selected - height + 2, rows.length - height));
  const shown = rows.slice(first, first + height);
  const sel = rows[selected];
  return (
    <Box flexDirection="column">
      <Text bold wrap="truncate-end">
        {' ' + 'SITE'.padEnd(label) + ' ' + 'MODULE'.padEnd(12) + ' ' + countLabel.padStart(8) + ' ' + 'BYTES'.padStart(9) + ' ' + `${countLabel}/min`.padStart(10) + ' ' + 'BYTES/min'.padStart(10) + ' ' + 'TREND'.padEnd(12) + ' VERDICT'}
      </Text>
      {shown.map((r, k) => {
        const on = first + k === selected;
        return (
          <Text key={r.key} inverse={on} wrap="truncate-end">
            {(on ? '›' : ' ') + fit(r.label, label).padEnd(label) + ' ' + fit(r.module ? `[${r.module}]` : '-', 12).padEnd(12) + ' ' + fmtCount(r.count).padStart(8) + ' ' + fmtBytes(r.bytes).padStart(9) + ' ' + fmtRate(r.countPerMin).padStart(10) + ' ' + signedBytes(r.bytesPerMin).padStart(10) + ' ' + sparkline(r.series, 12, true).padEnd(12) + ' '}
            <Text color={verdictColor(r.verdict)}>{r.verdict}</Text>
          </Text>
        );
      })}
      {rows.length === 0 ? <Text>(nothing in this record yet)</Text> : null}
      <Text wrap="truncate-end">{sel?.where && sel.where !== sel.label ? `  ${visible(sel.label)}: ${visible(sel.where)}` : ' '}</Text>
    </Box>
  );
}
