import { describe, expect, it } from 'vitest';
import { DEFAULT_THRESHOLDS, growthPerMinute, verdictOf } from '../../src/engine/verdict.js';

describe('verdicts', () => {
  it('a steady rise that stays up is growing', () => {
    expect(verdictOf([0, 2, 4, 6, 8, 10, 12], 30, 12, 0)).toBe('growing');
  });
  it('a rise that comes back down is not growing', () => {
    expect(verdictOf([0, 50, 100, 150, 20, 0], 30, 150, 150)).toBe('churn');
  });
  it('a rise over too short a stretch of trace is not called growth yet', () => {
    expect(verdictOf([0, 10, 20, 30, 40], DEFAULT_THRESHOLDS.minSpanSec - 1, 40, 0)).toBe('steady');
  });
  it('one jump then flat is steady, not growing', () => {
    expect(verdictOf([0, 97, 97, 97, 97, 97, 97], 30, 97, 0)).toBe('steady');
    expect(verdictOf([0, 40, 97, 97, 97, 97, 97], 30, 97, 0)).toBe('steady');
  });
  it('many allocations nearly all freed is churn', () => {
    expect(verdictOf([1, 0, 2, 1, 0, 1], 30, 1000, 999)).toBe('churn');
  });
  it('a flat population is steady', () => {
    expect(verdictOf([5, 5, 5, 5, 5], 30, 5, 0)).toBe('steady');
  });
  it('thresholds are tunable', () => {
    expect(verdictOf([0, 1, 2, 3, 4], 30, 4, 0)).toBe('growing');
    expect(verdictOf([0, 1, 2, 3, 4], 30, 4, 0, { ...DEFAULT_THRESHOLDS, minRise: 10 })).toBe('steady');
  });
  it('growth per minute is the least-squares slope', () => {
    expect(growthPerMinute([0, 10, 20, 30], [0, 5, 10, 15])).toBeCloseTo(30);
    expect(growthPerMinute([0], [3])).toBe(0);
  });
});

describe('--verdict thresholds', () => {
  it('parses K=V pairs over the defaults and refuses unknown names and bad numbers', async () => {
    const { parseThresholds } = await import('../../src/engine/verdict.js');
    expect(parseThresholds('minSpanSec=60,minRise=10')).toEqual({ ...DEFAULT_THRESHOLDS, minSpanSec: 60, minRise: 10 });
    expect(parseThresholds('bogus=1')).toMatch(/unknown threshold "bogus"/);
    expect(parseThresholds('minRise=lots')).toMatch(/needs a number/);
  });
});
