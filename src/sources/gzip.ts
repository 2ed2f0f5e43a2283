// gzip read member by member, so that damage loses nothing before it (docs/safety.md, "Damaged input").
//
// Node's gunzip treats any bytes after a member as the start of another member: junk after intact data (a capture
// to which a shell appended an error message, a disk block of garbage) fails with "incorrect header check", and the
// output of the last chunk decompressed is dropped with the error: 141 outstanding objects read as 144, or a whole
// small file read as empty. Here the gzip framing (RFC 1952 header and trailer) is read by kleak and only the
// deflate data goes to zlib (inflateRaw), whose end is exact: what follows is a trailer kleak checks, the next
// member, zero padding (ignored), or junk, which is said with its byte offset after everything before it was given.

import { Transform, type TransformCallback } from 'node:stream';
import { constants, crc32, createInflateRaw, inflateRawSync, type InflateRaw } from 'node:zlib';

const FHCRC = 2;
const FEXTRA = 4;
const FNAME = 8;
const FCOMMENT = 16;
/** Compressed bytes given to zlib at a time: at most ~4 MiB of output each. */
const SLICE = 4096;
/**
 * A member whose compressed data is at most this long is kept until its end: zlib drops the output of the write
 * in which it meets damage, so on damage the longest prefix that inflates is found again (a small file with a bad
 * byte would otherwise read as empty). Larger members lose at most the output of one SLICE before the damage.
 */
const KEEP_MEMBER = 1 << 20;
/** A header longer than this (its file name or comment never ends) is not a header kleak will wait for. */
const MAX_HEADER = 1 << 16;

type Header = { length: number } | 'incomplete' | 'not gzip';

/** The length of the gzip member header at the start of `b` (RFC 1952 section 2.3). */
function parseHeader(b: Buffer): Header {
  if (b.length >= 1 && b[0] !== 0x1f) return 'not gzip';
  if (b.length >= 2 && b[1] !== 0x8b) return 'not gzip';
  if (b.length >= 3 && b[2] !== 8) return 'not gzip';
  if (b.length < 10) return 'incomplete';
  const flags = b[3]!;
  let at = 10;
  if (flags & FEXTRA) {
    if (b.length < at + 2) return 'incomplete';
    at += 2 + b.readUInt16LE(at);
  }
  for (const flag of [FNAME, FCOMMENT]) {
    if (!(flags & flag)) continue;
    const nul = b.indexOf(0, at);
    if (nul < 0) return b.length > MAX_HEADER ? 'not gzip' : 'incomplete';
    at = nul + 1;
  }
  if (flags & FHCRC) at += 2;
  return b.length < at ? 'incomplete' : { length: at };
}

function isZeros(b: Buffer): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

/** What was wrong, said for a person: `at` is the byte offset in the compressed input where the damage starts. */
function junkSentence(at: number): string {
  return `what follows the gzip data at byte ${at.toLocaleString('en-US')} is not gzip`;
}

/**
 * A stream of gzip members in, their decompressed bytes out. It never fails: damage (a cut, a bad CRC, junk after
 * the data) ends the output where the good data ends, and `damaged()` then says what and at which input byte.
 */
export class GunzipMembers extends Transform {
  private state: 'header' | 'body' | 'trailer' | 'stopped' = 'header';
  private pending: Buffer = Buffer.alloc(0);
  /** Input bytes fully taken (headers, deflate data, trailers) before `pending` and the current inflater's. */
  private offset = 0;
  private members = 0;
  private inflater: InflateRaw | undefined;
  private bodyStart = 0;
  /** The input chunks given to the current inflater that it may not have consumed yet. */
  private given: { at: number; chunk: Buffer }[] = [];
  private crc = 0;
  private size = 0;
  /** The current member's compressed data, while it is at most KEEP_MEMBER bytes. */
  private kept: Buffer[] | undefined = [];
  private keptLength = 0;
  private why: string | undefined;
  /** Every input byte received. */
  private total = 0;

  constructor(private readonly chunkSize = 1 << 16) {
    super({ readableHighWaterMark: 1 << 20 });
  }

  damaged(): string | undefined {
    return this.why;
  }

  private waiting: (() => void)[] = [];

