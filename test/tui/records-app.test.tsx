import { render } from 'ink-testing-library';
import { describe, expect, it } from 'vitest';
import { WatchModel } from '../../src/engine/watch.js';
import { RecordsModel, type RecordsReport } from '../../src/records/model.js';
import { RecordsApp } from '../../src/tui/RecordsApp.js';
import { WatchApp } from '../../src/tui/WatchApp.js';

async function frame(lastFrame: () => string | undefined, ok: (f: string) => boolean): Promise<string> {
  for (let i = 0; i < 150; i++) {
    const f = lastFrame() ?? '';
    if (ok(f)) return f;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out; last frame:\n${lastFrame()}`);
}

/** Ten kmemleak-like readings: a driver's site grows by 7 objects each, a kernel site stays at 30. */
function frames(): RecordsReport[] {
  const m = new RecordsModel();
  const out: RecordsReport[] = [];
  for (let k = 0; k < 10; k++) {
    m.add(k * 600, { sites: [
      { key: 'drv_rx_refill [drv]', label: 'drv_rx_refill', module: 'drv', where: 'drv_rx_refill [drv] ← drv_poll [drv]', count: 5 + 7 * k, bytes: 512 * (5 + 7 * k) },
      { key: 'tty_buffer_alloc', label: 'tty_buffer_alloc', count: 30, bytes: 30 * 1024 },
    ] });
    out.push(m.report('kmemleak', { badLines: [], notices: [] }));
  }
  return out;
}

describe('records replay view', () => {
  it('unfolds the readings to the last one, where the driver site is growing; m shows the modules; space and arrows step', async () => {
    const { lastFrame, stdin, unmount } = render(<RecordsApp frames={frames()} stepMs={10} size={{ columns: 110, rows: 20 }} />);
    const end = await frame(lastFrame, (f) => /reading 10 of 10/.test(f));
    expect(end).toMatch(/›drv_rx_refill\s+\[drv\]\s+68 .* growing/);
    expect(end).toMatch(/tty_buffer_alloc\s+-\s+30 .* steady/);
    expect(end).toMatch(/drv_rx_refill: drv_rx_refill \[drv\] ← drv_poll \[drv\]/);
    expect(end).toMatch(/all readings/);
    stdin.write('m');
    const mods = await frame(lastFrame, (f) => /GROWING SITES/.test(f));
    expect(mods).toMatch(/\[drv\]\s+34 KiB .* 1$/m);
    stdin.write('m');
    await frame(lastFrame, (f) => /SITE/.test(f));
    await new Promise((r) => setTimeout(r, 50));
    stdin.write('\u001b[D'); // ←
    await frame(lastFrame, (f) => /reading 9 of 10/.test(f) && /paused/.test(f));
    unmount();
  });
});

describe('watch view sections', () => {
  it('Tab shows the vmalloc callers, then the kernel records, then the caches again', async () => {
    const m = new WatchModel();
    for (let i = 0; i < 6; i++) m.add({ ts: i * 2, meminfo: { MemTotal: 1000 }, slabs: [{ name: 'kmalloc-4k', activeObjs: 100, numObjs: 100, objSize: 4096 }], vmalloc: [{ caller: 'array_map_alloc', type: 'vmalloc', areas: 3 + 4 * i, bytes: (3 + 4 * i) * 1052672, pages: (3 + 4 * i) * 257 }] });
    const rec = frames().at(-1)!;
    const sections = () => [
      { title: 'vmalloc callers (/proc/vmallocinfo)', countLabel: 'AREAS', rows: m.report({}).vmallocCallers!.map((c) => ({ key: c.caller, label: `${c.caller} (${c.type})`, count: c.areas, bytes: c.bytes, countPerMin: c.areasPerMin, bytesPerMin: c.bytesPerMin, verdict: c.verdict, series: c.series })) },
      { title: 'kmemleak (10 readings)', countLabel: 'COUNT', rows: rec.sites.map((s) => ({ key: s.label, ...s })) },
    ];
    const { lastFrame, stdin, unmount } = render(<WatchApp report={() => m.report({})} sections={sections} onTrace={() => {}} onQuit={() => {}} size={{ columns: 110, rows: 24 }} refreshMs={20} />);
    await frame(lastFrame, (f) => f.includes('kmalloc-4k') && f.includes('tab vmalloc callers'));
    stdin.write('\t');
    const v = await frame(lastFrame, (f) => f.includes('vmalloc callers (/proc/vmallocinfo)'));
    expect(v).toMatch(/›array_map_alloc \(vmalloc\)\s+-\s+23 .* growing/);
    stdin.write('\t');
    const k = await frame(lastFrame, (f) => f.includes('kmemleak (10 readings)'));
    expect(k).toMatch(/drv_rx_refill\s+\[drv\]\s+68/);
    stdin.write('\t');
    await frame(lastFrame, (f) => /CACHE/.test(f) && f.includes('kmalloc-4k'));
    unmount();
  });
});
