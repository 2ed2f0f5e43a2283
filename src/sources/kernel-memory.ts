// Reading kernel objects' bytes through bpftrace (a BEGIN probe with buf(kptr(...))): addresses arrive as
// positional parameters, never in the program text. A read that fails yields zeros rather than an error (docs/formats.md),
// so an all-zero object is reported as "unreadable or zero-filled", never as a failure of kleak.
import { execa } from 'execa';
import { EnvironmentError, InputError } from '../errors.js';
import { preflightBpftrace } from './bpftrace.js';

const CHUNK = 64; // bpftrace 0.17 buf() is limited by BPFTRACE_STRLEN (64 by default)
export const MAX_OBJECTS = 16;
export const MAX_LENGTH = 256;

/** %r output: printable bytes as themselves, the rest as \xNN. */
export function unescapeBuf(s: string): Buffer {
  const out: number[] = [];
  for (let i = 0; i < s.length; i++) {
    if (s[i] === '\\' && s[i + 1] === 'x' && /^[0-9a-fA-F]{2}$/.test(s.slice(i + 2, i + 4))) {
      out.push(parseInt(s.slice(i + 2, i + 4), 16));
      i += 3;
    } else if (s[i] === '\\' && s[i + 1] === '\\') {
      out.push(0x5c);
      i += 1;
    } else out.push(s.charCodeAt(i) & 0xff);
  }
  return Buffer.from(out);
}

export function inspectProgram(count: number, length: number): string {
  const lines: string[] = [];
  for (let i = 0; i < count; i++) {
    for (let off = 0; off < length; off += CHUNK) {
      lines.push(`  printf("C ${i} ${off} %r\\n", buf(kptr((uint8 *)($${i + 1} + ${off})), ${CHUNK}));`);
    }
  }
  return `BEGIN\n{\n${lines.join('\n')}\n  exit();\n}\n`;
}

/** A pointer ("ffff888102654000" or "0x…") as the signed 64-bit decimal bpftrace's positional parameters take. */
export function signedDecimal(ptr: string): string {
  const p = ptr.replace(/^0x/, '').toLowerCase();
  if (!/^[0-9a-f]{1,16}$/.test(p)) throw new InputError(`"${ptr}" is not a kernel address (hex, like ffff888102654000).`);
  const v = BigInt(`0x${p}`);
  return (v >= 1n << 63n ? v - (1n << 64n) : v).toString();
}

export async function readKernelObjects(ptrs: readonly string[], length: number): Promise<Buffer[]> {
  await preflightBpftrace();
  const len = Math.min(MAX_LENGTH, Math.max(CHUNK, Math.ceil(length / CHUNK) * CHUNK));
  const params = ptrs.map(signedDecimal);
  const r = await execa('bpftrace', ['-e', inspectProgram(ptrs.length, len), '--', ...params], { reject: false, stdin: 'ignore' });
  const out = ptrs.map(() => Buffer.alloc(len));
  let got = 0;
  for (const line of String(r.stdout).split('\n')) {
    const m = /^C (\d+) (\d+) (.*)$/.exec(line);
    if (!m) continue;
    unescapeBuf(m[3]!).copy(out[Number(m[1])]!, Number(m[2]));
    got++;
  }
  if (got === 0) {
    const said = String(r.stderr).split('\n').filter((l) => l && !/RLIMIT_MEMLOCK/.test(l)).pop();
    throw new EnvironmentError(`bpftrace could not read kernel memory: ${said ?? `exit ${r.exitCode}`}.`);
  }
  return out;
}
