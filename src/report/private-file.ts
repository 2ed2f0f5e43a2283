// Files kleak writes hold raw kernel heap addresses (kleak turns hash-ptr off, and the kernel backend reads real
// pointers): they are created readable by their owner only (0600), never through a symlink (a link planted in a
// shared directory would make root overwrite its target), and never over an existing file unless asked (--force).

import { closeSync, constants, lstatSync, openSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { EnvironmentError, InputError } from '../errors.js';

/**
 * Opens a new file for writing, 0600 (or `mode`, for files that hold no address), refusing symlinks and (without
 * force) existing files; returns its fd.
 */
export function createPrivateFile(path: string, force = false, mode = 0o600): number {
  const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
  if (force) {
    const st = lstatOrNone(path);
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

/** What is at `path` (a link is not followed), or undefined when nothing is. */
function lstatOrNone(path: string) {
  try {
    return lstatSync(path);
  } catch {
    return undefined;
  }
}

/**
 * Refuses, before any work is done, an output kleak would refuse at the end: an existing file (without force), a
 * link, a folder that does not exist. A live run otherwise traced for its whole duration and then lost its report.
 */
export function checkNewFile(path: string, force = false): void {
  const st = lstatOrNone(path);
  if (st?.isSymbolicLink()) throw new InputError(`${path} is a symbolic link; kleak does not write through links.`, 'Give a path to a regular file.');
  if (st && !force) throw new InputError(`${path} exists; kleak does not overwrite it.`, 'Choose another name, or add --force to replace it.');
  if (st && !st.isFile()) throw new InputError(`${path} is not a regular file; kleak writes only new regular files.`);
  let dir;
  try {
    dir = statSync(dirname(path));
  } catch {
    dir = undefined;
  }
  if (!dir?.isDirectory()) throw new InputError(`cannot write ${path}: the folder ${dirname(path)} does not exist.`);
}

/** Writes all of `data` to the open file, looping over short writes; on failure says how much had been written. */
/** A write that failed part way: `written` bytes of the data reached the file. */
export class PartialWriteError extends EnvironmentError {
  constructor(
    message: string,
    readonly written: number,
  ) {
    super(message);
  }
}

export function writeAll(fd: number, data: Uint8Array, path: string): void {
  let done = 0;
  while (done < data.length) {
    try {
      done += writeSync(fd, data, done, data.length - done);
    } catch (err) {
      throw new PartialWriteError(`writing ${path} failed after ${done} of ${data.length} bytes: ${reason(err)}`, done);
    }
  }
}

/**
 * A new private file holding exactly `data`, or none at all: a cut file (a flame graph without its end, a profile
 * gzip cannot read) is worse than none, so a failed write removes what it wrote and says so.
 */
export function writeNewFile(path: string, data: string | Uint8Array, force: boolean): void {
  const bytes = typeof data === 'string' ? Buffer.from(data) : data;
  const fd = createPrivateFile(path, force);
  try {
    writeAll(fd, bytes, path);
    closeSync(fd);
  } catch (err) {
    try {
      closeSync(fd);
    } catch {
      // Already closed, or closing failed too: removing the file is what matters.
    }
    unlinkSync(path);
    throw err instanceof EnvironmentError ? new EnvironmentError(`${err.message}; the incomplete file was removed.`) : err;
  }
}

/** An errno error as words: "no space left on device (ENOSPC)". */
export function reason(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  const m = /^[A-Z]+: ([^,]+)/.exec(e.message ?? '');
  return m && e.code ? `${m[1]} (${e.code})` : (e.message ?? String(err));
}