  /** Resolves when the reader asks for more. */
  private drained(): Promise<void> {
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  override _read(size: number): void {
    const waiting = this.waiting;
    this.waiting = [];
    for (const w of waiting) w();
    super._read(size);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.feed(chunk).then(() => done(), done);
  }

  override _flush(done: TransformCallback): void {
    const end = async () => {
      if (this.state === 'body') await this.finishBody();
      if (this.state === 'header' && this.pending.length > 0 && !isZeros(this.pending)) {
        this.stop(this.members === 0 ? 'the gzip header is cut short' : junkSentence(this.offset));
      } else if (this.state === 'body' || (this.state === 'trailer' && this.pending.length < 8)) {
        this.stop(`the gzip data is cut short at byte ${this.total.toLocaleString('en-US')}`);
      }
    };
    end().then(() => done(), done);
  }

  private stop(why: string): void {
    this.why ??= why;
    this.state = 'stopped';
    this.inflater?.destroy();
    this.inflater = undefined;
    this.given = [];
    this.pending = Buffer.alloc(0);
  }

  private async feed(input: Buffer): Promise<void> {
    this.total += input.length;
    let buf = input;
    while (buf.length > 0) {
      switch (this.state) {
        case 'stopped':
          return;
        case 'header': {
          this.pending = this.pending.length ? Buffer.concat([this.pending, buf]) : buf;
          buf = Buffer.alloc(0);
          if (this.members > 0 && isZeros(this.pending)) {
            // Zero padding after the last member (tape and block devices add it) is not damage.
            this.offset += this.pending.length;
            this.pending = Buffer.alloc(0);
            return;
          }
          const header = parseHeader(this.pending);
          if (header === 'incomplete') return;
          if (header === 'not gzip') {
            this.stop(this.members === 0 ? 'it does not start with a gzip header' : junkSentence(this.offset));
            return;
          }
          this.offset += header.length;
          buf = this.pending.subarray(header.length);
          this.pending = Buffer.alloc(0);
          this.startBody();
          break;
        }
        case 'body': {
          // In slices, waiting while the reader is behind: deflate expands up to ~1,000 times, so a 1 MiB chunk
          // of a gzip bomb would otherwise be a gigabyte in memory at once.
          const slice = buf.subarray(0, SLICE);
          const rest = await this.inflate(slice);
          buf = rest !== undefined ? Buffer.concat([rest, buf.subarray(SLICE)]) : buf.subarray(SLICE);
          if (this.readableLength >= this.readableHighWaterMark) await this.drained();
          break;
        }
        case 'trailer': {
          this.pending = this.pending.length ? Buffer.concat([this.pending, buf]) : buf;
          buf = Buffer.alloc(0);
          if (this.pending.length < 8) return;
          const crc = this.pending.readUInt32LE(0);
          const size = this.pending.readUInt32LE(4);
          if (crc !== this.crc >>> 0 || size !== this.size >>> 0) {
            this.stop(`the gzip member that ends at byte ${(this.offset + 8).toLocaleString('en-US')} fails its check (${crc !== this.crc >>> 0 ? 'CRC' : 'length'})`);
            return;
          }
          this.offset += 8;
          this.members++;
          buf = this.pending.subarray(8);
          this.pending = Buffer.alloc(0);
          this.state = 'header';
          break;
        }
      }
    }
  }

  private startBody(): void {
    this.state = 'body';
    this.crc = 0;
    this.size = 0;
    this.bodyStart = this.offset;
    this.given = [];
    this.kept = [];
    this.keptLength = 0;
    const inflater = createInflateRaw({ chunkSize: this.chunkSize });
    inflater.on('data', (out: Buffer) => {
      this.crc = crc32(out, this.crc);
      this.size = (this.size + out.length) >>> 0;
      this.push(out);
    });
    // An error is seen where it matters: in inflate() and finishBody().
    inflater.on('error', () => undefined);
    this.inflater = inflater;
  }

  /**
   * Gives `buf` to the inflater. Resolves when it has taken it all (undefined) or when the deflate data ended
   * inside it: then with the bytes after the deflate data (the trailer and what follows).
   */
  private inflate(buf: Buffer): Promise<Buffer | undefined> {
    const inflater = this.inflater!;
    const at = this.given.length ? this.given.at(-1)!.at + this.given.at(-1)!.chunk.length : this.bodyStart;
    this.given.push({ at, chunk: buf });
    if (this.kept) {
      this.keptLength += buf.length;
      if (this.keptLength <= KEEP_MEMBER) this.kept.push(buf);
      else this.kept = undefined;
    }
    return new Promise((resolve) => {
      let settled = false;
      const settle = (rest: Buffer | undefined) => {
        if (settled) return;
        settled = true;
        inflater.off('end', onEnd);
        inflater.off('error', onError);
        resolve(rest);
      };
      const onEnd = () => settle(this.endBody());
      const onError = (e: Error) => {
        const where = this.recover() ?? at;
        this.stop(`${e.message} in the gzip data at byte ${where.toLocaleString('en-US')}`);
        settle(undefined);
      };
      inflater.once('end', onEnd);
      inflater.once('error', onError);
      inflater.write(buf, () => {
        // Written and processed. The end of the deflate data, if it came, is seen by 'end' just after this.
        setImmediate(() => {
          if (settled) return;
          if (inflater.readableEnded) return settle(this.endBody());
          this.dropConsumed();
          settle(undefined);
        });
      });
    });
  }

  /**
   * Damage met inside a kept member: push what the longest inflatable prefix gives beyond what was pushed, and
   * return the input byte where inflating fails.
   */
  private recover(): number | undefined {
    if (!this.kept) return undefined;
    const data = Buffer.concat(this.kept);
    const inflate = (n: number): Buffer | undefined => {
      try {
        return inflateRawSync(data.subarray(0, n), { finishFlush: constants.Z_SYNC_FLUSH });
      } catch {
        return undefined;
      }
    };
    let good = 0;
    let bad = data.length;
    let best: Buffer | undefined;
    while (bad - good > 1) {
      const mid = (good + bad) >>> 1;
      const out = inflate(mid);
      if (out) {
        good = mid;
        best = out;
      } else bad = mid;
    }
    if (best && best.length > this.size) this.push(best.subarray(this.size));
    return this.bodyStart + bad;
  }

  /** The deflate data ended: the input bytes the inflater did not consume go on to the trailer. */
  private endBody(): Buffer {
    const consumed = this.inflater!.bytesWritten;
    const end = this.bodyStart + consumed;
    const rest = Buffer.concat(this.given.filter((g) => g.at + g.chunk.length > end).map((g) => g.chunk.subarray(Math.max(0, end - g.at))));
    this.offset = end;
    this.inflater = undefined;
    this.given = [];
    this.state = 'trailer';
    return rest;
  }

  private dropConsumed(): void {
    const end = this.bodyStart + this.inflater!.bytesWritten;
    while (this.given.length > 1 && this.given[0]!.at + this.given[0]!.chunk.length <= end) this.given.shift();
  }

  /** The input ended inside the deflate data: flush what the inflater holds (a cut file gives all before the cut). */
  private finishBody(): Promise<void> {
    const inflater = this.inflater!;
    return new Promise((resolve) => {
      inflater.once('end', () => {
        if (this.state === 'body' && this.inflater === inflater) {
          const rest = this.endBody();
          this.pending = rest;
        }
        resolve();
      });
      inflater.once('error', () => resolve());
      inflater.flush(constants.Z_SYNC_FLUSH, () => {
        if (this.state === 'body') resolve();
      });
    });
  }
}

/** gunzipWhole's `damaged` when the output would pass its limit. */
export const TOO_LARGE = 'it inflates past the limit';

/**
 * A whole gzip buffer decompressed member by member (a capture read at once): the text before any damage, and what
 * the damage is.
 */
export function gunzipWhole(data: Buffer, limit = Infinity): { data: Buffer; damaged: string | undefined } {
  const out: Buffer[] = [];
  let total = 0;
  let at = 0;
  let members = 0;
  const done = (damaged: string | undefined) => ({ data: Buffer.concat(out), damaged });
  while (at < data.length) {
    const rest = data.subarray(at);
    if (members > 0 && isZeros(rest)) break;
    const header = parseHeader(rest);
    if (header === 'incomplete') return done(members === 0 ? 'the gzip header is cut short' : junkSentence(at));
    if (header === 'not gzip') return done(members === 0 ? 'it does not start with a gzip header' : junkSentence(at));
    at += header.length;
    let result: { buffer: Buffer; engine: { bytesWritten: number } };
    try {
      // info: the engine's bytesWritten is how much deflate data it consumed, so the trailer is found exactly.
      const max = limit - total;
      result = inflateRawSync(data.subarray(at), { info: true, finishFlush: constants.Z_SYNC_FLUSH, ...(Number.isFinite(max) ? { maxOutputLength: max + 1 } : {}) }) as unknown as typeof result;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') return done(TOO_LARGE);
      return done(`${(err as Error).message} in the gzip data after byte ${at.toLocaleString('en-US')}`);
    }
    out.push(result.buffer);
    total += result.buffer.length;
    if (total > limit) return done(TOO_LARGE);
    at += result.engine.bytesWritten;
    if (data.length < at + 8) return done(`the gzip data is cut short at byte ${data.length.toLocaleString('en-US')}`);
    if (data.readUInt32LE(at) !== crc32(result.buffer) >>> 0 || data.readUInt32LE(at + 4) !== result.buffer.length >>> 0) {
      return done(`the gzip member that ends at byte ${(at + 8).toLocaleString('en-US')} fails its check`);
    }
    at += 8;
    members++;
  }
  return done(undefined);
}
