// The interactive view: header, site table or a site's detail, key line. Reads snapshots of the engine at most
// every `refreshMs` (ingestion never waits for drawing) and keeps sort, filter and selection in a reducer.
import { Box, Text, useApp, useInput } from 'ink';
import { useEffect, useReducer, useRef, useState } from 'react';
import type { Report } from '../report/model.js';
import { fit, fmtBytes, fmtCount } from '../report/format.js';
import { KeyHelp } from './components/KeyHelp.js';
import { Header } from './components/Header.js';
import { SiteDetail } from './components/SiteDetail.js';
import { SiteTable } from './components/SiteTable.js';
import { StackTree } from './components/StackTree.js';
import { buildStackTree, treeRows } from './stack-tree.js';
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
  // The flame view's tree: rebuilt from each report, its open/closed nodes and selection kept by key.
  const [treeSel, setTreeSel] = useState(0);
  const [inverse, setInverse] = useState(false);
  const [opened, setOpened] = useState<ReadonlySet<string>>(new Set());
  const [closed, setClosed] = useState<ReadonlySet<string>>(new Set());
  const tree = state.view === 'stacks' ? treeRows(buildStackTree(report.sites, inverse), opened, closed) : [];
  const treeAt = Math.min(treeSel, Math.max(0, tree.length - 1));

  useInput((input, key) => {
    if (state.view === 'stacks' && !state.editingFilter) {
      const row = tree[treeAt];
      const toggle = (open: boolean) => {
        if (!row || row.node.children.length === 0) return;
        const add = (set: ReadonlySet<string>) => new Set([...set, row.node.key]);
        const del = (set: ReadonlySet<string>) => new Set([...set].filter((k) => k !== row.node.key));
        setOpened(open ? add(opened) : del(opened));
        setClosed(open ? del(closed) : add(closed));
      };
      if (key.upArrow || input === 'k') return setTreeSel(Math.max(0, treeAt - 1));
      if (key.downArrow || input === 'j') return setTreeSel(Math.min(tree.length - 1, treeAt + 1));
      if (key.rightArrow || key.return) return toggle(true);
      if (key.leftArrow) return toggle(false);
      if (input === 'r') {
        setInverse(!inverse);
        return setTreeSel(0);
      }
    }
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
    else if (input === 'p') dispatch({ type: 'pause', live: report.source.kind === 'live' });
    else if (input === '?') dispatch({ type: 'help' });
    else if (input === 'f') {
      dispatch({ type: 'view', view: 'stacks' });
      setTreeSel(0);
    } else if (input === 'm') dispatch({ type: 'view', view: 'modules' });
    else if (input === 's') {
      // With a / filter on, the saved report holds what the table shows, and says so.
      const full = source.report();
      const f = state.filter.toLowerCase();
      const kept = f === '' ? full : { ...full, sites: full.sites.filter((x) => x.function.toLowerCase().includes(f)), notices: [...full.notices, { severity: 'info' as const, text: `saved with the TUI filter "${state.filter}": ${full.sites.filter((x) => x.function.toLowerCase().includes(f)).length} of ${full.sites.length} sites` }] };
      dispatch({ type: 'message', text: save(kept) + (f === '' ? '' : ` (the ${kept.sites.length} sites matching "${state.filter}")`) });
    }
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
        ) : state.view === 'stacks' ? (
          <StackTree rows={tree} selected={treeAt} width={columns} height={bodyHeight} inverse={inverse} />
        ) : state.view === 'modules' ? (
          <Box flexDirection="column">
            <Text bold wrap="truncate-end">{` ${'MODULE'.padEnd(Math.max(12, columns - 46))} OUTSTAND      BYTES GROWTH/m  GROWING`}</Text>
            {(report.modules ?? []).slice(0, bodyHeight - 1).map((m) => (
              <Text key={m.module} wrap="truncate-end">
                {` ${fit(m.module === 'the kernel itself' ? m.module : `[${m.module}]`, Math.max(12, columns - 46)).padEnd(Math.max(12, columns - 46))} ${fmtCount(m.outstanding).padStart(8)} ${fmtBytes(m.outstandingBytes).padStart(10)} ${String(m.growthPerMin).padStart(8)}  `}
                <Text color={m.growingSites ? color('red') : undefined}>{m.growingSites ? `${m.growingSites} site${m.growingSites > 1 ? 's' : ''}` : '-'}</Text>
              </Text>
            ))}
          </Box>
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
          `↑↓ move · ⏎ detail · b/c/a/g sort · / filter${state.filter ? ` "${state.filter}"` : ''} · f stacks · m modules · p pause · s save · ? keys · q quit`
        ) : state.view === 'stacks' ? (
          `↑↓ move · → open · ← close · r ${inverse ? 'root first' : 'site first'} · f back · q quit`
        ) : state.view === 'modules' ? (
          'm back · s save · ? keys · q quit'
        ) : (
          `Esc back${source.inspect ? ' · i inspect objects' : ''} · s save · ? keys · q quit`
        )}
      </Text>
      <Text wrap="truncate-end">{state.message ?? (source.recordingPath ? `recording to ${source.recordingPath}` : ' ')}</Text>
    </Box>
  );
}
