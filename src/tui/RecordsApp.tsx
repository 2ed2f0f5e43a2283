// The replay of kernel records (kmemleak reports, allocinfo, alloc_traces, slabinfo dumps) in a terminal: the
// readings unfold one after another, as the series grew on the host; then the last state stays.
//   ↑↓ move · space pause/play · ←→ one reading back/forward · m by module · q quit
import { Box, Text, useApp, useInput } from 'ink';
import { useEffect, useState } from 'react';
import type { RecordsReport } from '../records/model.js';
import { fit, fmtBytes, signedBytes } from '../report/format.js';
import { GaugeTable, type GaugeRow } from './components/GaugeTable.js';
import { color } from './theme.js';
import { useTerminalSize } from './use-terminal-size.js';

export interface RecordsAppProps {
  /** The report after each reading (or after evenly spaced ones, for long series), in order. */
  frames: RecordsReport[];
  stepMs?: number;
  size?: { columns: number; rows: number };
}

export function recordRows(r: RecordsReport): GaugeRow[] {
  return r.sites.map((s, i) => ({ key: `${i} ${s.label} ${s.module ?? ''}`, ...s }));
}

export function RecordsApp({ frames, stepMs = 250, size }: RecordsAppProps) {
  const { exit } = useApp();
  const terminal = useTerminalSize();
  const { columns, rows } = size ?? terminal;
  const [at, setAt] = useState(0);
  const [playing, setPlaying] = useState(true);
  const [sel, setSel] = useState(0);
  const [byModule, setByModule] = useState(false);
  const last = frames.length - 1;
  useEffect(() => {
    if (!playing || at >= last) return;
    const t = setTimeout(() => setAt((a) => Math.min(last, a + 1)), stepMs);
    return () => clearTimeout(t);
  }, [playing, at, last, stepMs]);
  const r = frames[at]!;
  const table = recordRows(r);
  const i = Math.min(sel, Math.max(0, table.length - 1));
  useInput((input, key) => {
    if (input === 'q' || (key.ctrl && input === 'c')) exit();
    else if (input === ' ') setPlaying((p) => !p);
    else if (key.leftArrow) (setPlaying(false), setAt(Math.max(0, at - 1)));
    else if (key.rightArrow) (setPlaying(false), setAt(Math.min(last, at + 1)));
    else if (key.upArrow || input === 'k') setSel(Math.max(0, i - 1));
    else if (key.downArrow || input === 'j') setSel(Math.min(table.length - 1, i + 1));
    else if (input === 'm') setByModule((b) => !b);
  });
  const secs = r.span.lastTs - r.span.firstTs;
  const state = at >= last ? 'all readings' : playing ? 'replaying' : 'paused';
  return (
    <Box flexDirection="column" width={columns}>
      <Text bold wrap="truncate-end">
        kleak replay · {r.format} · reading {r.readings} of {frames[last]!.readings} · {secs.toFixed(0)} s{r.assumedEverySec ? ` (one every ${r.assumedEverySec} s assumed)` : ''} · {state}
      </Text>
      {r.notices.slice(0, 2).map((n) => (
        <Text key={n} color={color('yellow')} wrap="truncate-end">
          {n}
        </Text>
      ))}
      {byModule ? (
        <Box flexDirection="column">
          <Text bold>{'MODULE'.padEnd(24) + ' ' + 'BYTES'.padStart(10) + ' ' + 'BYTES/min'.padStart(10) + '  GROWING SITES'}</Text>
          {r.modules.map((m) => (
            <Text key={m.module} wrap="truncate-end">
              {fit(m.module === 'the kernel itself' ? m.module : `[${m.module}]`, 24).padEnd(24) + ' ' + fmtBytes(m.bytes).padStart(10) + ' ' + signedBytes(m.bytesPerMin).padStart(10) + '  ' + m.growingSites}
            </Text>
          ))}
        </Box>
      ) : (
        <GaugeTable rows={table} selected={i} columns={columns} height={Math.max(3, rows - 6 - Math.min(2, r.notices.length))} />
      )}
      <Text color={color('gray')} wrap="truncate-end">
        ↑↓ move · space {playing && at < last ? 'pause' : 'play'} · ←→ one reading · m {byModule ? 'sites' : 'by module'} · q quit
      </Text>
    </Box>
  );
}
