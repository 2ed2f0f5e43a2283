// The keys, for `?`.
import { Box, Text } from 'ink';

export const KEYS: [string, string][] = [
  ['↑ ↓  j k', 'move'],
  ['Enter', 'open the site: stacks, sample pointers, growth'],
  ['Esc  ←  Backspace', 'back to the table'],
  ['i', "in a site (live): read its sample objects from the kernel, named (kleak inspect)"],
  ['b  c  a  g', 'sort by bytes, count, age, growth'],
  ['/', 'filter by function name (Enter keeps, Esc clears)'],
  ['f', 'stack tree of outstanding bytes (→ ← open/close, r from the allocation site up)'],
  ['m', 'outstanding bytes and growth by module'],
  ['p', 'pause the display (tracing and reading go on)'],
  ['s', 'save the report (JSON and text) in the current directory'],
  ['?', 'this help'],
  ['q  Ctrl-C', 'quit (live: stop tracing, clean up, print the final report)'],
];

export function KeyHelp() {
  return (
    <Box flexDirection="column">
      <Text bold>Keys</Text>
      {KEYS.map(([k, what]) => (
        <Text key={k}>
          {'  '}
          {k.padEnd(20)} {what}
        </Text>
      ))}
    </Box>
  );
}
