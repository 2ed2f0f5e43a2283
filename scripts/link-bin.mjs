// Run by `npm ci` / `npm install` (prepare): npm links the bins of dependencies into node_modules/.bin but not the
// project's own, so `npx kleak` in a fresh checkout would look for kleak on the registry. Link it ourselves.
import { chmodSync, mkdirSync, rmSync, symlinkSync } from 'node:fs';

const cli = 'dist/src/cli.js';
chmodSync(cli, 0o755);
mkdirSync('node_modules/.bin', { recursive: true });
rmSync('node_modules/.bin/kleak', { force: true });
symlinkSync(`../../${cli}`, 'node_modules/.bin/kleak');
