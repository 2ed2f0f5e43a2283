// The watch view: which slab caches grow, refreshed every sample; Enter (or l) on a growing kmalloc size class
// leaves it for live tracing with that filter.
import { Box, Text, useApp, useInput } from 'ink';
import { useEffect, useState } from 'react';
import type { WatchReport } from '../engine/watch.js';
import { fit, fmtBytes, fmtCount, fmtRate, signedBytes, sparkline, visible } from '../report/format.js';
import { GaugeTable, type GaugeRow } from './components/GaugeTable.js';
import { color, verdictColor } from './theme.js';
import { useTerminalSize } from './use-terminal-size.js';

export interface WatchAppProps {
  report: () => WatchReport;
  /** Called with the chosen cache when the user asks to trace it; the caller starts kleak live. */
  onTrace: (cache: string) => void;
  onQuit: () => void;
  refreshMs?: number;
  size?: { columns: number; rows: number };
  /** The other tables watch keeps (vmalloc callers, kernel records), Tab cycles through them after the caches. */
  sections?: () => WatchSection[];
}

export interface WatchSection {
  title: string;
  countLabel: string;
  rows: GaugeRow[];
}

/** vmalloc callers as a gauge table: areas are the count. */
export function vmallocSection(r: WatchReport): WatchSection | undefined {
  if (!r.vmallocCallers) return undefined;
  return {
    title: 'vmalloc callers (/proc/vmallocinfo)',
    countLabel: 'AREAS',
    rows: r.vmallocCallers.map((c) => ({ key: `${c.caller} ${c.module ?? ''} ${c.type}`, label: `${c.caller} (${c.type})`, ...(c.module ? { module: c.module } : {}), count: c.areas, bytes: c.bytes, countPerMin: c.areasPerMin, bytesPerMin: c.bytesPerMin, verdict: c.verdict, series: c.series })),
  };
}

export function WatchApp({ report, onTrace, onQuit, refreshMs = 500, size, sections }: WatchAppProps) {
  const { exit } = useApp();
  const terminal = useTerminalSize();
  const { columns, rows } = size ?? terminal;
  const [r, setR] = useState(report);
  const [sel, setSel] = useState(0);
  const [others, setOthers] = useState<WatchSection[]>(() => sections?.() ?? []);
  /** 0: the caches; k > 0: others[k - 1]. */
  const [view, setView] = useState(0);
  useEffect(() => {
    const t = setInterval(() => {
      setR(report());
      if (sections) setOthers(sections());
    }, refreshMs);
    return () => clearInterval(t);
  }, [report, refreshMs, sections]);
  const caches = r.caches;
  const shown = view > 0 ? others[view - 1] : undefined;
  const length = shown ? shown.rows.length : caches.length;
  const i = Math.min(sel, Math.max(0, length - 1));
  useInput((input, key) => {
    if (input === 'q' || (key.ctrl && input === 'c')) {
      onQuit();
      exit();
    } else if (key.tab) {
      setView((v) => (v + 1) % (others.length + 1));
      setSel(0);
    } else if (key.upArrow || input === 'k') setSel(Math.max(0, i - 1));
    else if (key.downArrow || input === 'j') setSel(Math.min(length - 1, i + 1));
    else if (!shown && (key.return || input === 'l') && caches[i]) {
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
          .map((m) => `${m.name} ${fmtBytes(m.kb * 1024)} (${signedBytes(m.kbPerMin * 1024)}/min)`)
          .join(' · ')}
      </Text>
      {(() => {
        const grows = r.meminfo.filter((m) => m.verdict === 'growing' && m.next && m.name !== 'SUnreclaim');
        const v = r.vmallocCallers?.find((c) => c.verdict === 'growing');
        const said = [...grows.map((m) => `${m.name} grows: ${m.next}`), ...(v ? [`vmalloc caller ${visible(v.caller)}${v.module ? ` [${visible(v.module)}]` : ''} grows (${fmtRate(v.areasPerMin)} areas/min)`] : [])];
        return said.length ? <Text color={color('yellow')} wrap="truncate-end">{said.join(' · ')}</Text> : null;
      })()}
      {shown ? (
        <Box flexDirection="column">
          <Text bold color={color('cyan')} wrap="truncate-end">
            {shown.title}
          </Text>
          <GaugeTable rows={shown.rows} selected={i} columns={columns} height={height - 1} countLabel={shown.countLabel} />
        </Box>
      ) : (
      <Box flexDirection="column">
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
      </Box>
      )}
      <Text color={color('gray')} wrap="truncate-end">
        ↑↓ move{shown ? '' : ' · ⏎/l trace the selected cache live'}{others.length > 0 ? ` · tab ${view < others.length ? others[view]!.title.replace(/ \(.*$/, '') : 'slab caches'}` : ''} · q quit
      </Text>
    </Box>
  );
}
