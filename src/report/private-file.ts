// Files kleak writes hold raw kernel heap addresses (kleak turns hash-ptr off, and the kernel backend reads real
// pointers): they are created readable by their owner only (0600), never through a symlink (a link planted in a
// shared directory would make root overwrite its target), and never over an existing file unless asked (--force).

import { constants, lstatSync, openSync, unlinkSync } from 'node:fs';
import { InputError } from '../errors.js';

/**
 * Opens a new file for writing, 0600 (or `mode`, for files that hold no address), refusing symlinks and (without
 * force) existing files; returns its fd.
 */
export function createPrivateFile(path: string, force = false, mode = 0o600): number {
  const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
  if (force) {
    let st;
    try {
      st = lstatSync(path);
    } catch {
      st = undefined;
    }
    if (st?.isSymbolicLink()) throw new InputError(`${path} is a symbolic link; kleak does not write through links.`, 'Give a path to a regular file.');
    if (st?.isFile()) unlinkSync(path);
  }
  try {
    return openSync(path, flags, mode);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') throw new InputError(`${path} exists; kleak does not overwrite it.`, 'Choose another name, or add --force to replace it.');
    if (code === 'ELOOP') throw new InputError(`${path} is a symbolic link; kleak does not write through links.`, 'Give a path to a regular file.');
    throw new InputError(`cannot write ${path}: ${(err as Error).message}.`);
  }
}
