// Reading bpftrace's version, and what kleak decides from it (docs/bpftrace-versions.md).
import { describe, expect, it } from 'vitest';
import { mapKeysVariable, mapMemoryNote, parseBpftraceVersion } from '../../src/sources/bpftrace-version.js';

describe('bpftrace versions', () => {
  it('reads what bpftrace --version prints, from bookworm\'s 0.17 to trixie\'s 0.23', () => {
    expect(parseBpftraceVersion('bpftrace v0.17.0\n')).toEqual({ major: 0, minor: 17, patch: 0, text: 'v0.17.0' });
    expect(parseBpftraceVersion('bpftrace v0.23.2')).toMatchObject({ minor: 23, patch: 2, text: 'v0.23.2' });
    expect(parseBpftraceVersion('bpftrace v0.21.0-rc1')?.text).toBe('v0.21.0-rc1');
    expect(parseBpftraceVersion('bpftrace 0.20.2')?.minor).toBe(20);
    expect(parseBpftraceVersion('command not found')).toBeUndefined();
  });

  it('sizes maps with the variable the version reads: BPFTRACE_MAP_KEYS_MAX before 0.20, BPFTRACE_MAX_MAP_KEYS from 0.20', () => {
    expect(mapKeysVariable(parseBpftraceVersion('bpftrace v0.17.0'))).toBe('BPFTRACE_MAP_KEYS_MAX');
    expect(mapKeysVariable(parseBpftraceVersion('bpftrace v0.19.1'))).toBe('BPFTRACE_MAP_KEYS_MAX');
    expect(mapKeysVariable(parseBpftraceVersion('bpftrace v0.20.0'))).toBe('BPFTRACE_MAX_MAP_KEYS');
    expect(mapKeysVariable(parseBpftraceVersion('bpftrace v0.23.2'))).toBe('BPFTRACE_MAX_MAP_KEYS');
    expect(mapKeysVariable(parseBpftraceVersion('bpftrace v1.0.0'))).toBe('BPFTRACE_MAX_MAP_KEYS');
    // Unknown: the old name, which every version reads.
    expect(mapKeysVariable(undefined)).toBe('BPFTRACE_MAP_KEYS_MAX');
  });

  it('words the maps notice by the version that runs', () => {
    expect(mapMemoryNote(parseBpftraceVersion('bpftrace v0.23.2'), 1000)).toMatch(/^bpftrace v0\.23\.2 sizes its maps to --max-pointers 1,000/);
    expect(mapMemoryNote(undefined, 5)).toMatch(/^this bpftrace sizes/);
  });
});
