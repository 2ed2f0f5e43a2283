// Files shipped with kleak (bpftrace programs, recordings), found from the package root whether kleak runs from
// dist/ (built) or src/ (tests).
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function findRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('kleak: cannot find its package root');
    dir = up;
  }
  return dir;
}

export const PACKAGE_ROOT = findRoot();
export const packagePath = (...parts: string[]) => join(PACKAGE_ROOT, ...parts);
