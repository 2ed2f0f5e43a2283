// One row per call site: function, cache, outstanding, bytes, oldest, growth, trend, verdict.
import { Box, Text } from 'ink';
import { fit, fmtAge, fmtBytes, fmtCount, fmtRate, sparkline } from '../../report/format.js';
import type { SiteReport } from '../../report/model.js';
import { cacheLabel } from '../../report/text.js';
import type { SortKey } from '../state.js';
import { color, noColor, verdictColor } from '../theme.js';

export interface SiteTableProps {
  rows: readonly SiteReport[];
  selected: number;
  width: number;
  height: number;
  sort: SortKey;
}

/** Column widths for a terminal width: fixed numeric columns, the function name takes the rest. */
export function columns(width: number) {
  const wide = width >= 100;
  // Each wide enough for its label with the sort mark ("OLDEST▾", "GROWTH/m▾") and a kmalloc-cg-4096.
  const fixed = { cache: wide ? 16 : 15, count: wide ? 9 : 7, bytes: wide ? 10 : 8, age: wide ? 8 : 7, growth: wide ? 9 : 7, trend: wide ? 16 : 5, verdict: 7 };
  const used = Object.values(fixed).reduce((a, b) => a + b, 0) + 8; // one space between columns, cursor column
  // Narrower than 80 columns the cache column gives way first, so the row still ends with its verdict.
  const short = Math.max(0, 10 - (width - used));
  fixed.cache = Math.max(8, fixed.cache - short);
  return { fn: Math.max(10, width - used + Math.min(short, 15 - 8)), ...fixed };
}

const wide = (width: number) => width >= 100;

export function SiteTable({ rows, selected, width, height, sort }: SiteTableProps) {
  const c = columns(width);
  // Keep the selection in view.
  const top = Math.max(0, Math.min(selected - Math.floor(height / 2), rows.length - height));
  const shown = rows.slice(top, top + height);
  const mark = (k: SortKey, label: string) => (sort === k ? `${label}▾` : label);
  const header =
    ' ' + 'FUNCTION'.padEnd(c.fn) + ' ' + 'CACHE'.padEnd(c.cache) + ' ' + mark('count', 'OUTST').padStart(c.count) + ' ' + mark('bytes', 'BYTES').padStart(c.bytes) + ' ' +
    mark('age', 'OLDEST').padStart(c.age) + ' ' + mark('growth', wide(width) ? 'GROWTH/m' : 'GROW/m').padStart(c.growth) + ' ' + 'TREND'.padEnd(c.trend) + ' ' + 'VERDICT';
  return (
    <Box flexDirection="column">
      <Text bold wrap="truncate-end">
        {header}
      </Text>
      {rows.length === 0 ? <Text dimColor>No outstanding allocations{rows.length === 0 ? ' (yet)' : ''}.</Text> : null}
      {shown.map((s, i) => {
        const isSel = top + i === selected;
        const line =
          (isSel ? '›' : ' ') + fit(s.function, c.fn).padEnd(c.fn) + ' ' + cacheLabel(s, c.cache).padEnd(c.cache) + ' ' + fmtCount(s.outstanding).padStart(c.count) + ' ' +
          fmtBytes(s.outstandingBytes).padStart(c.bytes) + ' ' + fmtAge(s.oldestAgeSec).padStart(c.age) + ' ' + fmtRate(s.growthPerMin).padStart(c.growth) + ' ' +
          sparkline(s.series, c.trend).padEnd(c.trend) + ' ';
        return (
          <Text key={s.function} inverse={isSel && !noColor()} bold={isSel && noColor()} wrap="truncate-end">
            {line}
            <Text color={verdictColor(s.verdict)}>{s.verdict}</Text>
          </Text>
        );
      })}
      {rows.length > height ? <Text color={color('gray')}>{`${top + 1}-${top + shown.length} of ${rows.length} sites`}</Text> : null}
    </Box>
  );
}
