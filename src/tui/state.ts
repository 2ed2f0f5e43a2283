// The TUI's state and its reducer: sort, filter, selection, view, pause. Pure, tested without Ink
// (ink-ui's use-select-state split).
import type { SiteReport } from '../report/model.js';

export type SortKey = 'bytes' | 'count' | 'age' | 'growth';
export type View = 'table' | 'detail' | 'help' | 'stacks' | 'modules';

export interface TuiState {
  sort: SortKey;
  filter: string;
  editingFilter: boolean;
  /** Function name of the selected site (stable while rows move), and its index as a fallback. */
  selected: string | undefined;
  index: number;
  view: View;
  paused: boolean;
  message: string | undefined;
}

export const initialState: TuiState = {
  sort: 'bytes', filter: '', editingFilter: false, selected: undefined, index: 0, view: 'table', paused: false, message: undefined,
};

export type Action =
  | { type: 'sort'; key: SortKey }
  | { type: 'move'; delta: number; rows: readonly SiteReport[] }
  | { type: 'open'; rows: readonly SiteReport[] }
  | { type: 'back' }
  | { type: 'help' }
  /** f: the stack tree; m: outstanding bytes by module; the same key again, or Esc, goes back. */
  | { type: 'view'; view: 'stacks' | 'modules' }
  | { type: 'pause'; live: boolean }
  | { type: 'filter-start' }
  | { type: 'filter-type'; text: string }
  | { type: 'filter-backspace' }
  | { type: 'filter-end'; keep: boolean }
  | { type: 'message'; text: string | undefined };

const SORTS: Record<SortKey, (a: SiteReport, b: SiteReport) => number> = {
  bytes: (a, b) => b.outstandingBytes - a.outstandingBytes,
  count: (a, b) => b.outstanding - a.outstanding,
  age: (a, b) => b.oldestAgeSec - a.oldestAgeSec,
  growth: (a, b) => b.growthPerMin - a.growthPerMin,
};

/** The rows the table shows: filtered by function name, sorted by the sort key (ties by bytes, then name). */
export function visibleRows(sites: readonly SiteReport[], s: Pick<TuiState, 'sort' | 'filter'>): SiteReport[] {
  const f = s.filter.toLowerCase();
  return sites
    .filter((x) => f === '' || x.function.toLowerCase().includes(f))
    .sort((a, b) => SORTS[s.sort](a, b) || b.outstandingBytes - a.outstandingBytes || a.function.localeCompare(b.function));
}

/** Index of the selected row in `rows` (follows the function when rows reorder). */
export function selectedIndex(s: TuiState, rows: readonly SiteReport[]): number {
  if (rows.length === 0) return -1;
  const byName = s.selected === undefined ? -1 : rows.findIndex((r) => r.function === s.selected);
  return byName >= 0 ? byName : Math.min(Math.max(0, s.index), rows.length - 1);
}

export function reducer(s: TuiState, a: Action): TuiState {
  switch (a.type) {
    case 'sort':
      return { ...s, sort: a.key, message: `sorted by ${a.key}` };
    case 'move': {
      if (a.rows.length === 0) return s;
      const i = Math.min(Math.max(0, selectedIndex(s, a.rows) + a.delta), a.rows.length - 1);
      return { ...s, index: i, selected: a.rows[i]!.function };
    }
    case 'open': {
      const i = selectedIndex(s, a.rows);
      return i < 0 ? s : { ...s, view: 'detail', selected: a.rows[i]!.function, index: i };
    }
    case 'back':
      return { ...s, view: 'table' };
    case 'help':
      return { ...s, view: s.view === 'help' ? 'table' : 'help' };
    case 'view':
      return { ...s, view: s.view === a.view ? 'table' : a.view };
    case 'pause':
      return { ...s, paused: !s.paused, message: s.paused ? 'display resumed' : `display paused (${a.live ? 'tracing' : 'reading'} goes on)` };
    case 'filter-start':
      return { ...s, editingFilter: true, view: 'table' };
    case 'filter-type':
      return { ...s, filter: s.filter + a.text, index: 0, selected: undefined };
    case 'filter-backspace':
      return { ...s, filter: s.filter.slice(0, -1), index: 0, selected: undefined };
    case 'filter-end':
      return { ...s, editingFilter: false, filter: a.keep ? s.filter : '' };
    case 'message':
      return { ...s, message: a.text };
  }
}
