// The TUI's views and keys, rendered with ink-testing-library over a real engine fed a real recording.
import { render } from 'ink-testing-library';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { replayToReport } from '../../src/commands/replay.js';
import type { Report } from '../../src/report/model.js';
import { App } from '../../src/tui/App.js';
import { saveReport } from '../../src/tui/run.js';
import { color, verdictColor } from '../../src/tui/theme.js';
import type { TuiSource } from '../../src/tui/source.js';
import { rec } from '../helpers/cli.js';

let demo: Report;
beforeAll(async () => {
  demo = (await replayToReport({ path: rec('demo.report.gz'), format: 'auto', filter: {}, report: {} })).report;
});

const source = (r: () => Report, extra: Partial<TuiSource> = {}): TuiSource => ({
  report: r, progress: () => undefined, finished: () => true, problem: () => undefined, ...extra,
});

/** Waits until the last frame satisfies `ok` (React 19 schedules renders; no fixed sleeps). */
async function frameWhere(lastFrame: () => string | undefined, ok: (f: string) => boolean, what: string): Promise<string> {
  for (let i = 0; i < 100; i++) {
    const f = lastFrame() ?? '';
    if (ok(f)) return f;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out waiting for ${what}; last frame:\n${lastFrame()}`);
}

const press = async (stdin: { write: (s: string) => void }, key: string) => {
  stdin.write(key);
  await new Promise((r) => setTimeout(r, 30));
};

const SIZE = { columns: 80, rows: 24 };
let cleanup: (() => void) | undefined;
afterEach(() => cleanup?.());

function show(src: TuiSource, size = SIZE, onQuit = () => {}) {
  const app = render(<App source={src} save={(r) => saveReport(r, mkdtempSync(`${tmpdir()}/kleak-save-`))} onQuit={onQuit} size={size} refreshMs={20} />);
  cleanup = app.unmount;
  return app;
}

describe('TUI', () => {
  it('main screen at 80x24: header totals, one row per site, sorted by bytes, verdicts', async () => {
    const { lastFrame } = show(source(() => demo));
    const f = await frameWhere(lastFrame, (x) => x.includes('user_preparse'), 'the table');
    const lines = f.split('\n');
    expect(lines.length).toBeLessThanOrEqual(24);
    expect(Math.max(...lines.map((l) => l.length))).toBeLessThanOrEqual(80);
    expect(f).toMatch(/replay .*demo\.report\.gz \(trace-cmd\)/);
    expect(f).toMatch(/outstanding 211 \(844 KiB\)/);
    expect(f).toMatch(/lost 0/);
    const rows = lines.filter((l) => /kmalloc/.test(l));
    expect(rows.map((l) => l.trim().split(/\s+/)[0]!.replace('›', ''))).toEqual(['pipe_resize_ring', 'user_preparse', 'alloc_fdtable']);
    expect(rows[1]).toMatch(/60\s+240 KiB\s+31\.0s\s+\+119 .* growing$/);
  });

  it('sort keys reorder the table (c: count, a: age, g: growth, b: bytes)', async () => {
    const { lastFrame, stdin } = show(source(() => demo));
    await frameWhere(lastFrame, (x) => x.includes('user_preparse'), 'the table');
    const firstRow = () => (lastFrame() ?? '').split('\n').find((l) => /kmalloc/.test(l))!;
    await press(stdin, 'g');
    await frameWhere(lastFrame, () => /user_preparse/.test(firstRow()), 'growth sort');
    expect(lastFrame()).toMatch(/GROW\/m▾/);
    await press(stdin, 'a');
    await frameWhere(lastFrame, () => /user_preparse|alloc_fdtable/.test(firstRow()), 'age sort');
    await press(stdin, 'c');
    await frameWhere(lastFrame, () => /pipe_resize_ring/.test(firstRow()), 'count sort');
    expect(lastFrame()).toMatch(/sorted by count/);
  });

  it('j/k move, Enter opens the detail with stack and samples, Esc goes back', async () => {
    const { lastFrame, stdin } = show(source(() => demo));
    await frameWhere(lastFrame, (x) => x.includes('user_preparse'), 'the table');
    await press(stdin, 'j');
    await frameWhere(lastFrame, (x) => /›user_preparse/.test(x), 'selection on user_preparse');
    await press(stdin, '\r');
    const d = await frameWhere(lastFrame, (x) => x.includes('stack of 60'), 'the detail');
    expect(d).toMatch(/user_preparse \(user_preparse\+0x2f\) · kmalloc-4096 · growing/);
    expect(d).toMatch(/← __key_create_or_update/);
    expect(d).toMatch(/ffff888108b51000 {2}age {2}31\.0s {2}pid 3946 python3 {2}4024 B requested/);
    expect(d).toMatch(/outstanding over time [▁▂▃▄▅▆▇█]+ 60/);
    await press(stdin, '\u001b');
    await frameWhere(lastFrame, (x) => x.includes('FUNCTION'), 'back to the table');
    await press(stdin, 'k');
    await frameWhere(lastFrame, (x) => /›pipe_resize_ring/.test(x), 'selection back up');
  });

  it('/ filters by function name', async () => {
    const { lastFrame, stdin } = show(source(() => demo));
    await frameWhere(lastFrame, (x) => x.includes('user_preparse'), 'the table');
    await press(stdin, '/');
    for (const ch of 'fdt') await press(stdin, ch);
    const f = await frameWhere(lastFrame, (x) => x.includes('filter: fdt'), 'the filter line');
    expect(f).not.toMatch(/user_preparse/);
    expect(f).toMatch(/alloc_fdtable/);
    await press(stdin, '\r');
    await frameWhere(lastFrame, (x) => x.includes('/ filter "fdt"'), 'the kept filter');
  });

  it('p pauses the display while the source goes on; p again resumes', async () => {
    let n = 1;
    const live = () => ({ ...demo, totals: { ...demo.totals, events: n } });
    const { lastFrame, stdin } = show(source(live, { finished: () => false }));
    await frameWhere(lastFrame, (x) => /· 1 events/.test(x), 'first frame');
    await press(stdin, 'p');
    await frameWhere(lastFrame, (x) => x.includes('PAUSED'), 'paused');
    n = 999;
    await new Promise((r) => setTimeout(r, 150));
    expect(lastFrame()).toMatch(/· 1 events/);
    await press(stdin, 'p');
    await frameWhere(lastFrame, (x) => /· 999 events/.test(x), 'resumed');
  });

  it('s saves the report as JSON and text and says where', async () => {
    const { lastFrame, stdin } = show(source(() => demo));
    await frameWhere(lastFrame, (x) => x.includes('user_preparse'), 'the table');
    await press(stdin, 's');
    const f = await frameWhere(lastFrame, (x) => x.includes('saved '), 'the saved message');
    const path = /saved (\S+)\.json/.exec(f.replace(/\n/g, ''))![1]!;
    const dir = path.slice(0, path.lastIndexOf('/'));
    const files = readdirSync(dir).sort();
    expect(files).toHaveLength(2);
    expect(JSON.parse(readFileSync(`${dir}/${files[0]}`, 'utf8')).sites[0].function).toBe('pipe_resize_ring');
    expect(readFileSync(`${dir}/${files[1]}`, 'utf8')).toMatch(/^kleak — replay/);
  });

  it('i in a site reads its objects (live) and shows what was read; Esc goes back; a replay says it cannot', async () => {
    const seen: string[] = [];
    const live = show(source(() => demo, { inspect: async (site) => (seen.push(site.function), ['5 objects look alike: ffff888108b51000 …', '  text: "kleak-hold-payload"']) }));
    await frameWhere(live.lastFrame, (x) => x.includes('user_preparse'), 'the table');
    await press(live.stdin, 'j');
    await press(live.stdin, '\r');
    await frameWhere(live.lastFrame, (x) => x.includes('i inspect objects'), 'the detail key line');
    await press(live.stdin, 'i');
    const f = await frameWhere(live.lastFrame, (x) => x.includes('kleak-hold-payload'), 'the inspected objects');
    expect(f).toMatch(/inspected user_preparse/);
    expect(seen).toEqual(['user_preparse']);
    await press(live.stdin, '\u001b');
    await frameWhere(live.lastFrame, (x) => x.includes('FUNCTION'), 'back to the table');
    live.unmount();
    const replay = show(source(() => demo));
    await frameWhere(replay.lastFrame, (x) => x.includes('user_preparse'), 'the table');
    await press(replay.stdin, '\r');
    await frameWhere(replay.lastFrame, (x) => x.includes('stack of'), 'the detail');
    await press(replay.stdin, 'i');
    await frameWhere(replay.lastFrame, (x) => x.includes('in kleak live only'), 'the explanation');
  });

  it('? shows the keys; q quits', async () => {
    let quit = false;
    const { lastFrame, stdin } = show(source(() => demo), SIZE, () => (quit = true));
    await frameWhere(lastFrame, (x) => x.includes('user_preparse'), 'the table');
    await press(stdin, '?');
    await frameWhere(lastFrame, (x) => x.includes('sort by bytes, count, age, growth'), 'the help');
    await press(stdin, 'q');
    expect(quit).toBe(true);
  });

  it('red lost-events count, progress bar while reading, the tracer problem line', async () => {
    const lossy = { ...demo, totals: { ...demo.totals, lostEvents: 870 } };
    const { lastFrame } = show(source(() => lossy, { finished: () => false, progress: () => 0.5, problem: () => 'bpftrace exited (code 1): out of memory' }));
    const f = await frameWhere(lastFrame, (x) => x.includes('lost 870'), 'the header');
    expect(f).toMatch(/reading ██████░░░░░░ 50%/);
    expect(f).toMatch(/bpftrace exited \(code 1\): out of memory/);
  });

  it('uses a wider terminal: full cache names and a longer trend', async () => {
    const { lastFrame } = show(source(() => demo), { columns: 120, rows: 30 });
    const f = await frameWhere(lastFrame, (x) => x.includes('user_preparse'), 'the table');
    expect(f).toMatch(/kmalloc-cg-4096/);
    expect(f).toMatch(/GROWTH\/m/);
    expect(f).toMatch(/[▁▂▃▄▅▆▇█]{16} growing/);
  });

  it('NO_COLOR turns every colour off (the tmux test checks the escape codes on a real terminal)', () => {
    expect(color('red')).toBe('red');
    expect(verdictColor('growing')).toBe('red');
    process.env.NO_COLOR = '1';
    try {
      expect(color('red')).toBeUndefined();
      expect(verdictColor('growing')).toBeUndefined();
    } finally {
      delete process.env.NO_COLOR;
    }
  });
});

describe('TUI at small sizes and with a filter', () => {
  it('at 80x24 the header keeps VERDICT whatever the sort, and kmalloc-cg-4096 fits its column', async () => {
    const { lastFrame, stdin } = show(source(() => demo));
    await frameWhere(lastFrame, (x) => x.includes('user_preparse'), 'the table');
    for (const key of ['g', 'a', 'c', 'b']) {
      await press(stdin, key);
      const f = await frameWhere(lastFrame, (x) => /▾/.test(x), `sorted by ${key}`);
      expect(f.split('\n').find((l) => l.includes('FUNCTION')), `sort ${key}`).toMatch(/ VERDICT$/);
    }
    expect(lastFrame()).toMatch(/pipe_resize_ring kmalloc-cg-4096 /);
  });

  it('below 80x24 the detail view never draws more lines than the screen has', async () => {
    const { lastFrame, stdin } = show(source(() => demo), { columns: 70, rows: 14 });
    const table = await frameWhere(lastFrame, (x) => x.includes('user_prep'), 'the table');
    expect(table.split('\n').find((l) => l.includes('FUNCTION'))).toMatch(/ VERDICT$/);
    await press(stdin, '\r');
    const f = await frameWhere(lastFrame, (x) => /outstanding over time/.test(x), 'the detail');
    expect(f.split('\n').length).toBeLessThanOrEqual(14);
  });

  it('s with a / filter on saves the sites the table shows, and says so', async () => {
    let saved: Report | undefined;
    const app = render(<App source={source(() => demo)} save={(r) => ((saved = r), 'saved it')} onQuit={() => {}} size={SIZE} refreshMs={20} />);
    cleanup = app.unmount;
    await frameWhere(app.lastFrame, (x) => x.includes('user_preparse'), 'the table');
    for (const k of ['/', 'u', 's', 'e', 'r', '\r']) await press(app.stdin, k);
    await press(app.stdin, 's');
    const f = await frameWhere(app.lastFrame, (x) => /saved it/.test(x), 'the message');
    expect(f).toMatch(/the 1 sites matching "user"/);
    expect(saved!.sites.map((s) => s.function)).toEqual(['user_preparse']);
    expect(saved!.notices.some((n) => /saved with the TUI filter "user": 1 of 3 sites/.test(n.text))).toBe(true);
  });
});
