// Prints vitest's counts as one plain line ("N passed, N failed, N skipped") for CI logs that read closing lines.
import { readFileSync } from 'node:fs';

const r = JSON.parse(readFileSync('.vitest-results.json', 'utf8'));
console.log(`tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests + (r.numTodoTests ?? 0)} skipped`);
process.exit(r.numFailedTests > 0 || r.numPassedTests === 0 ? 1 : 0);
