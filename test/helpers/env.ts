// What the machine running the tests has: tests that need more skip with the reason, never pass silently.
export { onPath } from '../../src/sources/which.js';

export const isRoot = process.getuid?.() === 0;
