// Opening a replay input: a path or '-' (stdin); gzip is recognised by its magic bytes, a trace.dat file by its
// own, and read by running `trace-cmd report -i` (one subprocess; its text is the trace-cmd format).

import { closeSync, createReadStream, createWriteStream, openSync, readSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mkdtemp, open, stat } from 'node:fs/promises';
import { PassThrough, Readable } from 'node:stream';
import { InputError, cannotRead } from '../errors.js';
import { GunzipMembers, TOO_LARGE, gunzipWhole } from './gzip.js';
import { traceCmdReportStream } from './trace-dat.js';

export interface ReplayInput {
  stream: Readable;
  /** Why the input ended early (a damaged or cut gzip stream): what came before it was read and stands. */
  damaged?: () => string | undefined;
  /** Bytes of the file on disk (undefined for stdin): with bytesRead, the share read so far. */
  size: number | undefined;
  bytesRead: () => number;
  /** Set when the input was a trace.dat file: the format is then trace-cmd report text. */
  traceDat: boolean;
  gzip: boolean;
  /** Resolves when a helper subprocess (trace-cmd) has ended; rejects with its error. */
  done: Promise<void>;
  close: () => void;
}

const GZIP_MAGIC = [0x1f, 0x8b];
const TRACE_DAT_MAGIC = Buffer.from([0x17, 0x08, 0x44, ...Buffer.from('tracing')]);

/** The most a capture read whole may hold (uncompressed): watch recordings, reports and censuses are far smaller. */
export const CAPTURE_MAX = 256 << 20;

/** A file too large to be a capture read whole (it may still be a trace, which is streamed). */
export class CaptureTooLarge extends InputError {}

/**
 * A small capture read whole (a watch recording, a report for kleak diff), gunzipped when it is gzip; a cut or
 * damaged gzip gives what could be decompressed. Bounded: past CAPTURE_MAX bytes (a device that never ends, a gzip
 * bomb) it stops with CaptureTooLarge. One sentence when the file cannot be read.
 */
export function readCaptureText(path: string): string {
  let data: Buffer;
  try {
    data = readAtMost(path, CAPTURE_MAX + 1);
  } catch (err) {
    throw cannotRead(path, err);
  }
  const tooLarge = () => new CaptureTooLarge(`${path} holds more than ${CAPTURE_MAX >> 20} MiB: too large for a capture kleak reads whole.`);
  if (data.length > CAPTURE_MAX) throw tooLarge();
  if (data[0] !== GZIP_MAGIC[0] || data[1] !== GZIP_MAGIC[1]) return data.toString('utf8');
  const { data: text, damaged } = gunzipWhole(data, CAPTURE_MAX);
  if (damaged === TOO_LARGE) throw tooLarge();
  if (damaged && text.length === 0) throw new InputError(`${path} is a damaged gzip file: ${damaged}.`);
  return text.toString('utf8');
}

/** Up to `limit` bytes of a file, a device or a FIFO (which may never end). */
function readAtMost(path: string, limit: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const chunks: Buffer[] = [];
    let total = 0;
    while (total < limit) {
      const buf = Buffer.allocUnsafe(Math.min(1 << 20, limit - total));
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      chunks.push(buf.subarray(0, n));
      total += n;
    }
    return Buffer.concat(chunks);
  } finally {
    closeSync(fd);
  }
}

