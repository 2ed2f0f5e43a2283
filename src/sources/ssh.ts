// Remote hosts (--ssh): the tracer and the /proc reads run on a host that has ssh and a POSIX shell but no Node; their
// output streams back and is paired here. The remote side is a fixed script (no user text in it): what it writes
// into its tracefs instance arrives on its stdin as data, and the same stdin is how it knows kleak is still there.
// Its end (kleak stopped, killed, or the connection dropped) makes the script switch its events off and remove the
// instance, so nothing stays attached on the remote host.

import { execa, type ResultPromise } from 'execa';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname } from 'node:path';
import type { ParseSink } from '../event.js';
import { EnvironmentError, InputError } from '../errors.js';
import { FtraceTextParser } from '../parse/ftrace-text.js';
import { forEachLineSplit2 } from './lines.js';
import type { LiveEnd, LiveSource } from './live.js';
import { shellQuote } from './live.js';
import type { SshTarget } from './ssh-target.js';
import { instanceSetup, type TracefsOptions } from './tracefs.js';

export type { SshTarget } from './ssh-target.js';

// ssh runs in a process group of its own (detached): a Ctrl-C at the terminal reaches kleak, which then closes
// ssh's stdin so the remote side drains and cleans up, instead of killing ssh mid-stream.

/** ssh's argv for running `script` on the target: no terminal, no prompts, a dead connection noticed within ~15 s. */
function sshArgv(t: SshTarget, script: string): string[] {
  // The script contains no single quote, so quoting it whole for the remote login shell is exact.
  if (script.includes("'")) throw new Error('remote script must not contain a single quote');
  return ['-T', '-o', 'BatchMode=yes', '-o', 'ServerAliveInterval=5', '-o', 'ServerAliveCountMax=3', ...(t.config !== undefined ? ['-F', t.config] : []), '--', t.destination, `exec sh -c '${script}'`];
}

/** The last thing ssh or the remote script said on stderr, as the reason a run failed. */
function lastWords(stderr: string): string {
  const lines = stderr.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !/^Warning: Permanently added/.test(l));
  const own = lines.filter((l) => l.startsWith('kleak-remote: ')).pop();
  return (own?.slice('kleak-remote: '.length) ?? lines.pop() ?? 'no message').replace(/\.$/, '');
}

const TAB = '\t';

/**
 * The tracefs backend as a shell script. stdin: lines "FILE<TAB>VALUE" to write into the instance, then "go"; then
 * nothing until EOF, which ends the run. stdout: "kleak-remote-ready", then the instance's trace_pipe.
 */
const TRACEFS_SCRIPT = `
t=$(printf "\\t")
T=/sys/kernel/tracing
[ -d $T/instances ] || mount -t tracefs nodev $T 2>/dev/null
[ -d $T/instances ] || T=/sys/kernel/debug/tracing
if [ ! -d $T/instances ]; then echo "kleak-remote: this host has no tracefs (mount -t tracefs nodev /sys/kernel/tracing)" >&2; exit 3; fi
I=$T/instances/kleak-ssh-$$
if ! mkdir $I 2>/dev/null; then echo "kleak-remote: cannot create a tracefs instance on this host: kleak --ssh needs root there (ssh as root)" >&2; exit 3; fi
R=
E=
cleanup() {
  trap - EXIT HUP INT TERM PIPE
  echo 0 > $I/tracing_on 2>/dev/null
  for e in $E; do echo 0 > $I/events/$e/enable 2>/dev/null; done
  if [ -n "$R" ]; then kill $R 2>/dev/null; wait $R 2>/dev/null; fi
  n=0
  until rmdir $I 2>/dev/null || [ ! -d $I ] || [ $n -ge 50 ]; do sleep 0.1; n=$((n + 1)); done
}
trap cleanup EXIT
trap "exit 0" HUP INT TERM PIPE
echo 0 > $I/tracing_on
while IFS= read -r l; do
  [ "$l" = go ] && break
  f=\${l%%"$t"*}
  v=\${l#*"$t"}
  case $f in ""|/*|*..*) echo "kleak-remote: refused to write $f" >&2; exit 4;; esac
  case $f in events/*) [ -d "$I/\${f%/*}" ] || continue;; esac
  if ! printf "%s\\n" "$v" > "$I/$f" 2>/dev/null; then echo "kleak-remote: this kernel refused $v in $f" >&2; exit 3; fi
  case $f in events/*/enable) e=\${f#events/}; E="$E \${e%/enable}";; esac
done
if [ -z "$E" ]; then echo "kleak-remote: this kernel has none of the tracepoints kleak asked for" >&2; exit 3; fi
echo 1 > $I/tracing_on
echo kleak-remote-ready
cat $I/trace_pipe &
R=$!
cat > /dev/null
echo 0 > $I/tracing_on
sleep 0.5
exit 0
`;

