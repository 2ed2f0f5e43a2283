// The interactive view: header, site table or a site's detail, key line. Reads snapshots of the engine at most
// every `refreshMs` (ingestion never waits for drawing) and keeps sort, filter and selection in a reducer.
import { Box, Text, useApp, useInput } from 'ink';
import { useEffect, useReducer, useRef, useState } from 'react';
import type { Report } from '../report/model.js';
import { KeyHelp } from './components/KeyHelp.js';
import { Header } from './components/Header.js';
import { SiteDetail } from './components/SiteDetail.js';
import { SiteTable } from './components/SiteTable.js';
import { initialState, reducer, selectedIndex, visibleRows } from './state.js';
import type { TuiSource } from './source.js';
import { color } from './theme.js';
import { useTerminalSize } from './use-terminal-size.js';

export interface AppProps {
  source: TuiSource;
  refreshMs?: number;
  /** Writes the report (s key); returns what to tell the user. */
  save: (r: Report) => string;
  /** Called when the user quits (q, Ctrl-C). */
  onQuit: () => void;
  /** Fixed size (tests); otherwise the terminal's, following resizes. */
  size?: { columns: number; rows: number };
}

export function App({ source, refreshMs = 100, save, onQuit, size }: AppProps) {
  const { exit } = useApp();
  const terminal = useTerminalSize();
  const { columns, rows } = size ?? terminal;
  const [state, dispatch] = useReducer(reducer, initialState);
  const [report, setReport] = useState<Report>(() => source.report());
  // Events a second over the last few seconds (live snapshots arrive once a second, so one tick says little).
  const rate = useRef({ samples: [{ events: report.totals.events, at: Date.now() }], perSec: 0 });
  const [inspected, setInspected] = useState<{ site: string; lines: string[] } | undefined>(undefined);
  const paused = useRef(state.paused);
  paused.current = state.paused;

  useEffect(() => {
    const tick = () => {
      if (paused.current) return;
      const r = source.report();
      const now = Date.now();
      const samples = [...rate.current.samples, { events: r.totals.events, at: now }].filter((x) => now - x.at <= 3000);
      const first = samples[0]!;
      const dt = (now - first.at) / 1000;
      rate.current = { samples, perSec: source.finished() || dt < 0.5 ? (source.finished() ? 0 : rate.current.perSec) : (r.totals.events - first.events) / dt };
      setReport(r);
    };
    const timer = setInterval(tick, refreshMs);
    const unsubscribe = source.subscribe?.(tick);
    return () => {
      clearInterval(timer);
      unsubscribe?.();
    };
  }, [source, refreshMs]);

  const tableRows = visibleRows(report.sites, state);
  const sel = selectedIndex(state, tableRows);

  useInput((input, key) => {
    if (state.editingFilter) {
      if (key.return) dispatch({ type: 'filter-end', keep: true });
      else if (key.escape) dispatch({ type: 'filter-end', keep: false });
      else if (key.backspace || key.delete) dispatch({ type: 'filter-backspace' });
      else if (input && !key.ctrl && !key.meta) dispatch({ type: 'filter-type', text: input });
      return;
    }
    if (input === 'q' || (key.ctrl && input === 'c')) {
      onQuit();
      exit();
      return;
    }
    if (key.upArrow || input === 'k') dispatch({ type: 'move', delta: -1, rows: tableRows });
    else if (key.downArrow || input === 'j') dispatch({ type: 'move', delta: 1, rows: tableRows });
    else if (key.pageDown) dispatch({ type: 'move', delta: 10, rows: tableRows });
    else if (key.pageUp) dispatch({ type: 'move', delta: -10, rows: tableRows });
    else if (key.return) dispatch({ type: 'open', rows: tableRows });
    else if (key.escape || key.leftArrow || key.backspace || key.delete) {
      setInspected(undefined);
      dispatch({ type: 'back' });
    }
    else if (input === 'b') dispatch({ type: 'sort', key: 'bytes' });
    else if (input === 'c') dispatch({ type: 'sort', key: 'count' });
    else if (input === 'a') dispatch({ type: 'sort', key: 'age' });
    else if (input === 'g') dispatch({ type: 'sort', key: 'growth' });
    else if (input === '/') dispatch({ type: 'filter-start' });
    else if (input === 'p') dispatch({ type: 'pause' });
    else if (input === '?') dispatch({ type: 'help' });
    else if (input === 's') dispatch({ type: 'message', text: save(source.report()) });
    else if (input === 'i' && state.view === 'detail') {
      const site = report.sites.find((x) => x.function === state.selected);
      if (!source.inspect) dispatch({ type: 'message', text: 'i reads objects from the running kernel: in kleak live only (or kleak inspect --from REPORT)' });
      else if (site) {
        dispatch({ type: 'message', text: `reading ${site.samples.length} ${site.function} objects from the kernel…` });
        source.inspect(site).then(
          (lines) => {
            setInspected({ site: site.function, lines });
            dispatch({ type: 'message', text: `inspected ${site.function}` });
          },
          (err: unknown) => dispatch({ type: 'message', text: `inspect failed: ${(err as Error).message}` }),
        );
      }
    }
  });

  const problem = source.problem();
  const headerLines = 3 + (problem ? 1 : 0);
  const bodyHeight = Math.max(3, rows - headerLines - 4);
  const detailSite = state.view === 'detail' ? report.sites.find((s) => s.function === state.selected) : undefined;
  return (
    <Box flexDirection="column" width={columns}>
      <Header report={report} width={columns} eventsPerSec={rate.current.perSec} progress={source.progress()} finished={source.finished()} paused={state.paused} problem={problem} />
      <Box marginTop={1} flexDirection="column" height={bodyHeight + 1}>
        {state.view === 'help' ? (
          <KeyHelp />
        ) : state.view === 'detail' ? (
          inspected && inspected.site === state.selected ? (
            <Box flexDirection="column">
              {inspected.lines.slice(0, bodyHeight).map((l, i) => (
                <Text key={i} wrap="truncate-end">
                  {l}
                </Text>
              ))}
            </Box>
          ) : (
            <SiteDetail site={detailSite} name={state.selected} width={columns} height={bodyHeight} />
          )
        ) : (
          <SiteTable rows={tableRows} selected={sel} width={columns} height={bodyHeight - 1} sort={state.sort} />
        )}
      </Box>
      <Text color={color('gray')} wrap="truncate-end">
        {state.editingFilter ? (
          <Text color={color('yellow')}>filter: {state.filter}▏ (Enter keeps, Esc clears)</Text>
        ) : state.view === 'table' ? (
          `↑↓ move · ⏎ detail · b/c/a/g sort · / filter${state.filter ? ` "${state.filter}"` : ''} · p pause · s save · ? keys · q quit`
        ) : (
          `Esc back${source.inspect ? ' · i inspect objects' : ''} · s save · ? keys · q quit`
        )}
      </Text>
      <Text wrap="truncate-end">{state.message ?? (source.recordingPath ? `recording to ${source.recordingPath}` : ' ')}</Text>
    </Box>
  );
}
