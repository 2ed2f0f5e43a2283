// Runs the built kleak binary (npm test builds it first).
import { execa, type Result } from 'execa';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const CLI = `${ROOT}dist/src/cli.js`;
export const rec = (name: string) => `${ROOT}recordings/${name}`;

export async function kleak(args: string[], opts: { input?: string | Buffer; env?: Record<string, string> } = {}): Promise<Result> {
  return execa(process.execPath, [CLI, ...args], { reject: false, cwd: ROOT, ...(opts.input !== undefined ? { input: opts.input } : { stdin: 'ignore' }), env: opts.env ?? {} });
}
