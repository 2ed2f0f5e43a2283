// Outstanding counts over trace time, one column per sample time and one row per site. The step starts at
// `stepSec` and doubles (halving the points) whenever the series would exceed `maxPoints`, so memory stays
// bounded for runs of any length while the shape is kept.

export class Series {
  readonly times: number[] = [];
  private rows: number[][] = [];
  private next = -Infinity;

  constructor(
    private step: number,
    private readonly maxPoints = 240,
  ) {}

  get stepSec(): number {
    return this.step;
  }

  /** True when `ts` has reached the next sample time. */
  due(ts: number): boolean {
    return ts >= this.next;
  }

  /** Records the current outstanding count of every site (`counts[siteId]`) at time ts. */
  sample(ts: number, counts: ArrayLike<number>): void {
    const col = this.times.length;
    this.times.push(ts);
    for (let s = 0; s < counts.length; s++) {
      let row = this.rows[s];
      if (row === undefined) {
        row = new Array<number>(col).fill(0);
        this.rows[s] = row;
      }
      row.push(counts[s]!);
    }
    this.next = (this.next === -Infinity ? ts : this.next) + this.step;
    if (this.next <= ts) this.next = ts + this.step;
    if (this.times.length > this.maxPoints) this.compact();
  }

  row(siteId: number): readonly number[] {
    return this.rows[siteId] ?? [];
  }

  private compact(): void {
    const keep = (a: number[]) => a.filter((_, i) => i % 2 === 1 || i === a.length - 1);
    const t = keep(this.times);
    this.times.length = 0;
    this.times.push(...t);
    this.rows = this.rows.map(keep);
    this.step *= 2;
  }
}