/** `chunk`: bytes per read (smaller for a paced replay, so pauses fall between small steps). */
export async function openReplayInput(path: string, chunk = 1 << 20): Promise<ReplayInput> {
  if (path === '-') return traceDatOrText(openStdin(), 'stdin');
  let size: number;
  try {
    const st = await stat(path);
    if (st.isDirectory()) throw new InputError(`${path} is a directory, not a trace file.`, 'Give the path of a trace file, or - for stdin.');
    size = st.size;
    // A FIFO (`kleak replay <(zcat f)`, a named pipe) or a device cannot be read at an offset: read it as a stream.
    if (!st.isFile()) return traceDatOrText(openStream(createReadStream(path)), path);
  } catch (err) {
    if (err instanceof InputError) throw err;
    throw cannotRead(path, err);
  }
  const head = Buffer.alloc(10);
  try {
    const fh = await open(path, 'r');
    await fh.read(head, 0, 10, 0);
    await fh.close();
  } catch (err) {
    throw cannotRead(path, err);
  }
  if (head.subarray(0, TRACE_DAT_MAGIC.length).equals(TRACE_DAT_MAGIC)) {
    return { ...(await traceCmdReportStream(path)), size, gzip: false, traceDat: true };
  }
  const gzip = head[0] === GZIP_MAGIC[0] && head[1] === GZIP_MAGIC[1];
  if (!gzip) return readAhead(path, size, chunk);
  const file = createReadStream(path, { highWaterMark: chunk });
  let bytes = 0;
  file.on('data', (c: Buffer | string) => (bytes += c.length));
  const { stream, damaged } = tolerantGunzip(file, chunk);
  file.on('error', (e) => stream.destroy(e));
  return traceDatOrText({ stream, damaged, size, bytesRead: () => bytes, traceDat: false, gzip, done: Promise.resolve(), close: () => file.destroy() }, path);
}

/**
 * gunzip that ends, rather than fails, where the stream is damaged or cut short (bad CRC, truncation, junk after
 * the data): the lines before the damage are a trace like any other, and the report says where it broke.
 */
function tolerantGunzip(input: Readable, chunk = 1 << 20): { stream: Readable; damaged: () => string | undefined } {
  const gunzip = new GunzipMembers(Math.min(chunk, 1 << 16));
  input.pipe(gunzip);
  return { stream: gunzip, damaged: () => gunzip.damaged() };
}

/**
 * A trace.dat that arrives gzipped or through stdin is recognised by its magic in the first bytes it yields:
 * trace-cmd needs a file it can seek, so it is spooled to a private temporary file (removed at the end) and read
 * through trace-cmd like any trace.dat. Anything else flows on untouched.
 */
async function traceDatOrText(input: ReplayInput, what: string): Promise<ReplayInput> {
  const first = await new Promise<Buffer | undefined>((resolve, reject) => {
    const onData = (c: Buffer) => {
      cleanup();
      input.stream.pause();
      resolve(c);
    };
    const onEnd = () => {
      cleanup();
      resolve(undefined);
    };
    const onError = (e: Error) => {
      cleanup();
      reject(e instanceof InputError ? e : new InputError(`cannot read ${what}: ${e.message}.`));
    };
    const cleanup = () => {
      input.stream.off('data', onData);
      input.stream.off('end', onEnd);
      input.stream.off('error', onError);
    };
    input.stream.on('data', onData);
    input.stream.once('end', onEnd);
    input.stream.once('error', onError);
  });
  const rest = new PassThrough({ highWaterMark: 1 << 20 });
  if (first === undefined) {
    rest.end();
    return { ...input, stream: rest };
  }
  if (first.length >= TRACE_DAT_MAGIC.length && first.subarray(0, TRACE_DAT_MAGIC.length).equals(TRACE_DAT_MAGIC)) {
    const spool = await spoolToUnlinkedFile(first, input.stream, what);
    // trace-cmd opens kleak's descriptor of the unlinked spool through /proc (its own path is gone).
    const dat = await traceCmdReportStream(`/proc/${process.pid}/fd/${spool.fd}`, what);
    const close = () => closeSync(spool.fd);
    return { ...dat, size: undefined, gzip: input.gzip, traceDat: true, done: dat.done.finally(close) };
  }
  rest.write(first);
  input.stream.pipe(rest);
  input.stream.resume();
  input.stream.once('error', (e) => rest.destroy(e));
  return { ...input, stream: rest };
}

/**
 * Copies a stream into a private temporary file that is unlinked as soon as it is open: trace-cmd reads it through
 * kleak's open descriptor (/proc/PID/fd/N), and no spool is left behind on any exit, a SIGKILL or a full disk included. A write that
 * fails (ENOSPC in TMPDIR) is one sentence that says how much was spooled and what to do.
 */
