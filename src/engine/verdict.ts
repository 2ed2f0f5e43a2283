// From a site's outstanding series to a verdict (docs/verdicts.md):
//   growing: a steady rise that does not come back down — the shape of a leak;
//   churn:   many allocations, nearly all freed;
//   steady:  neither (a stable population, a one-off batch, too little data).
// Thresholds are named, documented and tunable (VerdictThresholds); tests pin each rule.

export type Verdict = 'growing' | 'churn' | 'steady';

export interface VerdictThresholds {
  /** Fewest series points before a rise can be called growth. */
  minPoints: number;
  /** Shortest stretch of trace time, seconds, over which a rise can be called growth. */
  minSpanSec: number;
  /** The count must have risen by at least this many objects from the first point to the last... */
  minRise: number;
  /** ...and still be at least this share of its peak at the end (a cache that shrank back is not a leak)... */
  keepFraction: number;
  /** ...and have risen in at least this share of the steps where it changed... */
  risingStepFraction: number;
  /** ...and in at least this many steps (a steady rise, not one batch allocated at once). */
  minRisingSteps: number;
  /** Churn: at least this many allocations... */
  churnMinAllocs: number;
  /** ...of which at least this share were freed. */
  churnFreedFraction: number;
}

export const DEFAULT_THRESHOLDS: VerdictThresholds = {
  minPoints: 4,
  minSpanSec: 5,
  minRise: 3,
  keepFraction: 0.8,
  risingStepFraction: 0.6,
  minRisingSteps: 3,
  churnMinAllocs: 10,
  churnFreedFraction: 0.9,
};

/** "minSpanSec=30,minRise=10" (the --verdict option) over the defaults; unknown names and bad numbers are refused. */
export function parseThresholds(spec: string, base: VerdictThresholds = DEFAULT_THRESHOLDS): VerdictThresholds | string {
  const out: VerdictThresholds = { ...base };
  for (const part of spec.split(',').filter(Boolean)) {
    const [k, v] = part.split('=');
    // Own keys only: "__proto__" or "toString" are in every object, and are no threshold.
    if (k === undefined || !Object.prototype.hasOwnProperty.call(base, k)) return `unknown threshold "${k}" (known: ${Object.keys(base).join(', ')})`;
    const n = Number(v);
    if (v === undefined || v.trim() === '' || !Number.isFinite(n) || n < 0) return `threshold ${k} needs a number, not "${v ?? ''}"`;
    // Fractions are shares of a whole.
    if (/Fraction$/.test(k) && n > 1) return `threshold ${k} is a fraction from 0 to 1, not ${v}`;
    out[k as keyof VerdictThresholds] = n;
  }
  return out;
}

/** Least-squares slope of values over times, per minute. */
export function growthPerMinute(times: readonly number[], values: readonly number[]): number {
  const n = Math.min(times.length, values.length);
  if (n < 2) return 0;
  const off = times.length - n;
  let st = 0;
  let sv = 0;
  for (let i = 0; i < n; i++) {
    st += times[off + i]!;
    sv += values[i]!;
  }
  const mt = st / n;
  const mv = sv / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    const dt = times[off + i]! - mt;
    num += dt * (values[i]! - mv);
    den += dt * dt;
  }
  return den === 0 ? 0 : (num / den) * 60;
}

/**
 * The verdict of a gauge the kernel keeps (a cache's active objects, a meminfo line, a cgroup's kernel memory, a
 * vmalloc caller's areas, a record's count): its allocations and frees are not known, so it is growth or not.
 * - Judged above its lowest reading: a count on a large base (thousands moving by tens) is not growth by its base.
 * - A rise must be at least `share` of the gauge's mean and at least `floor` (what one step of its unit is: a
 *   slab's objects, a page's kB, a memcg charge batch), besides the thresholds' own minRise.
 * - `steps`: gauges that move in whole units (slabs, charge batches) show a steady leak in fewer, larger steps.
 * - A gauge whose fitted rate falls is never growing, whatever its last steps did.
 * Every gauge reader uses this one rule.
 */
export function gaugeVerdict(
  times: readonly number[],
  series: readonly number[],
  th: VerdictThresholds = DEFAULT_THRESHOLDS,
  o: { share?: number; floor?: number; steps?: number } = {},
): { verdict: Verdict; perMin: number } {
  const n = series.length;
  const span = n > 1 ? times[times.length - 1]! - times[times.length - n]! : 0;
  const min = Math.min(...series);
  const mean = series.reduce((a, b) => a + b, 0) / Math.max(1, n);
  const perMin = growthPerMinute(times, series);
  const judged = verdictOf(
    series.map((v) => v - min),
    span,
    0,
    0,
    { ...th, minRise: Math.max(th.minRise, mean * (o.share ?? 0), o.floor ?? 0), ...(o.steps !== undefined ? { minRisingSteps: Math.min(o.steps, th.minRisingSteps) } : {}) },
  );
  return { verdict: judged === 'growing' && perMin <= 0 ? 'steady' : judged, perMin };
}

export function verdictOf(
  series: readonly number[],
  spanSec: number,
  allocs: number,
  frees: number,
  th: VerdictThresholds = DEFAULT_THRESHOLDS,
): Verdict {
  if (series.length >= th.minPoints && spanSec >= th.minSpanSec) {
    let max = 0;
    let up = 0;
    let changed = 0;
    for (let i = 0; i < series.length; i++) {
      const v = series[i]!;
      if (v > max) max = v;
      if (i > 0 && v !== series[i - 1]) {
        changed++;
        if (v > series[i - 1]!) up++;
      }
    }
    const last = series[series.length - 1]!;
    if (last - series[0]! >= th.minRise && last >= th.keepFraction * max && up >= th.minRisingSteps && up / changed >= th.risingStepFraction) {
      return 'growing';
    }
  }
  if (allocs >= th.churnMinAllocs && frees >= th.churnFreedFraction * allocs) return 'churn';
  return 'steady';
}
