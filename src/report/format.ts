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
