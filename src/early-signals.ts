// A stop signal that arrives while kleak is still loading its modules (before the command installs its own
// handlers) must not kill it unhandled: it is remembered here and honoured as soon as the command is ready.
const STOP: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
let early: NodeJS.Signals | undefined;
const remember = (sig: NodeJS.Signals) => (early ??= sig);

let catching = false;

/** Idempotent: installed once however often it is called (at load time, and again by the command line). */
export function catchEarlySignals(): void {
  if (catching) return;
  catching = true;
  for (const s of STOP) process.on(s, remember);
}

/** Stops remembering; returns the signal that came early, if one did. */
export function takeEarlySignal(): NodeJS.Signals | undefined {
  catching = false;
  for (const s of STOP) process.off(s, remember);
  return early;
}

// Installed while this module is evaluated, before cli.ts's other imports load (it is imported first): the window in
// which a signal kills kleak unhandled shrinks to Node's own start. Only for the commands that trace.
if (process.argv.slice(2).some((a) => a === 'live' || a === 'record')) catchEarlySignals();
