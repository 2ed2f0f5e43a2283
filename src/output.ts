// The one way out for what kleak prints: reports, captures and messages on stdout and stderr.
//
// Node writes to a pipe asynchronously: once the pipe's 64 KiB are full, the rest waits in Node's own queue until the
// reader takes more. A process.exit() at that moment threw the queue away (`kleak replay --json | jq` got 65,536 of
// 1,668,859 bytes, exit 0). So every exit goes through exitWhenWritten, which waits until both streams have handed
// their queues to the kernel. A reader that goes away (`| head`) is not an error of kleak's: the rest is dropped.
// See docs/safety.md.

/** Terminal text: control bytes in names that others choose (comms, file and cache names) shown as escapes. */
export function writeText(text: string): void {
  process.stdout.write(escapeControls(wrapText(text, textWidth())));
}

/**
 * The columns text reports are fitted to: the terminal's width (80 when it does not say), $COLUMNS when the output
 * is not a terminal and it is set; otherwise no limit (a report into a file or a pipe keeps whole lines).
 */
export function textWidth(stream: NodeJS.WriteStream = process.stdout): number {
  if (stream.isTTY) return stream.columns > 0 ? stream.columns : 80;
  const env = Number(process.env.COLUMNS);
  return Number.isInteger(env) && env >= 40 ? env : Infinity;
}

/** Stands for a space inside a command a person copies, until the text is written: wrapping never breaks there. */
const KEEP = '\u00a0';

/** A command to copy (sudo kleak live --bytes 4096): kept on one line when the text is wrapped. */
export function command(text: string): string {
  return text.replace(/ /g, KEEP);
}

/**
 * Lines longer than `width` broken at spaces, continued on the next line indented by two; never inside a command()
 * (a command longer than the width stays whole on its own line). Lines that fit are left as they are.
 */
export function wrapText(text: string, width: number): string {
  if (!text.includes(KEEP) && (width === Infinity || !text.split('\n').some((l) => l.length > width))) return text;
  return text
    .split('\n')
    .map((line) => {
      if (line.length <= width) return line;
      const indent = /^ */.exec(line)![0] + '  ';
      const words = line.trimStart().split(' ');
      const out: string[] = [];
      let cur = line.slice(0, line.length - line.trimStart().length);
      for (const w of words) {
        const sep = cur.trim() === '' ? '' : ' ';
        if (cur.trim() !== '' && cur.length + sep.length + w.length > width) {
          out.push(cur);
          cur = indent + w;
        } else cur += sep + w;
      }
      out.push(cur);
      return out.join('\n');
    })
    .join('\n')
    .replace(/\u00a0/g, ' ');
}

/** Exact bytes (JSON, folded stacks, binary profiles): machines read these; nothing is changed. */
export function writeData(data: string | Uint8Array): void {
  process.stdout.write(data);
}

/** A message for the person running kleak, made harmless like terminal text. */
export function say(message: string): void {
  process.stderr.write(escapeControls(wrapText(message, textWidth(process.stderr))));
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
