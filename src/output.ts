// The one way out for what kleak prints: reports, captures and messages on stdout and stderr.
//
// Node writes to a pipe asynchronously: once the pipe's 64 KiB are full, the rest waits in Node's own queue until the
// reader takes more. A process.exit() at that moment threw the queue away (`kleak replay --json | jq` got 65,536 of
// 1,668,859 bytes, exit 0). So every exit goes through exitWhenWritten, which waits until both streams have handed
// their queues to the kernel. A reader that goes away (`| head`) is not an error of kleak's: the rest is dropped.
// See docs/safety.md.

/** Terminal text: control bytes in names that others choose (comms, file and cache names) shown as escapes. */
export function writeText(text: string): void {
  process.stdout.write(escapeControls(text));
}

/** Exact bytes (JSON, folded stacks, binary profiles): machines read these; nothing is changed. */
export function writeData(data: string | Uint8Array): void {
  process.stdout.write(data);
}

/** A message for the person running kleak, made harmless like terminal text. */
export function say(message: string): void {
  process.stderr.write(escapeControls(message));
}

/**
 * Makes every control byte except newline visible: ESC, CR, BEL, backspace and the C1 range would otherwise let a
 * name retitle the terminal, write its clipboard (OSC 52), clear the screen or overwrite the line before it.
 */
export function escapeControls(text: string): string {
  return CONTROL_BUT_NEWLINE.test(text) ? text.replace(CONTROL_BUT_NEWLINE_G, escapeOne) : text;
}

/** A name as one visible line: newlines and tabs escaped too, so a name can never forge a line of a report. */
export function visible(name: string): string {
  return CONTROL.test(name) ? name.replace(CONTROL_G, escapeOne) : name;
}

const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
const CONTROL_G = /[\u0000-\u001f\u007f-\u009f]/g;
const CONTROL_BUT_NEWLINE = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/;
const CONTROL_BUT_NEWLINE_G = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/g;

function escapeOne(c: string): string {
  switch (c) {
    case '\n':
      return '\\n';
    case '\r':
      return '\\r';
    case '\t':
      return '\\t';
    case '\x1b':
      return '\\e';
    default:
      return `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`;
  }
}

let exiting = false;

/** Ends the process with `code` once everything written to stdout and stderr has reached the kernel. */
export function exitWhenWritten(code: number): void {
  if (exiting) return;
  exiting = true;
  let pending = 2;
  const done = () => {
    if (--pending === 0) process.exit(code);
  };
  for (const stream of [process.stdout, process.stderr]) {
    if (stream.destroyed || stream.writableEnded) done();
    // The callback of an empty write runs once every write queued before it has been handed on (or has failed).
    else stream.write('', () => done());
  }
}

// A reader that closes early (`kleak replay --json | head`) makes the next write fail with EPIPE: what it did not
// want to read is not lost data, and must not end in an internal error.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE' || err.code === 'ERR_STREAM_DESTROYED') return;
    throw err;
  });
}
