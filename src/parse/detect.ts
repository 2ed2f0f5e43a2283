// Picks the format from the first lines (or takes --format), then hands every line, the buffered head first,
// to that format's parser.

import type { FormatName, LineParser, ParseSink, TraceFormat } from '../event.js';
import { InputError } from '../errors.js';
import { acceptedFormatsSentence, detectFormat } from './formats.js';

/** Non-empty lines looked at before deciding. */
const HEAD_LINES = 40;

export class DetectingParser implements LineParser {
  private head: { text: string; lineNo: number }[] = [];
  private nonEmpty = 0;
  private parser: LineParser | undefined;
  format: TraceFormat | undefined;

  constructor(
    private readonly sink: ParseSink,
    private readonly what: string,
    forced?: TraceFormat,
    private readonly onFormat?: (name: FormatName) => void,
  ) {
    if (forced) this.use(forced);
  }

  line(text: string, lineNo: number): void {
    if (this.parser) return this.parser.line(text, lineNo);
    this.head.push({ text, lineNo });
    if (text.trim() !== '' && ++this.nonEmpty >= HEAD_LINES) this.decide();
  }

  bytes(buf: Buffer, start: number, end: number, lineNo: number): void {
    const p = this.parser;
    if (p?.bytes) p.bytes(buf, start, end, lineNo);
    else this.line(buf.toString('latin1', start, end), lineNo);
  }

  end(): void {
    if (!this.parser) this.decide();
    this.parser!.end();
  }

  private decide(): void {
    if (this.nonEmpty === 0) throw new InputError(`${this.what} is empty: there are no trace lines in it.`);
    const f = detectFormat(this.head.map((h) => h.text));
    if (!f) {
      throw new InputError(
        `${this.what} is in no format kleak knows; kleak reads ${acceptedFormatsSentence()}.`,
        'If it is one of these, name it with --format.',
      );
    }
    this.use(f);
    for (const h of this.head) this.parser!.line(h.text, h.lineNo);
    this.head = [];
  }

  private use(f: TraceFormat): void {
    this.format = f;
    this.parser = f.createParser(this.sink);
    this.onFormat?.(f.name);
  }
}
