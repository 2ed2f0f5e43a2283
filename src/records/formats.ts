// The registry of kernel records kleak replays (one line each), detected from a file's first lines.
import { allocTraces } from './alloc-traces.js';
import { allocinfo } from './allocinfo.js';
import type { RecordFormat, RecordFormatName } from './format.js';
import { kmemleak } from './kmemleak.js';
import { slabinfoSeries } from './slabinfo-series.js';
import { vmallocinfoSeries } from './vmallocinfo-series.js';

export const RECORD_FORMATS: readonly RecordFormat[] = [kmemleak, allocinfo, slabinfoSeries, allocTraces, vmallocinfoSeries];

export const recordFormatByName = (name: string): RecordFormat | undefined => RECORD_FORMATS.find((f) => f.name === name);
export const isRecordFormatName = (name: string): name is RecordFormatName => recordFormatByName(name) !== undefined;

export function detectRecordFormat(head: readonly string[]): RecordFormat | undefined {
  return RECORD_FORMATS.find((f) => f.sniff(head));
}
