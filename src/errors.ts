// Errors that reach the user as one sentence plus what to do. Anything else is a bug and shows its stack with --debug.

export class KleakError extends Error {
  constructor(
    message: string,
    readonly hint: string | undefined,
    readonly exitCode: 1 | 2,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** Bad usage or unreadable input: exit 1. */
export class InputError extends KleakError {
  constructor(message: string, hint?: string) {
    super(message, hint, 1);
  }
}

/** The host lacks something kleak needs (root, a tool, a tracepoint): exit 2. */
export class EnvironmentError extends KleakError {
  constructor(message: string, hint?: string) {
    super(message, hint, 2);
  }
}

/**
 * "cannot read PATH: why." for a file the user named. Node decodes arguments as UTF-8, so a name that is not valid
 * UTF-8 arrives with U+FFFD in it and names no file: that is said as what it is, not as "no such file".
 */
export function cannotRead(path: string, err: unknown): InputError {
  const e = err as NodeJS.ErrnoException;
  if (e.code === 'ENOENT' && path.includes('\uFFFD')) {
    return new InputError(
      `cannot read ${path}: its name is not valid UTF-8 (the bytes shown as \uFFFD), and kleak can only open files by a UTF-8 name.`,
      'Rename it (mv -- FILE new-name), or give it on stdin: kleak replay - < FILE.',
    );
  }
  return new InputError(`cannot read ${path}: ${e.code === 'ENOENT' ? 'no such file' : e.code === 'EISDIR' ? 'it is a directory' : e.message}.`);
}
