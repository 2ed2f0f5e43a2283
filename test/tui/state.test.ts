import { describe, expect, it } from 'vitest';
import type { SiteReport } from '../../src/report/model.js';
import { initialState, reducer, selectedIndex, visibleRows } from '../../src/tui/state.js';

const site = (fn: string, outstanding: number, bytes: number, age: number, growth: number): SiteReport => ({
  function: fn, callSite: `${fn}+0x1`, cache: 'kmalloc-64', outstanding, outstandingBytes: bytes, allocs: outstanding, frees: 0,
  oldestAgeSec: age, growthPerMin: growth, verdict: 'steady', stacks: [], samples: [], missedFrees: 0, possiblePhantoms: 0, series: [],
});
const SITES = [site('alpha', 10, 100, 5, 1), site('beta', 30, 50, 50, 9), site('gamma', 20, 400, 1, -3)];

describe('TUI state', () => {
  it('sorts by bytes, count, age and growth', () => {
    const order = (k: 'bytes' | 'count' | 'age' | 'growth') => visibleRows(SITES, reducer(initialState, { type: 'sort', key: k })).map((s) => s.function);
    expect(order('bytes')).toEqual(['gamma', 'alpha', 'beta']);
    expect(order('count')).toEqual(['beta', 'gamma', 'alpha']);
    expect(order('age')).toEqual(['beta', 'alpha', 'gamma']);
    expect(order('growth')).toEqual(['beta', 'alpha', 'gamma']);
  });

  it('filters by function name as typed, and Esc clears the filter', () => {
    let s = reducer(initialState, { type: 'filter-start' });
    s = reducer(s, { type: 'filter-type', text: 'a' });
    s = reducer(s, { type: 'filter-type', text: 'l' });
    expect(visibleRows(SITES, s).map((x) => x.function)).toEqual(['alpha']);
    s = reducer(s, { type: 'filter-backspace' });
    expect(visibleRows(SITES, s).map((x) => x.function)).toEqual(['gamma', 'alpha', 'beta']);
    s = reducer(s, { type: 'filter-end', keep: false });
    expect(s).toMatchObject({ filter: '', editingFilter: false });
  });

  it('moves within bounds, and the selection follows its site when rows reorder', () => {
    const rows = visibleRows(SITES, initialState);
    let s = reducer(initialState, { type: 'move', delta: 1, rows });
    expect(s.selected).toBe('alpha');
    s = reducer(s, { type: 'move', delta: 99, rows });
    expect(s.selected).toBe('beta');
    s = reducer(s, { type: 'move', delta: -99, rows });
    expect(s.selected).toBe('gamma');
    s = reducer(s, { type: 'move', delta: 1, rows });
    const byCount = visibleRows(SITES, reducer(s, { type: 'sort', key: 'count' }));
    expect(byCount[selectedIndex(s, byCount)]!.function).toBe('alpha');
  });

  it('opens the selected site, goes back, toggles help and pause', () => {
    const rows = visibleRows(SITES, initialState);
    let s = reducer(initialState, { type: 'open', rows });
    expect(s).toMatchObject({ view: 'detail', selected: 'gamma' });
    s = reducer(s, { type: 'back' });
    expect(s.view).toBe('table');
    expect(reducer(s, { type: 'help' }).view).toBe('help');
    expect(reducer(reducer(s, { type: 'help' }), { type: 'help' }).view).toBe('table');
    expect(reducer(s, { type: 'pause', live: true })).toMatchObject({ paused: true, message: 'display paused (tracing goes on)' });
    expect(reducer(s, { type: 'pause', live: false })).toMatchObject({ paused: true, message: 'display paused (reading goes on)' });
  });

  it('opening with no rows does nothing', () => {
    expect(reducer(initialState, { type: 'open', rows: [] })).toBe(initialState);
  });
});