/** What --ssh with --dry-run would run. */
export function sshTracefsPlan(o: TracefsOptions, t: SshTarget): string {
  const { writes } = instanceSetup(undefined, o, []);
  return [
    `ssh ${sshArgv(t, '…').slice(0, -1).map(shellQuote).join(' ')} 'exec sh -c …'   # a fixed script (src/sources/ssh.ts) that creates kleak-ssh-PID, then on its stdin:`,
    ...[{ file: 'buffer_size_kb', value: String(o.bufferKb) }, { file: 'options/hash-ptr', value: '0' }, ...writes].map((w) => `  ${w.file} ← ${w.value}`),
    '  go          # then streams trace_pipe until kleak closes stdin or the connection drops; the script removes the instance',
  ].join('\n');
}

/** The tracefs backend on a remote host: the instance is made and read there, the lines parsed here. */
export async function startSshTracefs(o: TracefsOptions, t: SshTarget, sink: ParseSink): Promise<LiveSource> {
  const { writes } = instanceSetup(undefined, o, []);
  const setup = [{ file: 'buffer_size_kb', value: String(o.bufferKb) }, { file: 'options/hash-ptr', value: '0' }, ...writes];
  for (const w of setup) if (/[\t\n\r]/.test(w.file + w.value)) throw new InputError(`a tracefs value for ${w.file} holds a tab or a line break.`);
  const child = execa('ssh', sshArgv(t, TRACEFS_SCRIPT), { stdin: 'pipe', stdout: 'pipe', stderr: 'pipe', reject: false, buffer: { stdout: false, stderr: true }, encoding: 'utf8', detached: true });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer | string) => {
    if (stderr.length < 1 << 16) stderr += String(d);
  });
  child.stdin?.on('error', () => undefined); // the remote may be gone before its setup is written
  child.stdin?.write(setup.map((w) => `${w.file}${TAB}${w.value}\n`).join('') + 'go\n');

  const parser = new FtraceTextParser(sink);
  let lines = 0;
  let ready: (ok: boolean) => void = () => {};
  const readyOrNot = new Promise<boolean>((r) => (ready = r));
  const reading = forEachLineSplit2(child.stdout!, (line, n) => {
    lines = n;
    if (lines === 1 && line === 'kleak-remote-ready') return ready(true);
    o.rawLine?.(line);
    parser.line(line, n);
  }).catch(() => 0);
  const exited = (child as ResultPromise).then((r) => r);
  void exited.then(() => ready(false));
  const timeout = setTimeout(() => ready(false), 30_000);
  const ok = await readyOrNot;
  clearTimeout(timeout);
  if (!ok) {
    child.kill('SIGKILL');
    await exited;
    const words = lastWords(stderr);
    throw new EnvironmentError(`kleak --ssh ${t.destination} could not start tracing there: ${words}.`, /not found|No such file/.test(words) ? 'The remote host needs sh, cat, mkdir and tracefs.' : 'Check that `ssh HOST true` works without a prompt (BatchMode), as root.');
  }

  let stopping = false;
  const ended = (async (): Promise<LiveEnd> => {
    await reading;
    const r = await exited;
    parser.end();
    if (stopping) return { how: 'stopped' };
    return { how: 'died', why: `the connection to ${t.destination} ended (${r.exitCode !== undefined ? `ssh exit ${r.exitCode}` : `ssh ${r.signal ?? 'killed'}`}: ${lastWords(stderr)})` };
  })();

  return {
    info: { kind: 'live', backend: 'tracefs', mode: 'events', host: t.destination },
    notes: [`tracing on ${t.destination} over ssh (tracefs); the remote instance goes when kleak stops or the connection drops`],
    pids: [],
    lines: () => lines,
    ended,
    async stop() {
      if (!stopping) {
        stopping = true;
        child.stdin?.end(); // EOF: the remote script drains trace_pipe, switches its events off and removes the instance
        const kill = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await ended;
        clearTimeout(kill);
      }
      await ended;
    },
  };
}

/**
 * /proc and /sys files of a remote host, copied into a private local directory at each read: kleak watch reads that
 * directory as it reads a --root copy. One ssh session for the whole watch: "read" on its stdin asks for a copy.
 */
const FILES_SCRIPT = `
while IFS= read -r l; do
  [ "$l" = read ] || exit 0
  for f in /proc/slabinfo /proc/meminfo /proc/vmallocinfo /proc/cmdline /proc/allocinfo /sys/kernel/debug/kmemleak /sys/kernel/mm/transparent_hugepage/enabled; do
    if [ -r $f ]; then echo "kleak-file $f"; cat $f; echo; fi
  done
  for d in /sys/kernel/slab/*; do
    [ -r $d/aliases ] && echo "kleak-file $d/aliases" && cat $d/aliases && echo
  done
  echo kleak-end
done
`;

/** The most one reading of a remote host's files may be: a real one (slabinfo, meminfo, vmallocinfo, cgroups) is a few MB. */
const MAX_READING = 64 << 20;
/** What kleak's remote script prints after each reading (a line of its own). */
const END_MARK = '\nkleak-end\n';
/** A reading that does not come whole in this time ends the watch of that host (it is said). */
const READ_TIMEOUT_MS = 30_000;

