// libbpf (libbpf.so.1, Debian's libbpf1) through koffi: the few calls the kernel backend needs to open kleak's BPF
// object from memory, set its read-only config and map sizes, load it, attach it and read its maps. Links and
// maps are file descriptors of this process, so everything detaches when kleak ends, even on SIGKILL.

import { createRequire } from 'node:module';
import { EnvironmentError } from '../errors.js';

type Fn = (...args: unknown[]) => unknown;
type Ptr = object; // an opaque pointer koffi hands back

export interface Libbpf {
  openMem(obj: Buffer, name: string): Ptr;
  maps(obj: Ptr): Map<string, Ptr>;
  programs(obj: Ptr): Map<string, Ptr>;
  setInitialValue(map: Ptr, data: Buffer): void;
  initialValueSize(map: Ptr): number;
  setMaxEntries(map: Ptr, n: number): void;
  setAutoload(prog: Ptr, on: boolean): void;
  setLogBuf(prog: Ptr, buf: Buffer): void;
  load(obj: Ptr): number;
  attach(prog: Ptr): Ptr;
  destroyLink(link: Ptr): void;
  close(obj: Ptr): void;
  mapFd(map: Ptr): number;
  lookup(fd: number, key: Buffer, value: Buffer): number;
  update(fd: number, key: Buffer, value: Buffer): number;
  programFd(prog: Ptr): number;
  /**
   * BPF_PROG_RUN of a syscall program with `ctx` as its context; the kernel copies the context back into `ctx`.
   * Returns the run's result (negative errno) and the program's return value.
   */
  run(progFd: number, ctx: Buffer): { err: number; retval: number };
  lookupBatch(fd: number, inBatch: Buffer | null, outBatch: Buffer, keys: Buffer, values: Buffer, count: Uint32Array): number;
  possibleCpus(): number;
  errno(): number;
  /** A BPF ring buffer read on demand: consume() hands each record (a copy) to onRecord, synchronously. */
  /**
   * The ring buffer of map `fd`; `onRecord` returning false stops a consume() after that record (libbpf stops at a
   * negative callback result), so that one call cannot run for as long as a producer keeps the ring full.
   */
  ringBuffer(fd: number, onRecord: (data: Buffer) => boolean | void): { consume(): number; free(): void };
}

let loaded: Libbpf | undefined;

