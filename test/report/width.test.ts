// Text reports fit the terminal (issue 22 item 15): tables lose columns rather than wrap, prose wraps between words,
// and a command a person copies is never split ("sud" / "o kleak live --bytes 4096" in a 100-column pane).
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { renderWatch } from '../../src/commands/watch.js';
import { isWatchSample, WatchModel } from '../../src/engine/watch.js';
import { wrapText, command } from '../../src/output.js';
import { renderText } from '../../src/report/text.js';
import { replayToReport } from '../../src/commands/replay.js';
import { rec } from '../helpers/cli.js';

function watchReport() {
  const model = new WatchModel();
  const text = gunzipSync(readFileSync(new URL('../kernel/fixtures/watch-kmalloc32-leak.ndjson.gz', import.meta.url))).toString('utf8');
  for (const line of text.trim().split('\n')) {
    const s = JSON.parse(line) as unknown;
    if (isWatchSample(s)) model.add(s);
  }
  return model.report({ top: 20 });
}

describe('reports fit the width', () => {
  it.each([80, 100, 132])('watch at %i columns: no line longer, the growing cache\'s command whole on one line', (width) => {
    const r = watchReport();
    expect(r.caches.some((c) => c.verdict === 'growing')).toBe(true);
    const text = renderWatch(r, width);
    for (const line of text.split('\n')) expect(line.length, line).toBeLessThanOrEqual(width);
    expect(text).toMatch(/^ {2}kmalloc-32 +is growing: sudo kleak live --bytes 32$/m);
    expect(text).not.toMatch(/\u00a0/);
  });

  it('the live text report at 80 columns: the site table fits, notes wrap between words', async () => {
    const { report } = await replayToReport({ path: rec('keys97.report.gz'), format: 'auto', filter: {}, report: {} });
    const text = renderText(report, 80);
    for (const line of text.split('\n')) expect(line.length, line).toBeLessThanOrEqual(80);
    expect(text).toMatch(/^user_preparse +kmalloc-4096 +97 +388 KiB +[\d.]+s +0 steady$/m);
    // Unlimited (a file, a pipe): the whole table as before.
    expect(renderText(report, Infinity)).toMatch(/^FUNCTION +CACHE +OUTSTAND +BYTES +OLDEST +GROWTH\/m +TREND +VERDICT$/m);
  });

  it('wrapping never breaks a command, even one longer than the width', () => {
    const line = `kmalloc-4k is growing: ${command('sudo kleak live --bytes 4096 --stacks --duration 60')} names who holds it`;
    const out = wrapText(line, 30).split('\n');
    expect(out).toContain('  sudo kleak live --bytes 4096 --stacks --duration 60');
    expect(out.every((l) => !l.includes('\u00a0'))).toBe(true);
  });
});
