// Picks the format from the first lines (or takes --format), then hands every line, the buffered head first,
// to that format's parser.

import type { FormatName, LineParser, ParseSink, ParserOptions, TraceFormat } from '../event.js';
import { InputError } from '../errors.js';
import { acceptedFormatsSentence, detectFormat } from './formats.js';

/** Non-empty lines looked at before deciding. */
const HEAD_LINES = 40;
/** Bytes of head kept at most: a line cut at MAX_LINE is long, 40 of them are not kept whole. */
const HEAD_BYTES = 1 << 20;

export class DetectingParser implements LineParser {
  private head: { text: string; lineNo: number }[] = [];
  private headBytes = 0;
  private nonEmpty = 0;
  private parser: LineParser | undefined;
  format: TraceFormat | undefined;

  constructor(
    private readonly sink: ParseSink,
    private readonly what: string,
    forced?: TraceFormat,
    private readonly onFormat?: (name: FormatName) => void,
    private readonly parserOptions: ParserOptions = {},
  ) {
    if (forced) this.use(forced);
  }

  line(text: string, lineNo: number): void {
    if (this.parser) return this.parser.line(text, lineNo);
    // Blank lines say nothing of the format and no parser counts them: not kept (20 MiB of them cost 1.36 GB).
    if (text.trim() === '') return;
    this.head.push({ text: this.headBytes + text.length > HEAD_BYTES ? text.slice(0, 4096) : text, lineNo });
    this.headBytes += Math.min(text.length, 4096);
    if (++this.nonEmpty >= HEAD_LINES || this.headBytes > HEAD_BYTES) this.decide();
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
    this.parser = f.createParser(this.sink, this.parserOptions);
    this.onFormat?.(f.name);
  }
}
