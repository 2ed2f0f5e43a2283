import { render } from 'ink-testing-library';
import { describe, expect, it } from 'vitest';
import { WatchModel } from '../../src/engine/watch.js';
import { WatchApp } from '../../src/tui/WatchApp.js';

function model() {
  const m = new WatchModel();
  const kmalloc = [243, 363, 483, 603, 723, 843];
  const burst = [78, 300, 80, 300, 80, 80];
  kmalloc.forEach((n, i) =>
    m.add({ ts: i * 2, meminfo: { MemTotal: 1000, Slab: 10 + i }, slabs: [{ name: 'kmalloc-4k', activeObjs: n, numObjs: n, objSize: 4096 }, { name: 'kmalloc-cg-4k', activeObjs: burst[i]!, numObjs: 400, objSize: 4096 }] }),
  );
  return m;
}

async function frame(lastFrame: () => string | undefined, ok: (f: string) => boolean): Promise<string> {
  for (let i = 0; i < 100; i++) {
    const f = lastFrame() ?? '';
    if (ok(f)) return f;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out; last frame:\n${lastFrame()}`);
}

describe('watch view', () => {
  it('ranks the growing cache first with its live filter; Enter traces the selected cache', async () => {
    const m = model();
    let traced: string | undefined;
    const { lastFrame, stdin, unmount } = render(
      <WatchApp report={() => m.report({ merged: true })} onTrace={(c) => (traced = c)} onQuit={() => {}} size={{ columns: 100, rows: 24 }} refreshMs={20} />,
    );
    const f = await frame(lastFrame, (x) => x.includes('kmalloc-4k'));
    expect(f).toMatch(/›kmalloc-4k .* growing {2}--bytes 4096/);
    expect(f).toMatch(/caches may be merged/);
    stdin.write('j');
    await frame(lastFrame, (x) => /›kmalloc-cg-4k/.test(x));
    stdin.write('k');
    await frame(lastFrame, (x) => /›kmalloc-4k/.test(x));
    // Ink hands the new selection to its input handler in an effect after the frame is drawn; a person's next key
    // comes long after that, a test's may not.
    await new Promise((r) => setTimeout(r, 100));
    stdin.write('\r');
    for (let i = 0; i < 50 && traced === undefined; i++) await new Promise((r) => setTimeout(r, 20));
    expect(traced).toBe('kmalloc-4k');
    unmount();
  });
});
