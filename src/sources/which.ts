// Whether a program is on PATH, without running it (trace-cmd --version exits 255, for one).
import { accessSync, constants } from 'node:fs';
import { delimiter } from 'node:path';

export function onPath(tool: string): boolean {
  return (process.env.PATH ?? '').split(delimiter).some((d) => {
    try {
      accessSync(`${d}/${tool}`, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}