async function spoolToUnlinkedFile(first: Buffer, stream: Readable, what: string): Promise<{ fd: number }> {
  const dir = await mkdtemp(join(tmpdir(), 'kleak-dat-'));
  const file = join(dir, 'trace.dat');
  const fd = openSync(file, 'wx+', 0o600);
  rmSync(dir, { recursive: true, force: true });
  const out = createWriteStream('', { fd, autoClose: false });
  let written = 0;
  try {
    await new Promise<void>((resolve, reject) => {
      out.once('finish', () => resolve());
      out.once('error', reject);
      stream.once('error', (e) => reject(new InputError(`cannot read ${what}: ${e.message}.`)));
      stream.on('data', (c: Buffer) => (written += c.length));
      written += first.length;
      out.write(first);
      stream.pipe(out);
      stream.resume();
    });
  } catch (err) {
    closeSync(fd);
    if (err instanceof InputError) throw err;
    throw new InputError(
      `spooling the trace.dat from ${what} to ${tmpdir()} failed after ${written.toLocaleString('en-US')} bytes: ${(err as Error).message}; nothing was left there.`,
      'trace-cmd needs the whole file: set TMPDIR to a folder with room, or give the file\'s path instead of a pipe.',
    );
  }
  return { fd };
}

/**
 * A plain file as chunks of bytes, the next read always in flight while the current chunk is parsed: a
 * ReadStream issues its next read only after the 'data' handler returns, which left the parser idle a quarter of
 * the time on page-cached files (measured with --cpu-prof on a 1M-line report).
 */
async function readAhead(path: string, size: number, chunk: number): Promise<ReplayInput> {
  let fh: Awaited<ReturnType<typeof open>>;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    throw cannotRead(path, err);
  }
  let bytes = 0;
  let closed = false;
  const read = async (): Promise<Buffer | undefined> => {
    if (closed) return undefined;
    const buf = Buffer.allocUnsafe(chunk);
    const { bytesRead } = await fh.read(buf, 0, chunk, null);
    if (bytesRead === 0) return undefined;
    bytes += bytesRead;
    return buf.subarray(0, bytesRead);
  };
  async function* chunks(): AsyncGenerator<Buffer> {
    try {
      let next = read();
      for (;;) {
        const cur = await next;
        if (cur === undefined) return;
        next = read();
        yield cur;
      }
    } finally {
      closed = true;
      await fh.close().catch(() => undefined);
    }
  }
  const stream = Readable.from(chunks(), { objectMode: true, highWaterMark: 2 });
  return { stream, size, bytesRead: () => bytes, traceDat: false, gzip: false, done: Promise.resolve(), close: () => stream.destroy() };
}

function openStdin(): ReplayInput {
  return openStream(process.stdin);
}

function openStream(input: Readable): ReplayInput {
  // Sniff gzip on the first chunk; a stream cannot be re-read.
  const out = new PassThrough({ highWaterMark: 1 << 20 });
  let bytes = 0;
  let decided = false;
  let gunzip: GunzipMembers | undefined;
  input.on('data', (c: Buffer) => {
    bytes += c.length;
    if (!decided) {
      decided = true;
      if (c[0] === GZIP_MAGIC[0] && c[1] === GZIP_MAGIC[1]) {
        // Damaged or cut short: what came before stands (see tolerantGunzip).
        gunzip = new GunzipMembers();
        gunzip.pipe(out);
      }
    }
    const to = gunzip ?? out;
    if (!to.write(c)) {
      input.pause();
      to.once('drain', () => input.resume());
    }
  });
  input.on('end', () => (gunzip ?? out).end());
  input.on('error', (e) => out.destroy(e));
  return { stream: out, damaged: () => gunzip?.damaged(), size: undefined, bytesRead: () => bytes, traceDat: false, gzip: false, done: Promise.resolve(), close: () => input.pause() };
}
