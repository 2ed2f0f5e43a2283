// Opening the TUI for a run: full screen (alternate buffer) while it is up, the final report on the normal screen
// after. Used by `kleak`, `kleak replay` and `kleak live` when stdout is a terminal.
import { render } from 'ink';
import { closeSync, writeSync } from 'node:fs';
import { createPrivateFile } from '../report/private-file.js';
import { renderJson } from '../report/json.js';
import type { Report } from '../report/model.js';
import { renderText } from '../report/text.js';
import { App } from './App.js';
import type { TuiSource } from './source.js';

/** Saves the report as kleak-report-<time>.json and .txt in the current directory; says where. */
export function saveReport(r: Report, dir = process.cwd()): string {
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*/, '').replace('T', '-');
  const base = `${dir}/kleak-report-${stamp}`;
  try {
    for (const [file, text] of [[`${base}.json`, renderJson(r)], [`${base}.txt`, renderText(r, Infinity)]] as const) {
      const fd = createPrivateFile(file);
      try {
        writeSync(fd, text);
      } finally {
        closeSync(fd);
      }
    }
    return `saved ${base}.json and ${base}.txt`;
  } catch (err) {
    return `could not save the report: ${(err as Error).message}`;
  }
}

/** Shows the TUI until the user quits (or `closeWhen` resolves); resolves after it is gone from the screen. */
export async function runTui(source: TuiSource, onQuit: () => void, closeWhen?: Promise<unknown>): Promise<void> {
  const out = process.stdout;
  out.write('\x1b[?1049h\x1b[H'); // alternate screen, like top and less
  const restore = () => out.write('\x1b[?1049l');
  process.once('exit', restore);
  try {
    const app = render(<App source={source} save={saveReport} onQuit={onQuit} />, { exitOnCtrlC: false, maxFps: 20, patchConsole: false });
    void closeWhen?.then(() => app.unmount());
    await app.waitUntilExit();
  } finally {
    restore();
    process.off('exit', restore);
  }
}
