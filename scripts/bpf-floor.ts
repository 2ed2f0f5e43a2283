// Loads a BPF object's programs through libbpf (kleak's own binding), attaches them, says "R", and holds them
// until SIGINT/SIGTERM or the end of its parent: the floor of bench-live-overhead (empty tp_btf programs).
//   node dist/scripts/bpf-floor.js OBJECT.bpf.o
import { readFileSync } from 'node:fs';
import { libbpf } from '../src/kernel/libbpf.js';

const lib = libbpf();
const obj = lib.openMem(readFileSync(process.argv[2]!), 'floor');
const r = lib.load(obj);
if (r !== 0) {
  console.error(`bpf-floor: load failed (${r})`);
  process.exit(2);
}
const links = [...lib.programs(obj).values()].map((p) => lib.attach(p));
console.log('R');
const end = () => {
  for (const l of links) lib.destroyLink(l);
  lib.close(obj);
  process.exit(0);
};
process.on('SIGINT', end);
process.on('SIGTERM', end);
process.stdin.resume();
process.stdin.on('end', end);