export class RemoteFiles {
  readonly root: string;
  private readonly child: ResultPromise;
  /** The reading being received, in chunks (joined once, when its end marker comes). */
  private parts: string[] = [];
  private partsLength = 0;
  /** The last characters received, where an end marker split across chunks begins. */
  private tail = '';
  private waiting: ((text: string) => void) | undefined;
  private stderr = '';
  private closed = false;
  /** Why kleak ended the connection itself (see MAX_READING, READ_TIMEOUT_MS). */
  private gone: string | undefined;

  constructor(private readonly t: SshTarget) {
    this.root = mkdtempSync(`${tmpdir()}/kleak-ssh-`); // 0700: the copies hold kernel addresses
    this.child = execa('ssh', sshArgv(t, FILES_SCRIPT), { stdin: 'pipe', stdout: 'pipe', stderr: 'pipe', reject: false, buffer: false, encoding: 'utf8', detached: true });
    this.child.stderr?.on('data', (d: Buffer | string) => {
      if (this.stderr.length < 1 << 16) this.stderr += String(d);
    });
    this.child.stdin?.on('error', () => undefined);
    this.child.stdout?.on('data', (d: Buffer | string) => {
      if (this.closed) return;
      const chunk = String(d);
      if (this.partsLength + chunk.length > MAX_READING) {
        // A peer that sends without end (not kleak's script, or a hostile host): bounded, said, and the end.
        this.gone = `${this.t.destination} sent more than ${MAX_READING >> 20} MiB for one reading, which kleak's script never does`;
        this.closed = true;
        this.parts = [];
        this.partsLength = 0;
        this.child.kill('SIGKILL');
        this.waiting?.('');
        return;
      }
      // The end marker is looked for in the new chunk and the few characters before it, and the reading is joined
      // once: searching (and so flattening) the whole buffer at each chunk was quadratic, and a flood of bytes
      // starved the timer that keeps --duration. A reading's start counts as following a newline.
      const head = this.partsLength === 0 ? '\n' : this.tail;
      const i = (head + chunk).indexOf(END_MARK);
      this.parts.push(chunk);
      this.partsLength += chunk.length;
      this.tail = (this.tail + chunk).slice(-(END_MARK.length - 1));
      if (i < 0 || !this.waiting) return;
      const all = this.parts.join('');
      // Where the marker's first newline is in `all` (-1: the newline before the start).
      const markAt = this.partsLength - chunk.length - head.length + i;
      const rest = all.slice(markAt + END_MARK.length);
      this.parts = rest ? [rest] : [];
      this.partsLength = rest.length;
      this.tail = rest.slice(-(END_MARK.length - 1));
      const w = this.waiting;
      this.waiting = undefined;
      w(all.slice(0, markAt + 1));
    });
    void this.child.then(() => {
      this.closed = true;
      this.waiting?.('');
    });
  }

  /** Copies the remote files into `root` (replacing the last copy); throws once the connection is gone. */
  async read(): Promise<void> {
    if (this.gone) throw new EnvironmentError(`${this.gone}.`);
    if (this.closed) throw new EnvironmentError(`the ssh connection to ${this.t.destination} ended: ${lastWords(this.stderr)}.`, 'Check that `ssh HOST true` works without a prompt (BatchMode).');
    const text = await new Promise<string>((resolve) => {
      const timer = setTimeout(() => {
        this.gone = `${this.t.destination} sent no whole reading within ${READ_TIMEOUT_MS / 1000} s`;
        this.closed = true;
        this.child.kill('SIGKILL');
        resolve('');
      }, READ_TIMEOUT_MS);
      timer.unref();
      this.waiting = (t) => {
        clearTimeout(timer);
        resolve(t);
      };
      this.child.stdin?.write('read\n');
    });
    if (this.gone) throw new EnvironmentError(`${this.gone}.`);
    if (this.closed && text === '') throw new EnvironmentError(`the ssh connection to ${this.t.destination} ended: ${lastWords(this.stderr)}.`, 'Check that `ssh HOST true` works without a prompt (BatchMode), as root (slabinfo is root-only).');
    rmSync(`${this.root}/proc`, { recursive: true, force: true });
    rmSync(`${this.root}/sys`, { recursive: true, force: true });
    const parts = text.split(/^kleak-file (\/\S+)\n/m);
    for (let i = 1; i + 1 < parts.length; i += 2) {
      const path = parts[i]!;
      if (!/^\/(?:proc|sys)\/[\w./:-]+$/.test(path) || path.includes('..')) continue;
      mkdirSync(dirname(`${this.root}${path}`), { recursive: true, mode: 0o700 });
      writeFileSync(`${this.root}${path}`, parts[i + 1]!.replace(/\n$/, ''), { mode: 0o600 });
    }
  }

  close(): void {
    this.child.stdin?.end();
    setTimeout(() => this.child.kill('SIGKILL'), 5000).unref();
    rmSync(this.root, { recursive: true, force: true });
  }
}
