// The flame view: a tree of outstanding bytes by stack (root → allocation site, or inverted), each node's share,
// open/close with the arrows, at 80x24; and the by-module view. Over a real recording with stacks.
import { render } from 'ink-testing-library';
import { beforeAll, describe, expect, it } from 'vitest';
import { replayToReport } from '../../src/commands/replay.js';
import type { Report } from '../../src/report/model.js';
import { App } from '../../src/tui/App.js';
import { buildStackTree, treeRows } from '../../src/tui/stack-tree.js';
import { rec } from '../helpers/cli.js';

let keys: Report;
beforeAll(async () => {
  keys = (await replayToReport({ path: rec('keys53-stacks.report.gz'), format: 'auto', filter: {}, report: {} })).report;
});

async function frameWhere(lastFrame: () => string | undefined, ok: (f: string) => boolean): Promise<string> {
  for (let i = 0; i < 100; i++) {
    const f = lastFrame() ?? '';
    if (ok(f)) return f;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out; last frame:\n${lastFrame()}`);
}
const pause = () => new Promise((r) => setTimeout(r, 120));

describe('stack tree', () => {
  it('root at the syscall entry, leaf at the allocation site, bytes adding up; inverted starts at the site', () => {
    const root = buildStackTree(keys.sites, false);
    expect(root.bytes).toBe(keys.totals.outstandingBytes);
    expect(root.children[0]!.name).toBe('entry_SYSCALL_64_after_hwframe');
    const rows = treeRows(root, new Set(), new Set());
    expect(rows.at(-1)!.node.name).toBe('user_preparse');
    expect(rows.every((r) => r.share === 1)).toBe(true);
    const inv = treeRows(buildStackTree(keys.sites, true), new Set(), new Set());
    expect(inv[0]!.node.name).toBe('user_preparse');
    const closedTop = treeRows(root, new Set(), new Set([root.children[0]!.key]));
    expect(closedTop).toHaveLength(1);
  });

  it('f shows the tree at 80x24, ← closes the selected node, r inverts it; m shows modules', async () => {
    const app = render(<App source={{ report: () => keys, progress: () => undefined, finished: () => true, problem: () => undefined }} save={() => ''} onQuit={() => {}} size={{ columns: 80, rows: 24 }} refreshMs={20} />);
    await frameWhere(app.lastFrame, (f) => f.includes('user_preparse'));
    await pause();
    app.stdin.write('f');
    const f = await frameWhere(app.lastFrame, (x) => x.includes('STACK (root'));
    const lines = f.split('\n');
    expect(lines.length).toBeLessThanOrEqual(24);
    expect(Math.max(...lines.map((l) => l.length))).toBeLessThanOrEqual(80);
    expect(f).toMatch(/›▾ entry_SYSCALL_64_after_hwframe\s+212 KiB\s+100\.0%\s+53/);
    expect(f).toMatch(/ {10}\s*user_preparse\s+212 KiB/);
    await pause();
    app.stdin.write('\u001b[D'); // ←
    const closed = await frameWhere(app.lastFrame, (x) => x.includes('▸ entry_SYSCALL'));
    expect(closed).not.toMatch(/user_preparse\s+212/);
    await pause();
    app.stdin.write('r');
    await frameWhere(app.lastFrame, (x) => /ALLOCATION SITE/.test(x) && /›▾ user_preparse/.test(x));
    await pause();
    app.stdin.write('f');
    await frameWhere(app.lastFrame, (x) => x.includes('FUNCTION'));
    await pause();
    app.stdin.write('m');
    const m = await frameWhere(app.lastFrame, (x) => x.includes('MODULE'));
    expect(m).toMatch(/the kernel itself\s+53\s+212 KiB/);
    app.unmount();
  });
});
