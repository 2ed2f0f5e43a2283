// Files kleak writes hold kernel addresses: 0600, new, never through a symlink; --force replaces a regular file.
import { mkdtempSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { describe, expect, it } from 'vitest';
import { NdjsonRecorder } from '../../src/report/ndjson-writer.js';
import { createPrivateFile } from '../../src/report/private-file.js';
import { saveReport } from '../../src/tui/run.js';
import { Engine } from '../../src/engine/engine.js';

const dir = mkdtempSync(`${tmpdir()}/kleak-private-`);

describe('files kleak writes', () => {
  it('a recording is created 0600', () => {
    const rec = new NdjsonRecorder(`${dir}/a.ndjson`, { source: { kind: 'live' } });
    rec.close({ how: 'stopped' });
    expect(statSync(`${dir}/a.ndjson`).mode & 0o777).toBe(0o600);
    expect(readFileSync(`${dir}/a.ndjson`, 'utf8')).toMatch(/"kind":"header"[\s\S]*"kind":"end"/);
  });

  it('an existing file is refused without --force, and replaced (0600) with it', () => {
    writeFileSync(`${dir}/b.ndjson`, 'precious', { mode: 0o644 });
    expect(() => createPrivateFile(`${dir}/b.ndjson`)).toThrow(/exists; kleak does not overwrite it/);
    expect(readFileSync(`${dir}/b.ndjson`, 'utf8')).toBe('precious');
    const rec = new NdjsonRecorder(`${dir}/b.ndjson`, {}, true);
    rec.close();
    expect(statSync(`${dir}/b.ndjson`).mode & 0o777).toBe(0o600);
    expect(readFileSync(`${dir}/b.ndjson`, 'utf8')).not.toContain('precious');
  });

  it('a symbolic link is never written through, with or without --force', () => {
    writeFileSync(`${dir}/target`, 'root-only');
    symlinkSync(`${dir}/target`, `${dir}/link.ndjson`);
    expect(() => createPrivateFile(`${dir}/link.ndjson`)).toThrow(/symbolic link|exists/);
    expect(() => createPrivateFile(`${dir}/link.ndjson`, true)).toThrow(/symbolic link/);
    expect(readFileSync(`${dir}/target`, 'utf8')).toBe('root-only');
  });

  it("the TUI's save writes 0600 files", () => {
    const said = saveReport(new Engine().report({ kind: 'replay', format: 'test' }), dir);
    const json = /saved (\S+\.json)/.exec(said)![1]!;
    expect(statSync(json).mode & 0o777).toBe(0o600);
  });
});
