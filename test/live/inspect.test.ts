// kleak inspect on the real kernel, on objects whose content is known: a key payload the workload wrote, and the
// seq_operations single_open fills with function pointers for each open /proc/version.
import { execa } from 'execa';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { beforeAll, describe, expect, it } from 'vitest';
import { ensureTracefs } from '../../src/kernel/tracefs.js';
import { CLI, ROOT } from '../helpers/cli.js';
import { isRoot, onPath } from '../helpers/env.js';
import { sleep, startKleak, startWorkload } from '../helpers/live.js';
import { unescapeBuf } from '../../src/sources/kernel-memory.js';

const tmp = mkdtempSync(`${tmpdir()}/kleak-inspect-`);

it("bpftrace's %r escapes decode to the bytes", () => {
  expect([...unescapeBuf('\\x00\\xa0\\x0fkl|x')]).toEqual([0, 0xa0, 0x0f, 0x6b, 0x6c, 0x7c, 0x78]);
});

describe.skipIf(!isRoot || !onPath('bpftrace'))(`kleak inspect${isRoot && onPath('bpftrace') ? '' : ' (skipped: needs root and bpftrace)'}`, () => {
  beforeAll(async () => {
    await ensureTracefs();
  });

  async function heldReport(kleakArgs: string[], workloadArgs: string[]) {
    const k = startKleak(['--json', ...kleakArgs]);
    await k.ready;
    const w = startWorkload(workloadArgs);
    await w.until('holding');
    await sleep(500);
    k.proc.kill('SIGINT');
    const r = await k.proc;
    const file = `${tmp}/${kleakArgs.join('_').replace(/\W/g, '')}.json`;
    writeFileSync(file, String(r.stdout));
    return { file, w };
  }

  it('shows a key payload as the text the workload wrote, the 5 sampled keys grouped as alike', async () => {
    const { file, w } = await heldReport(['--bytes', '4096'], ['--hold', '5']);
    const r = await execa(process.execPath, [CLI, 'inspect', '--from', file, '--site', 'user_preparse'], { cwd: ROOT, reject: false });
    await w.release();
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^5 objects look alike: (ffff[0-9a-f]{12} ){4}ffff[0-9a-f]{12}$/m);
    // datalen 4000, its padding (not written by the kernel: stale bytes are possible), then the payload.
    expect(r.stdout).toMatch(/0010 {2}a0 0f (?:[0-9a-f]{2} ){6}6b 6c 65 61 6b 2d 68 6f/);
    // The text run may start in the stale bytes before the payload (seen: a '/' at +0x0).
    expect(r.stdout).toMatch(/text: "[^"]{0,16}kleak-hold-payload\|kleak-hold-payload/);
  });

  it('names the function pointers single_open stores for /proc/version', async () => {
    const { file, w } = await heldReport(['--bytes', '32', '--comm', 'python3'], ['--hold-proc', '7']);
    const r = await execa(process.execPath, [CLI, 'inspect', '--from', file, '--site', 'single_open'], { cwd: ROOT, reject: false });
    await w.release();
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/5 objects look alike/);
    expect(r.stdout).toMatch(/function pointers: \+0x0 single_start, \+0x8 single_stop, \+0x10 single_next, \+0x18 version_proc_show/);
  });
});
