// Fault injection as a user meets it: a slow pipe reader, a full disk, an existing output, a doubled stop signal,
// hostile names. Each case failed before its fix (see docs/safety.md).
import { spawn } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { execa } from 'execa';
import { tmpdir } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, kleak, rec } from '../helpers/cli.js';
import { isRoot, onPath } from '../helpers/env.js';
import { startWorkload } from '../helpers/live.js';

const tmp = mkdtempSync(`${tmpdir()}/kleak-faults-`);

/** A trace-pipe text with `n` call sites, each holding one 32-byte object: a report of about 900 bytes a site. */
function manySites(n: number): string {
  const path = `${tmp}/sites-${n}.pipe`;
  const lines: string[] = [];
  for (let i = 0; i < n; i++) {
    const ptr = (0xffff888100000000n + BigInt(i) * 64n).toString(16);
    lines.push(`            bash-2429    [001] .....   ${(270 + i / 1000).toFixed(6)}: kmalloc: call_site=site_fn_${i}+0x39b/0x400 ptr=${ptr} bytes_req=32 bytes_alloc=32 gfp_flags=GFP_KERNEL node=0 accounted=false`);
  }
  writeFileSync(path, lines.join('\n') + '\n');
  return path;
}

/** Runs kleak with stdout into a pipe whose reader waits `delayMs` before reading anything. */
function throughSlowPipe(args: string[], delayMs: number): Promise<{ bytes: Buffer; code: number | null }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    const chunks: Buffer[] = [];
    child.stdout.pause();
    setTimeout(() => {
      child.stdout.on('data', (c: Buffer) => chunks.push(c));
      child.stdout.resume();
    }, delayMs);
    child.on('close', (code) => resolve({ bytes: Buffer.concat(chunks), code }));
  });
}

describe('outputs are whole', () => {
  it('a JSON report into a slow pipe is complete when kleak exits (was cut at 65,536 bytes)', async () => {
    const path = manySites(3000);
    const { bytes, code } = await throughSlowPipe(['replay', path, '--json', '--top', '5000'], 800);
    expect(code).toBe(0);
    expect(bytes.length).toBeGreaterThan(1_000_000);
    const j = JSON.parse(bytes.toString());
    expect(j.sites).toHaveLength(3000);
    expect(j.totals.outstanding).toBe(3000);
  });

  it('a reader that closes early ends kleak quietly, not in an internal error', async () => {
    const path = manySites(3000);
    const out = execFileSync('sh', ['-c', `node ${CLI} replay ${path} --json --top 5000 | head -c 100 >/dev/null; echo "\${PIPESTATUS:-}"`], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    expect(out).not.toMatch(/internal error/);
  });

  it('an export that exists is refused before the trace is read, and the folder must exist', async () => {
    const existing = `${tmp}/exists.folded`;
    writeFileSync(existing, 'mine\n');
    const r = await kleak(['replay', rec('keys53-stacks.report.gz'), '--json', '--folded', existing]);
    expect(r.exitCode).toBe(1);
    expect(String(r.stderr)).toMatch(/exists; kleak does not overwrite it/);
    expect(String(r.stdout)).toBe('');
    expect(readFileSync(existing, 'utf8')).toBe('mine\n');
    const r2 = await kleak(['replay', rec('keys53-stacks.report.gz'), '--json', '--pprof', `${tmp}/no/such/dir/x.pb.gz`]);
    expect(r2.exitCode).toBe(1);
    expect(String(r2.stderr)).toMatch(/the folder .* does not exist/);
  });
});

describe.skipIf(!isRoot)('a full disk', () => {
  const disk = `${tmp}/full`;
  beforeAll(() => {
    mkdirSync(disk);
    // A 64 KiB tmpfs, 40 KiB of it taken: a flame graph (130 KiB) cannot fit, a folded file (130 bytes) can.
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'kleak-full', disk]);
    writeFileSync(`${disk}/fill`, Buffer.alloc(40 * 1024));
  });
  afterAll(() => {
    execFileSync('umount', [disk]);
  });

  it('a flame graph that does not fit is removed and said; the report and the other exports still come (was a cut file and exit 0)', async () => {
    const r = await kleak(['replay', rec('keys53-stacks.report.gz'), '--json', '--folded', `${disk}/s.folded`, '--flamegraph', `${disk}/s.html`]);
    expect(r.exitCode).toBe(2);
    expect(JSON.parse(String(r.stdout)).sites[0]).toMatchObject({ function: 'user_preparse', outstanding: 53 });
    expect(String(r.stderr)).toMatch(/writing .*s\.html failed after \d+ of \d+ bytes: no space left on device \(ENOSPC\); the incomplete file was removed/);
    expect(existsSync(`${disk}/s.html`)).toBe(false);
    expect(readFileSync(`${disk}/s.folded`, 'utf8')).toMatch(/user_preparse \d+\n$/);
  });

  it('a trace.dat on stdin that does not fit in TMPDIR: one sentence, and no spool file is left (one was)', async (ctx) => {
    ctx.skip(!onPath('trace-cmd'), 'trace-cmd is not installed; .ci/run installs it');
    const before = readdirSync(disk).sort();
    const r = await kleak(['replay', '-', '--json'], { input: readFileSync(rec('keys53-stacks.dat')), env: { TMPDIR: disk } });
    expect(r.exitCode).toBe(1);
    expect(String(r.stderr)).toMatch(/^kleak: spooling the trace\.dat from stdin to .* failed after [\d,]+ bytes: .*no space left on device.*; nothing was left there\.$/m);
    expect(readdirSync(disk).sort()).toEqual(before);
  });

  it('kleak record onto a full disk keeps a readable file of whole lines, says how many were not written, exits 2', async (ctx) => {
    ctx.skip(process.env.KLEAK_SKIP_LIVE === '1', 'live tests are off');
    const out = `${disk}/r.pipe`;
    const k = execa(process.execPath, [CLI, 'record', '-o', out, '--bytes', '4096', '--duration', '4'], { reject: false });
    let err = '';
    k.stderr!.on('data', (d: Buffer) => (err += String(d)));
    while (!/recording with/.test(err) && k.exitCode === null) await new Promise((r) => setTimeout(r, 50));
    const w = startWorkload(['--hold', '300', '--seconds', '1']);
    await w.until('holding');
    await w.release();
    const r = await k;
    expect(r.exitCode, err).toBe(2);
    expect(err).toMatch(/writing .*r\.pipe failed after \d+ of \d+ bytes: no space left on device \(ENOSPC\); .*r\.pipe keeps the first ([\d,]+) lines/);
    expect(err).toMatch(/lines were not written/);
    const kept = Number(/keeps the first ([\d,]+) lines/.exec(err)![1]!.replace(/,/g, ''));
    const text = readFileSync(out, 'utf8');
    expect(kept, err).toBeGreaterThan(0);
    expect(text.endsWith('\n')).toBe(true);
    expect(text.split('\n').length - 1).toBe(kept);
    const back = await kleak(['replay', out, '--json']);
    expect(back.exitCode, String(back.stderr)).toBe(0);
    expect((JSON.parse(String(back.stdout)) as { totals: { badLines: number } }).totals.badLines).toBe(0);
    rmSync(out);
  });
});

