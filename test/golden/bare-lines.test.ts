// Traces whose lines carry only a timestamp before the event name (no task, pid, CPU or flags), in the printk style
// (trace_pipe) and the field-list style (trace-cmd's kmem plugin): read like the whole lines, to the same answer
// (issue 22 item 11; they were "in no format kleak knows").
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { replayToReport } from '../../src/commands/replay.js';
import { rec } from '../helpers/cli.js';

const dir = mkdtempSync(`${tmpdir()}/kleak-bare-`);
/** Drops everything before the timestamp: "  bash-2429 [001] ..... 270.088368: kfree: …" → "270.088368: kfree: …". */
const bare = (text: string) => text.split('\n').map((l) => l.replace(/^.*\] +(?:\S+ +)?(\d+\.\d+: )/, '$1')).join('\n');

async function answer(path: string, bytes?: number) {
  const { report } = await replayToReport({ path, format: 'auto', filter: bytes ? { bytes } : {}, report: {} });
  return report;
}

describe('lines with only a timestamp before the event', () => {
  it.each([
    ['trace_pipe text (printk style)', 'keys41-plain.pipe.gz', 41],
    ['trace-cmd report text (field-list style)', 'keys53-stacks.report.gz', 53],
  ])('%s: the same held keys as the whole lines', async (_what, file, held) => {
    const text = gunzipSync(readFileSync(rec(file))).toString('latin1');
    const f = `${dir}/${file}.bare`;
    writeFileSync(f, bare(text), 'latin1');
    expect(readFileSync(f, 'latin1')).toMatch(/^\d+\.\d+: k/m);
    const whole = await answer(rec(file), 4096);
    const r = await answer(f, 4096);
    const site = r.sites.find((s) => s.function === 'user_preparse')!;
    expect(site.outstanding).toBe(held);
    expect(r.totals.outstanding).toBe(whole.totals.outstanding);
    expect(r.totals.badLines).toBe(0);
    expect(site.samples[0]!.pid).toBeUndefined();
    expect(r.notices.some((n) => /only a timestamp before the event/.test(n.text))).toBe(true);
  });
});
