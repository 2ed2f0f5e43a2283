// The watch view: which slab caches grow, refreshed every sample; Enter (or l) on a growing kmalloc size class
// leaves it for live tracing with that filter.
import { Box, Text, useApp, useInput } from 'ink';
import { useEffect, useState } from 'react';
import type { WatchReport } from '../engine/watch.js';
import { fit, fmtBytes, fmtCount, fmtRate, sparkline } from '../report/format.js';
import { color, verdictColor } from './theme.js';
import { useTerminalSize } from './use-terminal-size.js';

export interface WatchAppProps {
  report: () => WatchReport;
  /** Called with the chosen cache when the user asks to trace it; the caller starts kleak live. */
  onTrace: (cache: string) => void;
  onQuit: () => void;
  refreshMs?: number;
  size?: { columns: number; rows: number };
}

export function WatchApp({ report, onTrace, onQuit, refreshMs = 500, size }: WatchAppProps) {
  const { exit } = useApp();
  const terminal = useTerminalSize();
  const { columns, rows } = size ?? terminal;
  const [r, setR] = useState(report);
  const [sel, setSel] = useState(0);
  useEffect(() => {
    const t = setInterval(() => setR(report()), refreshMs);
    return () => clearInterval(t);
  }, [report, refreshMs]);
  const caches = r.caches;
  const i = Math.min(sel, Math.max(0, caches.length - 1));
  useInput((input, key) => {
    if (input === 'q' || (key.ctrl && input === 'c')) {
      onQuit();
      exit();
    } else if (key.upArrow || input === 'k') setSel(Math.max(0, i - 1));
    else if (key.downArrow || input === 'j') setSel(Math.min(caches.length - 1, i + 1));
    else if ((key.return || input === 'l') && caches[i]) {
      onTrace(caches[i]!.name);
      exit();
    }
  });
  const fn = Math.max(14, columns - 66);
  const height = Math.max(3, rows - 8);
  return (
    <Box flexDirection="column" width={columns}>
      <Text bold wrap="truncate-end">
        kleak watch · {r.span.samples} samples over {(r.span.lastTs - r.span.firstTs).toFixed(0)}s · /proc/slabinfo, /proc/meminfo, /proc/vmallocinfo
      </Text>
      <Text wrap="truncate-end">
        {r.meminfo
          .filter((m) => ['SUnreclaim', 'VmallocUsed', 'Percpu', 'Unaccounted'].includes(m.name))
          .map((m) => `${m.name} ${fmtBytes(m.kb * 1024)} (${m.kbPerMin >= 0 ? '+' : '-'}${fmtBytes(Math.abs(m.kbPerMin) * 1024)}/min)`)
          .join(' · ')}
      </Text>
      {(() => {
        const grows = r.meminfo.filter((m) => m.verdict === 'growing' && m.next && m.name !== 'SUnreclaim');
        const v = r.vmallocCallers?.find((c) => c.verdict === 'growing');
        const said = [...grows.map((m) => `${m.name} grows: ${m.next}`), ...(v ? [`vmalloc caller ${v.caller}${v.module ? ` [${v.module}]` : ''} grows (${fmtRate(v.areasPerMin)} areas/min)`] : [])];
        return said.length ? <Text color={color('yellow')} wrap="truncate-end">{said.join(' · ')}</Text> : null;
      })()}
      {r.mergedCaches ? <Text color={color('yellow')} wrap="truncate-end">caches may be merged (no slab_nomerge): a kmalloc-N cache can hold other caches' objects</Text> : <Text> </Text>}
      <Text bold wrap="truncate-end">
        {' ' + 'CACHE'.padEnd(fn) + ' ' + 'ACTIVE'.padStart(9) + ' ' + 'BYTES'.padStart(9) + ' ' + 'OBJS/min'.padStart(9) + ' ' + 'TREND'.padEnd(12) + ' VERDICT  NEXT'}
      </Text>
      {caches.slice(0, height).map((c, k) => (
        <Text key={c.name} inverse={k === i} wrap="truncate-end">
          {(k === i ? '›' : ' ') + fit(c.name, fn).padEnd(fn) + ' ' + fmtCount(c.activeObjs).padStart(9) + ' ' + fmtBytes(c.activeBytes).padStart(9) + ' ' + fmtRate(c.objsPerMin).padStart(9) + ' ' + sparkline(c.series, 12, true).padEnd(12) + ' '}
          <Text color={verdictColor(c.verdict)}>{c.verdict.padEnd(8)}</Text>
          {c.verdict === 'growing' ? ` ${c.liveFilter ?? `--cache ${c.name}`}` : ''}
        </Text>
      ))}
      <Text color={color('gray')} wrap="truncate-end">
        ↑↓ move · ⏎/l trace the selected cache live · q quit
      </Text>
    </Box>
  );
}