/** libbpf through koffi, or one sentence saying why not (no koffi for this platform, no libbpf.so.1). */
export function libbpf(): Libbpf {
  if (loaded) return loaded;
  let koffi: typeof import('koffi');
  try {
    koffi = createRequire(import.meta.url)('koffi') as typeof import('koffi');
  } catch (err) {
    throw new EnvironmentError(`the kernel backend cannot load its FFI library (koffi): ${(err as Error).message.split('\n')[0]}.`, 'Use --backend bpftrace or --backend tracefs.');
  }
  let lib: ReturnType<typeof koffi.load>;
  try {
    lib = koffi.load('libbpf.so.1');
  } catch {
    throw new EnvironmentError('libbpf is not installed (libbpf.so.1 was not found).', 'Install it (apt-get install libbpf1, dnf install libbpf), or use --backend bpftrace.');
  }
  koffi.opaque('bpf_object');
  koffi.opaque('bpf_map');
  koffi.opaque('bpf_program');
  koffi.opaque('bpf_link');
  koffi.struct('kleak_open_opts', { sz: 'size_t', object_name: 'const char *' });
  // struct bpf_test_run_opts of libbpf 1.x (its sz field lets newer libbpf accept it).
  koffi.struct('kleak_test_run_opts', {
    sz: 'size_t', data_in: 'void *', data_out: 'void *', data_size_in: 'uint32_t', data_size_out: 'uint32_t',
    ctx_in: 'void *', ctx_out: 'void *', ctx_size_in: 'uint32_t', ctx_size_out: 'uint32_t', retval: 'uint32_t',
    repeat: 'int', duration: 'uint32_t', flags: 'uint32_t', cpu: 'uint32_t', batch_size: 'uint32_t',
  });
  const sampleFn = koffi.proto('int kleak_rb_sample(void *ctx, void *data, size_t size)');
  const f = (sig: string): Fn => lib.func(sig) as Fn;
  const api = {
    setPrint: f('void *libbpf_set_print(void *fn)'),
    openMem: f('bpf_object *bpf_object__open_mem(const void *buf, size_t size, const kleak_open_opts *opts)'),
    nextMap: f('bpf_map *bpf_object__next_map(const bpf_object *obj, const bpf_map *map)'),
    mapName: f('const char *bpf_map__name(const bpf_map *map)'),
    nextProgram: f('bpf_program *bpf_object__next_program(const bpf_object *obj, bpf_program *prog)'),
    programName: f('const char *bpf_program__name(const bpf_program *prog)'),
    setInitialValue: f('int bpf_map__set_initial_value(bpf_map *map, const void *data, size_t size)'),
    initialValue: f('void *bpf_map__initial_value(bpf_map *map, _Out_ size_t *psize)'),
    setMaxEntries: f('int bpf_map__set_max_entries(bpf_map *map, uint32_t max_entries)'),
    setAutoload: f('int bpf_program__set_autoload(bpf_program *prog, bool autoload)'),
    setLogBuf: f('int bpf_program__set_log_buf(bpf_program *prog, void *buf, size_t size)'),
    setLogLevel: f('int bpf_program__set_log_level(bpf_program *prog, uint32_t level)'),
    load: f('int bpf_object__load(bpf_object *obj)'),
    attach: f('bpf_link *bpf_program__attach(const bpf_program *prog)'),
    destroyLink: f('int bpf_link__destroy(bpf_link *link)'),
    close: f('void bpf_object__close(bpf_object *obj)'),
    mapFd: f('int bpf_map__fd(const bpf_map *map)'),
    lookup: f('int bpf_map_lookup_elem(int fd, const void *key, void *value)'),
    update: f('int bpf_map_update_elem(int fd, const void *key, const void *value, uint64_t flags)'),
    programFd: f('int bpf_program__fd(const bpf_program *prog)'),
    testRun: f('int bpf_prog_test_run_opts(int prog_fd, _Inout_ kleak_test_run_opts *opts)'),
    lookupBatch: f('int bpf_map_lookup_batch(int fd, void *in_batch, void *out_batch, void *keys, void *values, uint32_t *count, const void *opts)'),
    possibleCpus: f('int libbpf_num_possible_cpus(void)'),
    rbNew: f('void *ring_buffer__new(int map_fd, kleak_rb_sample *sample_cb, void *ctx, void *opts)'),
    rbConsume: f('int ring_buffer__consume(void *rb)'),
    rbFree: f('void ring_buffer__free(void *rb)'),
  };
  // libbpf prints warnings and verifier logs on stderr by default; kleak reports failures in its own words.
  api.setPrint(null);
  const iterate = (next: Fn, nameOf: Fn, obj: Ptr) => {
    const out = new Map<string, Ptr>();
    for (let p = next(obj, null) as Ptr | null; p; p = next(obj, p) as Ptr | null) out.set(nameOf(p) as string, p);
    return out;
  };
  const keep: Buffer[] = []; // memory libbpf holds a pointer to (object image, log buffers) must outlive it
  loaded = {
    openMem(obj, name) {
      keep.push(obj);
      const p = api.openMem(obj, obj.length, { sz: 16, object_name: name }) as Ptr | null;
      if (!p) throw new EnvironmentError(`libbpf could not open kleak's BPF object (errno ${koffi.errno()}).`, 'The object may be damaged: reinstall kleak, or run npm run build:bpf.');
      return p;
    },
    maps: (obj) => iterate(api.nextMap, api.mapName, obj),
    programs: (obj) => iterate(api.nextProgram, api.programName, obj),
    setInitialValue(map, data) {
      keep.push(data);
      const r = api.setInitialValue(map, data, data.length) as number;
      if (r !== 0) throw new Error(`bpf_map__set_initial_value failed: ${r}`);
    },
    initialValueSize(map) {
      const size = [0];
      api.initialValue(map, size);
      return Number(size[0]);
    },
    setMaxEntries(map, n) {
      const r = api.setMaxEntries(map, n) as number;
      if (r !== 0) throw new Error(`bpf_map__set_max_entries failed: ${r}`);
    },
    setAutoload: (prog, on) => void api.setAutoload(prog, on),
    setLogBuf(prog, buf) {
      keep.push(buf);
      api.setLogBuf(prog, buf, buf.length);
    },
    load: (obj) => api.load(obj) as number,
    attach(prog) {
      const link = api.attach(prog) as Ptr | null;
      if (!link) throw Object.assign(new Error('attach failed'), { errno: koffi.errno() });
      return link;
    },
    destroyLink: (link) => void api.destroyLink(link),
    close: (obj) => void api.close(obj),
    mapFd: (map) => api.mapFd(map) as number,
    lookup: (fd, key, value) => api.lookup(fd, key, value) as number,
    update: (fd, key, value) => api.update(fd, key, value, 0) as number,
    programFd: (prog) => api.programFd(prog) as number,
    run(progFd, ctx) {
      const opts = {
        sz: 80, data_in: null, data_out: null, data_size_in: 0, data_size_out: 0, ctx_in: ctx, ctx_out: null,
        ctx_size_in: ctx.length, ctx_size_out: 0, retval: 0, repeat: 0, duration: 0, flags: 0, cpu: 0, batch_size: 0,
      };
      const err = api.testRun(progFd, opts) as number;
      return { err, retval: opts.retval | 0 };
    },
    lookupBatch: (fd, inBatch, outBatch, keys, values, count) => api.lookupBatch(fd, inBatch, outBatch, keys, values, count, null) as number,
    possibleCpus: () => api.possibleCpus() as number,
    errno: () => koffi.errno(),
    ringBuffer(fd, onRecord) {
      const cb = koffi.register((_ctx: unknown, data: unknown, size: number) => {
        return onRecord(Buffer.from(new Uint8Array(koffi.view(data, Number(size))))) === false ? -1 : 0;
      }, koffi.pointer(sampleFn));
      const rb = api.rbNew(fd, cb, null, null) as object | null;
      if (!rb) {
        koffi.unregister(cb);
        throw new EnvironmentError(`kleak could not open its BPF ring buffer (errno ${koffi.errno()}).`, 'Use --backend bpftrace for --events.');
      }
      return {
        consume: () => api.rbConsume(rb) as number,
        free() {
          api.rbFree(rb);
          koffi.unregister(cb);
        },
      };
    },
  };
  return loaded;
}
