// The running kernel's BTF (/sys/kernel/btf/vmlinux), read just far enough to answer what the kernel backend asks
// before it loads: an enumerator's value (___GFP_ACCOUNT_BIT moves between kernel versions) and how many
// arguments a raw tracepoint passes (the kmem tracepoints changed in 6.1). Layout: include/uapi/linux/btf.h.

import { readFileSync } from 'node:fs';

const KIND = { ENUM: 6, TYPEDEF: 8, PTR: 2, FUNC: 12, FUNC_PROTO: 13, ENUM64: 19 } as const;

export class Btf {
  private readonly enumerators = new Map<string, number>();
  private readonly funcs = new Set<string>();
  /** typedef name → its type id, and id → [kind, type, vlen], to follow btf_trace_X → PTR → FUNC_PROTO. */
  private readonly typedefs = new Map<string, number>();
  private readonly types: { kind: number; type: number; vlen: number }[] = [{ kind: 0, type: 0, vlen: 0 }];

  constructor(data: Buffer) {
    if (data.length < 24 || data.readUInt16LE(0) !== 0xeb9f) throw new Error('not BTF (bad magic)');
    const hdrLen = data.readUInt32LE(4);
    const typeOff = hdrLen + data.readUInt32LE(8);
    const typeEnd = typeOff + data.readUInt32LE(12);
    const strOff = hdrLen + data.readUInt32LE(16);
    const str = (off: number) => data.toString('latin1', strOff + off, data.indexOf(0, strOff + off));
    for (let p = typeOff; p < typeEnd; ) {
      const nameOff = data.readUInt32LE(p);
      const info = data.readUInt32LE(p + 4);
      const sizeOrType = data.readUInt32LE(p + 8);
      const kind = (info >>> 24) & 0x1f;
      const vlen = info & 0xffff;
      p += 12;
      this.types.push({ kind, type: sizeOrType, vlen });
      if (kind === KIND.ENUM) for (let i = 0; i < vlen; i++) this.enumerators.set(str(data.readUInt32LE(p + i * 8)), data.readInt32LE(p + i * 8 + 4));
      if (kind === KIND.ENUM64) for (let i = 0; i < vlen; i++) this.enumerators.set(str(data.readUInt32LE(p + i * 12)), data.readUInt32LE(p + i * 12 + 4));
      if (kind === KIND.FUNC) this.funcs.add(str(nameOff));
      if (kind === KIND.TYPEDEF && nameOff !== 0) this.typedefs.set(str(nameOff), this.types.length - 1);
      p += extraBytes(kind, vlen);
    }
  }

  static vmlinux(path = '/sys/kernel/btf/vmlinux'): Btf {
    return new Btf(readFileSync(path));
  }

  enumValue(name: string): number | undefined {
    return this.enumerators.get(name);
  }

  hasFunction(name: string): boolean {
    return this.funcs.has(name);
  }

  /** Arguments a raw tracepoint passes its programs (the leading `void *__data` not counted), or undefined. */
  tracepointArgs(tracepoint: string): number | undefined {
    const td = this.typedefs.get(`btf_trace_${tracepoint}`);
    if (td === undefined) return undefined;
    const ptr = this.types[this.types[td]!.type];
    const proto = ptr && ptr.kind === KIND.PTR ? this.types[ptr.type] : undefined;
    return proto && proto.kind === KIND.FUNC_PROTO ? proto.vlen - 1 : undefined;
  }
}

/** Bytes that follow struct btf_type for each kind. */
function extraBytes(kind: number, vlen: number): number {
  switch (kind) {
    case 1: return 4; // INT
    case 3: return 12; // ARRAY
    case 4: case 5: return 12 * vlen; // STRUCT, UNION
    case 6: return 8 * vlen; // ENUM
    case 13: return 8 * vlen; // FUNC_PROTO
    case 14: return 4; // VAR
    case 15: return 12 * vlen; // DATASEC
    case 17: return 4; // DECL_TAG
    case 19: return 12 * vlen; // ENUM64
    default: return 0; // PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG
  }
}

/** __GFP_ACCOUNT's value on this kernel (its bit from BTF), so kmalloc-cg-N is told from kmalloc-N; 0 when unknown. */
export function gfpAccount(): number {
  try {
    const bit = Btf.vmlinux().enumValue('___GFP_ACCOUNT_BIT');
    return bit === undefined ? 0 : 2 ** bit;
  } catch {
    return 0;
  }
}
