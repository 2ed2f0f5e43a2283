// replay --kallsyms FILE names the raw hex call sites and frames of old kernels' traces. The trace is a real
// recording (keys29-hashed-stacks.pipe.gz) with every call site and frame turned into its address on this running
// kernel; the symbols are this kernel's /proc/kallsyms, written out as a System.map would be. Named again, it must
// give the recording's own answer.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import type { JsonReport } from '../../src/report/json.js';
import { kleak, rec } from '../helpers/cli.js';

const kallsyms = readFileSync('/proc/kallsyms', 'latin1');
const addressed = /^[0-9a-f]*[1-9a-f][0-9a-f]* [tT] /m.test(kallsyms);

describe.skipIf(!addressed)(`replay --kallsyms${addressed ? '' : ' (skipped: /proc/kallsyms shows zero addresses to this user; root sees them)'}`, () => {
  const dir = mkdtempSync(`${tmpdir()}/kleak-kallsyms-`);
  const addr = new Map<string, bigint>();
  const map: string[] = [];
  for (const line of kallsyms.split('\n')) {
    const m = /^([0-9a-f]+) ([tT]) (\S+)$/.exec(line); // the kernel's own text: a System.map has no modules
    if (!m) continue;
    map.push(line);
    if (!addr.has(m[3]!)) addr.set(m[3]!, BigInt(`0x${m[1]}`));
  }
  const hexOf = (name: string, off: string | undefined) => {
    const a = addr.get(name);
    return a === undefined ? undefined : (a + BigInt(off ?? '0x0')).toString(16);
  };
  const original = gunzipSync(readFileSync(rec('keys29-hashed-stacks.pipe.gz'))).toString('latin1');
  let converted = 0;
  const hexTrace = original
    .replace(/call_site=(\w+)(?:\+(0x[0-9a-f]+)\/0x[0-9a-f]+)?/g, (all, name: string, off: string | undefined) => {
      const h = hexOf(name, off);
      if (h === undefined) return all;
      converted++;
      return `call_site=${h}`;
    })
    .replace(/^ => (\w+)(?:\+(0x[0-9a-f]+)\/0x[0-9a-f]+)?$/gm, (all, name: string, off: string | undefined) => {
      const h = hexOf(name, off);
      return h === undefined ? all : ` => ${h}`;
    });
  writeFileSync(`${dir}/old.pipe`, hexTrace);
  writeFileSync(`${dir}/System.map`, map.join('\n') + '\n');

  it('the hex trace alone names no function; with --kallsyms it gives the recording\'s answer, stacks named too', async () => {
    expect(converted).toBeGreaterThan(1000);
    const bare = JSON.parse((await kleak(['replay', `${dir}/old.pipe`, '--bytes', '4096', '--json'])).stdout) as JsonReport;
    expect(bare.sites.find((s) => s.function === 'user_preparse')).toBeUndefined();
    expect(bare.sites[0]?.function).toMatch(/^ffffffff[0-9a-f]{8}$/);
    const r = await kleak(['replay', `${dir}/old.pipe`, '--bytes', '4096', '--kallsyms', `${dir}/System.map`, '--json']);
    expect(r.exitCode, r.stderr).toBe(0);
    const named = JSON.parse(r.stdout) as JsonReport;
    const site = named.sites.find((s) => s.function === 'user_preparse')!;
    expect(site.outstanding).toBe(29);
    expect(site.callSite).toMatch(/^user_preparse\+0x[0-9a-f]+$/);
    expect(site.stacks[0]!.frames).toContain('__key_create_or_update');
  });

  it('a symbol file with no addresses, or none at all, is one sentence, exit 1', async () => {
    writeFileSync(`${dir}/zeros`, '0000000000000000 T _stext\n0000000000000000 t user_preparse\n');
    const z = await kleak(['replay', `${dir}/old.pipe`, '--kallsyms', `${dir}/zeros`]);
    expect(z.exitCode).toBe(1);
    expect(z.stderr).toMatch(/--kallsyms .*zeros holds no text symbols with addresses/);
    const missing = await kleak(['replay', `${dir}/old.pipe`, '--kallsyms', `${dir}/nope`]);
    expect(missing.exitCode).toBe(1);
    expect(missing.stderr).toMatch(/cannot read --kallsyms .*nope/);
  });
});
