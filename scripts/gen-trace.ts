// Writes a large, realistic `trace-cmd report` (3.1.6 layout, two CPUs) for benchmarks: churn at several call
// sites (allocated, freed a little later, addresses reused), a slow leak at one site, frees of pointers
// allocated before the trace began, and optionally a -T kernel_stack block after every allocation.
//   node dist/scripts/gen-trace.js OUT EVENTS [--stacks] [--leak-every N] [--no-free]

import { createWriteStream } from 'node:fs';

export interface GenOptions {
  events: number;
  stacks: boolean;
  /** One allocation in this many is at the leaking site and never freed. */
  leakEvery: number;
  /** Never free anything (a memory test: every allocation stays outstanding). */
  noFree: boolean;
}

const SITES = [
  ['alloc_pipe_info+0x6c', 'kmalloc', 1024, 640],
  ['seq_open+0x35', 'kmalloc', 256, 232],
  ['__d_alloc+0x31', 'kmalloc', 64, 56],
  ['load_elf_phdrs+0x4c', 'kmalloc', 512, 504],
  ['kernfs_fop_open+0x2a5', 'kmalloc', 128, 96],
] as const;
const LEAK = ['user_preparse+0x2f', 'kmalloc', 4096, 4024] as const;
const COMMS = ['python3-8470', 'nginx-1211', 'kworker/0:1-17', 'bash-5184'];
const STACK = (fn: string) =>
  `=> trace_event_raw_event_kmalloc (ffffffff815c8de1)\n=> __kmalloc_noprof (ffffffff81630014)\n=> ${fn.split('+')[0]} (ffffffff81a7f28f)\n=> __x64_sys_ioctl (ffffffff81a772f2)\n=> do_syscall_64 (ffffffff821ef691)\n=> entry_SYSCALL_64_after_hwframe (ffffffff81000130)\n`;

export async function generate(path: string, o: GenOptions): Promise<{ allocs: number; leaked: number }> {
  const out = createWriteStream(path, { highWaterMark: 1 << 22 });
  let buf = 'cpus=2\n';
  let ts = 1000;
  let allocs = 0;
  let leaked = 0;
  let events = 0;
  // Live churn pointers waiting for their free, FIFO: addresses come back a few hundred events later.
  const pending: string[] = [];
  let nextAddr = 0x888100000000;
  const freeAddrs: number[] = [];
  const flush = async () => {
    if (!out.write(buf)) await new Promise<void>((r) => out.once('drain', () => r()));
    buf = '';
  };
  while (events < o.events) {
    ts += 0.000003;
    const cpu = events & 1;
    const comm = COMMS[(events >> 3) & 3]!;
    const head = `${comm.padStart(16)}  [00${cpu}]  ${ts.toFixed(6)}: `;
    const doFree = !o.noFree && pending.length > 0 && (pending.length > 400 || (events * 2654435761) % 7 < 3);
    if (doFree) {
      const p = pending.shift()!;
      buf += `${head}kfree:                (kfree_caller+0x1c) call_site=kfree_caller+0x1c ptr=0xffff${p}\n`;
      freeAddrs.push(parseInt(p, 16));
    } else if (events % 97 === 0 && !o.noFree) {
      // A free of something allocated before the trace began.
      buf += `${head}kfree:                (rcu_do_batch+0x1b1) call_site=rcu_do_batch+0x1b1 ptr=0xffff88aa${(events & 0xffffff).toString(16).padStart(8, '0')}\n`;
    } else {
      allocs++;
      const leak = allocs % o.leakEvery === 0;
      const [site, ev, bytesAlloc, bytesReq] = leak ? LEAK : SITES[allocs % SITES.length]!;
      const addr = !o.noFree && !leak && freeAddrs.length > 1000 ? freeAddrs.shift()! : (nextAddr += 0x1000);
      const p = addr.toString(16).padStart(12, '0');
      buf += `${head}${ev}:              (${site}) call_site=${site} ptr=0xffff${p} bytes_req=${bytesReq} bytes_alloc=${bytesAlloc} gfp_flags=GFP_KERNEL node=-1 accounted=false\n`;
      if (o.stacks) buf += `${head.replace(/\d+\.\d+: $/, (ts + 0.000001).toFixed(6) + ': ')}kernel_stack:         <stack trace >\n${STACK(site)}`;
      if (leak) leaked++;
      else pending.push(p);
    }
    events++;
    if (buf.length > 1 << 20) await flush();
  }
  await flush();
  await new Promise<void>((r) => out.end(r));
  return { allocs, leaked };
}

if (process.argv[1]?.endsWith('gen-trace.js')) {
  const [out, n] = process.argv.slice(2);
  if (!out || !n) {
    console.error('usage: gen-trace OUT EVENTS [--stacks] [--leak-every N] [--no-free]');
    process.exit(1);
  }
  const le = process.argv.indexOf('--leak-every');
  const r = await generate(out, {
    events: Number(n),
    stacks: process.argv.includes('--stacks'),
    leakEvery: le > 0 ? Number(process.argv[le + 1]) : 1000,
    noFree: process.argv.includes('--no-free'),
  });
  console.log(JSON.stringify(r));
}