describe('hostile names', () => {
  it('control bytes in comms and call sites are shown escaped in text, exact in JSON', async () => {
    const path = `${tmp}/hostile.pipe`;
    // A comm that would set the terminal's clipboard (OSC 52) and clear the screen; a call site with a newline is
    // impossible in trace_pipe text, but a recording can carry one.
    const comm = 'evil\x1b]52;c;aGk=\x07\x1b[2J';
    writeFileSync(
      path,
      JSON.stringify({ kind: 'header', kleak: 1, source: { kind: 'live', backend: 'bpftrace', mode: 'events' } }) +
        '\n' +
        JSON.stringify({ kind: 'alloc', ts: 1, ptr: 'ffff888100001000', callSite: 'fake\nkleak: forged line+0x1', bytesReq: 32, bytesAlloc: 32, tracepoint: 'kmalloc', pid: 7, comm }) +
        '\n',
    );
    const text = await kleak(['replay', path, '--text']);
    expect(String(text.stdout)).not.toMatch(/\x1b|\x07/);
    expect(String(text.stdout)).toContain('evil\\e]52;c;aGk=\\x07\\e[2J');
    expect(String(text.stdout).split('\n').some((l) => l.startsWith('kleak: forged'))).toBe(false);
    const json = JSON.parse(String((await kleak(['replay', path, '--json'])).stdout));
    expect(json.sites[0].samples[0].comm).toBe(comm);
  });

  it('a hostile file name in an error is escaped', async () => {
    const r = await kleak(['replay', `${tmp}/no\x1b]2;owned\x07such`]);
    expect(r.exitCode).toBe(1);
    expect(String(r.stderr)).not.toMatch(/\x1b/);
    expect(String(r.stderr)).toContain('\\e]2;owned\\x07');
  });
});

afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('one clear sentence (issue 23 item 10)', () => {
  it('a file name that is not valid UTF-8 is said as such (was "no such file")', async () => {
    // Made from bytes: Node would turn an invalid name given as a string into U+FFFD.
    const name = Buffer.concat([Buffer.from(`${tmp}/bad`), Buffer.from([0xff, 0xfe]), Buffer.from('name.gz')]);
    writeFileSync(name, readFileSync(rec('keys97.report.gz')));
    const r = execFileSync('sh', ['-c', `for f in "$1"/bad*name.gz; do node "$2" replay "$f" --json; echo "rc=$?"; done 2>&1`, 'sh', tmp, CLI], { encoding: 'utf8' });
    expect(r).toMatch(/^kleak: cannot read .*bad\uFFFD\uFFFDname\.gz: its name is not valid UTF-8 \(the bytes shown as \uFFFD\), and kleak can only open files by a UTF-8 name\.$/m);
    expect(r).toMatch(/^rc=1$/m);
    rmSync(name);
  });

  it('inspect --from a trace or a gzip says it is not a report (was a raw JSON parser message)', async () => {
    for (const [file, what] of [[rec('keys97.report.gz'), 'a gzip file'], [rec('keys53-stacks.dat'), 'not JSON']] as const) {
      const r = await kleak(['inspect', '--from', file, '--site', 'user_preparse']);
      expect(r.exitCode).toBe(1);
      expect(String(r.stderr)).toContain(`is not a kleak --json report (it is ${what}); inspect --from reads the report of a live run.`);
      expect(String(r.stderr)).not.toMatch(/Unexpected token|is not valid JSON/);
    }
  });
});
