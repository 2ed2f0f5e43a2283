// Number and name formatting shared by the text reports and the TUI.

import { visible } from '../output.js';

export { visible };

export function fmtBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[u]}`;
}

export function fmtCount(n: number): string {
  return n.toLocaleString('en-US');
}

export function fmtAge(sec: number): string {
  if (sec < 1) return `${Math.round(sec * 1000)}ms`;
  if (sec < 60) return `${sec.toFixed(1)}s`;
  if (sec < 3600) return `${Math.floor(sec / 60)}m${String(Math.round(sec % 60)).padStart(2, '0')}s`;
  return `${Math.floor(sec / 3600)}h${String(Math.floor((sec % 3600) / 60)).padStart(2, '0')}m`;
}

/** "+1.2 MiB" / "-4.0 KiB": a rate of bytes with its sign. */
export function signedBytes(n: number): string {
  return `${n >= 0 ? '+' : '-'}${fmtBytes(Math.abs(n))}`;
}

export function fmtRate(perMin: number): string {
  if (perMin === 0) return '0';
  const s = perMin > 0 ? '+' : '';
  return Math.abs(perMin) >= 100 ? `${s}${Math.round(perMin)}` : `${s}${perMin.toFixed(1)}`;
}

/** Fits a name into width columns, cutting with an ellipsis; control bytes are shown escaped (see visible). */
export function fit(name: string, width: number): string {
  const text = visible(name);
  return text.length <= width ? text : width <= 1 ? text.slice(0, width) : text.slice(0, width - 1) + '…';
}

const BARS = '▁▂▃▄▅▆▇█';

/**
 * A sparkline of the whole series in at most `width` cells (each cell the maximum of its part), scaled 0..max, or
 * min..max with `fromMin` (a large, slowly changing count).
 */
export function sparkline(values: readonly number[], width: number, fromMin = false): string {
  let v: number[] = [...values];
  if (v.length > width) {
    const n = v.length;
    v = Array.from({ length: width }, (_, i) => {
      let m = 0;
      for (let j = Math.floor((i * n) / width); j < Math.floor(((i + 1) * n) / width); j++) m = Math.max(m, values[j]!);
      return m;
    });
  }
  const max = Math.max(1, ...v);
  const min = fromMin ? Math.min(...v) : 0;
  const range = Math.max(1, max - min);
  return v.map((x) => BARS[Math.min(BARS.length - 1, Math.round(((x - min) / range) * (BARS.length - 1)))]).join('');
}

/** A column of a text table: its heading, width and cell; `drop` ranks it for leaving out on a narrow terminal. */
export interface Column<R> {
  head: string;
  width: number;
  right?: boolean;
  /** Columns are left out, lowest first, until the table fits; a column without it always stays. */
  drop?: number;
  cell(row: R): string;
}

/**
 * A table fitted to `width` columns: whole columns are left out (lowest `drop` first) rather than rows wrapping.
 * Returns the heading and one line per row.
 */
export function table<R>(columns: readonly Column<R>[], rows: readonly R[], width: number): string[] {
  let cols = [...columns];
  const total = (cs: readonly Column<R>[]) => cs.reduce((n, c) => n + c.width, 0) + cs.length - 1;
  while (total(cols) > width) {
    const droppable = cols.filter((c) => c.drop !== undefined).sort((a, b) => a.drop! - b.drop!)[0];
    if (!droppable) break;
    cols = cols.filter((c) => c !== droppable);
  }
  const line = (cells: string[]) => cells.map((t, i) => (cols[i]!.right ? t.padStart(cols[i]!.width) : t.padEnd(cols[i]!.width))).join(' ').trimEnd();
  return [line(cols.map((c) => c.head)), ...rows.map((r) => line(cols.map((c) => c.cell(r))))];
}
