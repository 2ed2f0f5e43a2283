// Colours, or none at all when NO_COLOR is set (https://no-color.org).
import type { Verdict } from '../engine/verdict.js';

export const noColor = (): boolean => process.env.NO_COLOR !== undefined && process.env.NO_COLOR !== '';

export function color(name: string): string | undefined {
  return noColor() ? undefined : name;
}

export function verdictColor(v: Verdict): string | undefined {
  return color(v === 'growing' ? 'red' : v === 'churn' ? 'gray' : 'green');
}
