// The real binary in a real terminal (tmux): replay a recording, sort, open a detail, quit; read the screen.
import { execa } from 'execa';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { afterAll, describe, expect, it } from 'vitest';
import { CLI, rec } from '../helpers/cli.js';
import { onPath } from '../helpers/env.js';

const session = `kleak-e2e-${process.pid}`;
const tmux = (...args: string[]) => execa('tmux', args, { reject: false });
const screen = async (escapes = false) => String((await tmux('capture-pane', '-p', ...(escapes ? ['-e'] : []), '-t', session)).stdout);

async function waitFor(what: string, ok: (s: string) => boolean, escapes = false): Promise<string> {
  for (let i = 0; i < 150; i++) {
    const s = await screen(escapes);
    if (ok(s)) return s;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}; screen:\n${await screen()}`);
}

async function keys(...k: string[]): Promise<void> {
  for (const key of k) {
    await tmux('send-keys', '-t', session, key);
    await new Promise((r) => setTimeout(r, 150));
  }
}

async function start(env = '', file = rec('demo.report.gz')): Promise<void> {
  await tmux('kill-session', '-t', session);
  await tmux('new-session', '-d', '-s', session, '-x', '100', '-y', '30', `${env} ${process.execPath} ${CLI} replay ${file}; echo EXIT=$?; sleep 60`);
}

afterAll(async () => {
  await tmux('kill-session', '-t', session);
});

describe.skipIf(!onPath('tmux'))(`kleak in a terminal${onPath('tmux') ? '' : ' (skipped: tmux is not installed; .ci/run installs it)'}`, () => {
  it('f shows the stack tree of a recording with stacks (root → user_preparse), ← closes, r inverts, m the modules', async () => {
    await start('', rec('keys53-stacks.report.gz'));
    await waitFor('the table', (s) => s.includes('user_preparse') && s.includes('done'));
    await keys('f');
    const tree = await waitFor('the tree', (s) => s.includes('STACK (root'));
    expect(tree).toMatch(/›▾ entry_SYSCALL_64_after_hwframe\s+212 KiB\s+100\.0%\s+53/);
    expect(tree).toMatch(/^\s+user_preparse\s+212 KiB\s+100\.0%\s+53/m);
    await keys('Left');
    await waitFor('the closed root', (s) => s.includes('▸ entry_SYSCALL') && !/user_preparse\s+212/.test(s));
    await keys('r');
    await waitFor('the inverted tree', (s) => s.includes('ALLOCATION SITE') && /›▾ user_preparse/.test(s));
    await keys('m');
    await waitFor('the modules', (s) => /the kernel itself\s+53\s+212 KiB/.test(s));
    await keys('q');
    await waitFor('the exit', (s) => s.includes('EXIT=0'));
  });

  it('replays the demo, sorts, opens a detail, quits to the final report', async () => {
    await start();
    const first = await waitFor('the table', (s) => s.includes('user_preparse') && s.includes('done'));
    expect(first).toMatch(/kleak replay .*demo\.report\.gz \(trace-cmd\)/);
    expect(first).toMatch(/›pipe_resize_ring .* churn/);
    const coloured = await screen(true);
    expect(coloured).toMatch(/\u001b\[31mgrowing/); // growing is red
    await keys('c');
    await waitFor('the count sort', (s) => s.includes('sorted by count') && s.includes('OUTST▾'));
    await keys('j');
    await waitFor('the selection', (s) => s.includes('›user_preparse'));
    await keys('Enter');
    const detail = await waitFor('the detail', (s) => s.includes('stack of 60'));
    expect(detail).toMatch(/← __do_sys_add_key/);
    expect(detail).toMatch(/pid 3946 python3 {2}4024 B requested/);
    await keys('q');
    const after = await waitFor('the exit', (s) => s.includes('EXIT='));
    expect(after).toMatch(/EXIT=0/);
    expect(after).toMatch(/user_preparse \(user_preparse\+0x2f\): 60 outstanding/);
  });

  it('NO_COLOR=1: no colour escape codes on screen', async () => {
    await start('NO_COLOR=1');
    const s = await waitFor('the table', (x) => x.includes('user_preparse') && x.includes('done'), true);
    // Any foreground colour (39 is tmux's reset to the default colour, not a colour).
    expect(s).not.toMatch(/\u001b\[(?:3[0-7]|9[0-7]|38;)/);
    await keys('q');
    await waitFor('the exit', (x) => x.includes('EXIT=0'));
  });

  it('a file in no known format: the one-sentence error on the normal screen, no TUI', async () => {
    const bad = `${mkdtempSync(`${tmpdir()}/kleak-e2e-`)}/notes.txt`;
    writeFileSync(bad, 'shopping list\n'.repeat(50));
    await start('', bad);
    const s = await waitFor('the exit', (x) => x.includes('EXIT='));
    expect(s).toMatch(/notes\.txt is in no format kleak knows; kleak reads /);
    expect(s).toMatch(/EXIT=1/);
    expect(s).not.toMatch(/OUTST/);
  });

  it('a damaged gzip: the TUI shows why reading stopped; q prints the report of what was read, the damage, exit 1', async () => {
    const { readFileSync } = await import('node:fs');
    const whole = readFileSync(rec('demo.report.gz'));
    const cut = `${mkdtempSync(`${tmpdir()}/kleak-e2e-`)}/cut.report.gz`;
    writeFileSync(cut, whole.subarray(0, whole.length >> 1));
    await start('', cut);
    const tui = await waitFor('the damage in the header', (x) => /is damaged after line/.test(x));
    expect(tui).toMatch(/OUTST/);
    await keys('q');
    const s = await waitFor('the exit', (x) => x.includes('EXIT='));
    expect(s).toMatch(/by module: the kernel itself/); // the end of the final report
    // The terminal wraps long lines (a space at the break may go): compared without whitespace.
    expect(s.replace(/\s/g, '')).toMatch(/kleak:.*cut\.report\.gzisdamagedafterline[\d,]+\(thegzipdataiscutshortatbyte[\d,]+\);thereportabovecoverswhatwasreadbeforeit\./);
    expect(s).toMatch(/EXIT=1/);
  });

  it('follows a resize to 80x24', async () => {
    await start();
    await waitFor('the table', (s) => s.includes('user_preparse') && s.includes('done'));
    await tmux('resize-window', '-t', session, '-x', '80', '-y', '24');
    const s = await waitFor('the narrow layout', (x) => x.includes('GROW/m') && !x.includes('GROWTH/m'));
    expect(Math.max(...s.split('\n').map((l) => l.length))).toBeLessThanOrEqual(80);
    await keys('q');
  });
});
