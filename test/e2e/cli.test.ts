// The built binary as a user runs it: outputs, exit codes, one-sentence errors.
import { mkdtempSync, readFileSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { kleak, rec } from '../helpers/cli.js';
import { onPath } from '../helpers/env.js';

const tmp = mkdtempSync(`${tmpdir()}/kleak-test-`);

describe('kleak replay', () => {
  it('prints the JSON report of docs/design.md', async () => {
    const r = await kleak(['replay', rec('keys97.report.gz'), '--json']);
    expect(r.exitCode).toBe(0);
    const j = JSON.parse(String(r.stdout));
    expect(j.kleak).toBe(1);
    expect(j.source).toEqual({ kind: 'replay', path: rec('keys97.report.gz'), format: 'trace-cmd' });
    expect(Object.keys(j.totals).sort()).toEqual(['allocs', 'badLines', 'events', 'frees', 'lines', 'lostEvents', 'matchedFrees', 'missedFrees', 'outstanding', 'outstandingBytes', 'unknownFrees'].sort());
    const s = j.sites[0];
    expect(s).toMatchObject({ function: 'user_preparse', callSite: 'user_preparse+0x2f', cache: 'kmalloc-4096', outstanding: 97, outstandingBytes: 97 * 4096, allocs: 597, frees: 500 });
    for (const k of ['oldestAgeSec', 'growthPerMin', 'verdict', 'stacks', 'samples']) expect(s).toHaveProperty(k);
    expect(s.samples[0]).toMatchObject({ comm: 'python3', bytesReq: 4024 });
  });

  it('reads stdin, gzipped or not', async () => {
    const gz = readFileSync(rec('keys41-plain.pipe.gz'));
    for (const input of [gz, gunzipSync(gz)]) {
      const r = await kleak(['replay', '-', '--json'], { input });
      expect(r.exitCode).toBe(0);
      expect(JSON.parse(String(r.stdout)).sites[0]).toMatchObject({ function: 'user_preparse', outstanding: 41 });
    }
  });

  it('--top, --min-age and --bytes filter the report', async () => {
    const all = JSON.parse(String((await kleak(['replay', rec('demo.report.gz'), '--json'])).stdout));
    expect(all.sites.length).toBeGreaterThan(2);
    const top1 = JSON.parse(String((await kleak(['replay', rec('demo.report.gz'), '--json', '--top', '1'])).stdout));
    expect(top1.sites).toHaveLength(1);
    expect(top1.siteCount).toBe(all.siteCount);
    const old = JSON.parse(String((await kleak(['replay', rec('demo.report.gz'), '--json', '--bytes', '4096', '--min-age', '10'])).stdout));
    // The resized pipes are replaced every 3 s: none is 10 s old. The workload leaked 2 keys a second from the
    // start of the 31 s trace, so about 2 × 21 of them are at least 10 s old (±3 for its start-up and timer).
    expect(old.sites.find((s: { function: string }) => s.function === 'pipe_resize_ring')).toBeUndefined();
    const span = old.span.lastTs - old.span.firstTs;
    const aged = old.sites.find((s: { function: string }) => s.function === 'user_preparse').outstanding;
    expect(Math.abs(aged - 2 * (span - 10))).toBeLessThanOrEqual(3);
    expect(aged).toBeLessThan(60);
    const small = JSON.parse(String((await kleak(['replay', rec('demo.report.gz'), '--json', '--max-bytes', '64'])).stdout));
    expect(small.totals.allocs).toBe(0);
  });

  it('--verdict tunes the thresholds: a 31 s trace cannot show growth over 60 s', async () => {
    const base = JSON.parse(String((await kleak(['replay', rec('demo.report.gz'), '--json'])).stdout));
    expect(base.sites.find((s: { function: string }) => s.function === 'user_preparse').verdict).toBe('growing');
    const strict = JSON.parse(String((await kleak(['replay', rec('demo.report.gz'), '--json', '--verdict', 'minSpanSec=60'])).stdout));
    expect(strict.sites.find((s: { function: string }) => s.function === 'user_preparse').verdict).not.toBe('growing');
  });

  it('text output counts malformed lines and names their line numbers', async () => {
    const lines = gunzipSync(readFileSync(rec('keys41-plain.pipe.gz'))).toString().split('\n');
    lines.splice(10, 0, '         python3-2385    [001] .....   268.0: kmalloc: call_site=user_preparse+0x2f/0x70 ptr=NOTAPTR bytes_req=1 bytes_alloc=8');
    lines.splice(20, 0, '\u0000garbage');
    const f = `${tmp}/damaged.pipe`;
    writeFileSync(f, lines.join('\n'));
    const r = await kleak(['replay', f, '--text']);
    expect(r.exitCode).toBe(0);
    expect(String(r.stdout)).toMatch(/bad lines 2\b/);
    expect(String(r.stdout)).toMatch(/line 11 \(ptr=NOTAPTR is not a pointer\), line 21 \(not an ftrace event line\)/);
    expect(String(r.stdout)).toMatch(/user_preparse .* 41 /);
  });

  it('an unknown format gets one sentence naming the formats, exit 1', async () => {
    const f = `${tmp}/notes.txt`;
    writeFileSync(f, 'hello\nthis is not a trace\n');
    const r = await kleak(['replay', f]);
    expect(r.exitCode).toBe(1);
    expect(String(r.stderr)).toMatch(/^kleak: .*notes\.txt is in no format kleak knows; kleak reads `trace-cmd report` text .*trace_pipe.* and kleak NDJSON recordings \(--format ndjson\)\./);
    expect(String(r.stderr).split('\n').filter(Boolean).length).toBeLessThanOrEqual(2);
  });

  it('--format overrides detection', async () => {
    const r = await kleak(['replay', rec('keys41-plain.pipe.gz'), '--format', 'trace-cmd', '--json']);
    expect(JSON.parse(String(r.stdout)).sites[0].outstanding).toBe(41);
    const bad = await kleak(['replay', rec('keys41-plain.pipe.gz'), '--format', 'perf']);
    expect(bad.exitCode).toBe(1);
    expect(String(bad.stderr)).toMatch(/--format perf is not a format kleak reads/);
  });

  it('a missing file, an unreadable file, a directory and bad options: one sentence, exit 1', async () => {
    const missing = await kleak(['replay', `${tmp}/nope.report`]);
    expect(missing.exitCode).toBe(1);
    expect(String(missing.stderr)).toMatch(/cannot read .*nope\.report: no such file/);
    const dir = await kleak(['replay', tmp]);
    expect(String(dir.stderr)).toMatch(/is a directory/);
    const f = `${tmp}/secret.report`;
    writeFileSync(f, 'x');
    chmodSync(f, 0);
    if (process.getuid?.() !== 0) expect(String((await kleak(['replay', f])).stderr)).toMatch(/cannot read/);
    const opt = await kleak(['replay', rec('keys97.report.gz'), '--bytes', 'lots']);
    expect(opt.exitCode).toBe(1);
    expect(String(opt.stderr)).toMatch(/--bytes needs a whole number/);
    const unknown = await kleak(['replay', rec('keys97.report.gz'), '--colour']);
    expect(unknown.exitCode).toBe(1);
    expect(String(unknown.stderr)).toMatch(/Unknown option '--colour'/);
  });

  it('a trace.dat without trace-cmd on the host: one sentence naming the package, exit 2', async () => {
    const r = await kleak(['replay', rec('keys53-stacks.dat')], { env: { PATH: '/nonexistent' } });
    expect(r.exitCode).toBe(2);
    expect(String(r.stderr)).toMatch(/needs trace-cmd, which is not installed/);
    expect(String(r.stderr)).toMatch(/apt-get install trace-cmd/);
  });

  it("a damaged trace.dat: trace-cmd's complaint in one sentence, exit 1", async (ctx) => {
    ctx.skip(!onPath('trace-cmd'), 'trace-cmd is not installed; .ci/run installs it');
    const f = `${tmp}/damaged.dat`;
    writeFileSync(f, Buffer.concat([Buffer.from([0x17, 0x08, 0x44]), Buffer.from('tracing6\0\0garbage')]));
    const r = await kleak(['replay', f]);
    expect(r.exitCode).toBe(1);
    expect(String(r.stderr)).toMatch(/^kleak: trace-cmd (?:could not read|report printed nothing for) .*damaged\.dat/);
  });

  it('--help shows examples first and every command', async () => {
    const r = await kleak(['--help']);
    expect(r.exitCode).toBe(0);
    expect(String(r.stdout)).toMatch(/^kleak — .*\n\nEXAMPLES\n/);
    for (const c of ['live', 'replay', 'record', 'watch', 'census', 'inspect']) expect(String(r.stdout)).toMatch(new RegExp(`^  kleak ${c} `, 'm'));
    const unknown = await kleak(['frobnicate']);
    expect(unknown.exitCode).toBe(1);
    expect(String(unknown.stderr)).toMatch(/unknown command "frobnicate".*\n.*Commands: live, record, replay, watch, census, inspect/);
  });

  it('an empty file says so', async () => {
    const f = `${tmp}/empty.report`;
    writeFileSync(f, '');
    const r = await kleak(['replay', f]);
    expect(r.exitCode).toBe(1);
    expect(String(r.stderr)).toMatch(/empty/);
  });

  it('with no arguments and no terminal, replays the bundled demo as text', async () => {
    const r = await kleak([]);
    expect(r.exitCode).toBe(0);
    expect(String(r.stdout)).toMatch(/demo\.report\.gz/);
    expect(String(r.stdout)).toMatch(/user_preparse .* growing/);
  });
});
