// What the machine running the tests has: tests that need more skip with the reason, never pass silently.
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

export const isRoot = process.getuid?.() === 0;
