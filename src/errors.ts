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
