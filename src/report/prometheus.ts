// Metrics for Prometheus (prom-client): what a live run or a watch knows, read from its latest report at each
// scrape, served on /metrics (--prometheus [HOST:]PORT) or written as a .prom file for node_exporter's textfile
// collector (--textfile DIR, replaced atomically). Label values are kernel function, cache and module names, never
// addresses; the number of sites and caches is bounded by --top.

import { createServer, type Server } from 'node:http';
import type { Socket } from 'node:net';
import { closeSync, renameSync, rmSync } from 'node:fs';
import { Gauge, Registry } from 'prom-client';
import type { WatchReport } from '../engine/watch.js';
import { InputError } from '../errors.js';
import type { Report } from './model.js';
import { createPrivateFile, writeAll } from './private-file.js';
import { say } from '../output.js';

const SITE_LABELS = ['allocator', 'function', 'module', 'cache'] as const;

/** A site's module, from a call site printed as `func+0x10/0x40 [module]`; "" for the kernel itself. */
function moduleOf(callSite: string): string {
  return /\[([^\]]+)\]\s*$/.exec(callSite)?.[1] ?? '';
}

export interface Metrics {
  registry: Registry;
}

/** Gauges over a live run's report (called at each scrape). */
export function liveMetrics(report: () => Report, top: number): Metrics {
  const registry = new Registry();
  let last: Report | undefined;
  const fresh = () => (last = report());
  const sites = () => (last ?? fresh()).sites.slice(0, top);
  const siteGauge = (name: string, help: string, value: (s: Report['sites'][number]) => number, refresh = false) =>
    new Gauge({
      name, help, labelNames: SITE_LABELS, registers: [registry],
      collect() {
        if (refresh) fresh();
        this.reset();
        for (const s of sites()) this.set({ allocator: s.allocator ?? 'slab', function: s.function, module: moduleOf(s.callSite), cache: s.cache }, value(s));
      },
    });
  // The first gauge collected refreshes the report; the others read the same one (prom-client collects in order).
  siteGauge('kleak_site_outstanding_objects', 'Allocations not freed yet, per call site (the --top sites holding the most bytes).', (s) => s.outstanding, true);
  siteGauge('kleak_site_outstanding_bytes', 'Bytes of the allocations not freed yet, per call site.', (s) => s.outstandingBytes);
  siteGauge('kleak_site_growth_objects_per_minute', 'Rise of the outstanding count, objects a minute.', (s) => s.growthPerMin);
  siteGauge('kleak_site_growing', '1 when the site is growing (a steady rise that does not come back down), else 0.', (s) => (s.verdict === 'growing' ? 1 : 0));
  const totals = (name: string, help: string, value: (r: Report) => number) =>
    new Gauge({ name, help, registers: [registry], collect() { this.set(value(last ?? fresh())); } });
  totals('kleak_events', 'Allocation and free events kleak has read (or the kernel table has counted).', (r) => r.totals.events);
  totals('kleak_lost_events', 'Events the tracer reported lost.', (r) => r.totals.lostEvents);
  totals('kleak_bad_lines', 'Lines of tracer output kleak could not read.', (r) => r.totals.badLines);
  totals('kleak_outstanding_objects', 'Allocations not freed yet, all sites.', (r) => r.totals.outstanding);
  totals('kleak_outstanding_bytes', 'Bytes not freed yet, all sites.', (r) => r.totals.outstandingBytes);
  return { registry };
}

/** Gauges over a watch's report: slab caches labelled `slab` (as node_exporter's node_slabinfo_*), meminfo, vmalloc callers. */
export function watchMetrics(report: () => WatchReport): Metrics {
  const registry = new Registry();
  let last: WatchReport | undefined;
  const get = (refresh: boolean) => (refresh || !last ? (last = report()) : last);
  const gauge = (name: string, help: string, labelNames: string[], fill: (g: Gauge, r: WatchReport) => void, refresh = false) =>
    new Gauge({
      name, help, labelNames, registers: [registry],
      collect() {
        this.reset();
        fill(this, get(refresh));
      },
    });
  gauge('kleak_slab_active_objects', 'Active objects of a slab cache (/proc/slabinfo).', ['slab'], (g, r) => r.caches.forEach((c) => g.set({ slab: c.name }, c.activeObjs)), true);
  gauge('kleak_slab_active_bytes', 'Bytes of the active objects of a slab cache.', ['slab'], (g, r) => r.caches.forEach((c) => g.set({ slab: c.name }, c.activeBytes)));
  gauge('kleak_slab_growth_objects_per_minute', 'Rise of a slab cache, objects a minute.', ['slab'], (g, r) => r.caches.forEach((c) => g.set({ slab: c.name }, c.objsPerMin)));
  gauge('kleak_slab_growing', '1 when the slab cache is growing, else 0.', ['slab'], (g, r) => r.caches.forEach((c) => g.set({ slab: c.name }, c.verdict === 'growing' ? 1 : 0)));
  gauge('kleak_meminfo_bytes', 'Kernel-side /proc/meminfo lines, and Unaccounted (memory no counter explains).', ['name'], (g, r) => r.meminfo.forEach((m) => g.set({ name: m.name }, m.kb * 1024)));
  gauge('kleak_meminfo_growing', '1 when a kernel-side meminfo line is growing, else 0.', ['name'], (g, r) => r.meminfo.forEach((m) => g.set({ name: m.name }, m.verdict === 'growing' ? 1 : 0)));
  const vlabels = ['caller', 'module', 'type'];
  const vl = (v: NonNullable<WatchReport['vmallocCallers']>[number]) => ({ caller: v.caller, module: v.module ?? '', type: v.type });
  gauge('kleak_vmalloc_areas', 'vmalloc areas per caller (/proc/vmallocinfo).', vlabels, (g, r) => r.vmallocCallers?.forEach((v) => g.set(vl(v), v.areas)));
  gauge('kleak_vmalloc_bytes', 'Bytes of the vmalloc areas per caller.', vlabels, (g, r) => r.vmallocCallers?.forEach((v) => g.set(vl(v), v.bytes)));
  gauge('kleak_vmalloc_growing', '1 when a vmalloc caller is growing, else 0.', vlabels, (g, r) => r.vmallocCallers?.forEach((v) => g.set(vl(v), v.verdict === 'growing' ? 1 : 0)));
  // Memory cgroups: at most MAX_CGROUP_SERIES label values (growing ones first), so a host with thousands of pods
  // cannot flood the fleet's Prometheus.
  const memcgs = (r: WatchReport) => (r.memcgs ?? []).slice(0, MAX_CGROUP_SERIES);
  gauge('kleak_memcg_kernel_bytes', 'Kernel memory charged to a memory cgroup and below it (v1 memory.kmem.usage_in_bytes, v2 memory.stat kernel).', ['cgroup'], (g, r) => memcgs(r).forEach((m) => g.set({ cgroup: m.path }, m.bytes)));
  gauge('kleak_memcg_kernel_growing', '1 when a memory cgroup\'s kernel memory is growing, else 0.', ['cgroup'], (g, r) => memcgs(r).forEach((m) => g.set({ cgroup: m.path }, m.verdict === 'growing' ? 1 : 0)));
  gauge('kleak_memcg_dying', 'Dying memory cgroups: removed, still pinned by memory charged to them.', [], (g, r) => {
    if (r.dyingMemcgs) g.set(r.dyingMemcgs.count);
  });
  return { registry };
}

/** Most memory cgroups exported as label values. */
const MAX_CGROUP_SERIES = 100;

/** `[HOST:]PORT` → where to listen; a bare port listens on every interface, as node_exporter does. */
export function parseListen(text: string): { host: string | undefined; port: number } {
  const m = /^(?:(\[[0-9a-fA-F:]+\]|[\w.-]+)?:)?(\d{1,5})$/.exec(text);
  const port = Number(m?.[2]);
  if (!m || !(port >= 1 && port <= 65535)) throw new InputError(`--prometheus takes [HOST:]PORT (like 9464, :9464 or 127.0.0.1:9464), not "${text}".`);
  const host = m[1]?.replace(/^\[|\]$/g, '');
  return { host, port };
}

/**
 * Connections kept open at once. A Prometheus server keeps one connection per target; a flood of idle connections
 * (20,000 in an audit) took every file descriptor, and the next /proc read failed with EMFILE. Past this, a new
 * connection closes the oldest one (a flood's own, most likely: a scrape takes milliseconds), so a real scraper is
 * still served; an idle connection is closed after SOCKET_IDLE_MS.
 */
const MAX_CONNECTIONS = 32;
const SOCKET_IDLE_MS = 15_000;

/** Serves /metrics; resolves once listening (or says in one sentence why it cannot). */
export async function serveMetrics(m: Metrics, listen: { host: string | undefined; port: number }): Promise<Server> {
  const server = createServer((req, res) => {
    if (req.url !== '/metrics' && req.url?.startsWith('/metrics?') !== true) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('kleak serves /metrics\n');
      return;
    }
    m.registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': m.registry.contentType }).end(text),
      (err: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`kleak: ${(err as Error).message}\n`),
    );
  });
  const open = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    open.add(socket);
    socket.once('close', () => open.delete(socket));
    if (open.size > MAX_CONNECTIONS) open.values().next().value?.destroy();
  });
  server.headersTimeout = 5_000;
  server.requestTimeout = 10_000;
  server.keepAliveTimeout = 5_000;
  // No 'timeout' listener: Node destroys a socket idle this long.
  server.timeout = SOCKET_IDLE_MS;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(new InputError(`cannot serve metrics on ${listen.host ?? '*'}:${listen.port}: ${err.code === 'EADDRINUSE' ? 'the port is in use' : err.message}.`, 'Choose another port with --prometheus [HOST:]PORT.')),
    );
    server.listen(listen.port, listen.host, () => resolve());
  });
  // Once listening, an accept that fails (out of descriptors) is said once and serving goes on.
  let said = false;
  server.on('error', (err) => {
    if (!said) say(`kleak: the metrics server: ${err.message}; it goes on serving.\n`);
    said = true;
  });
  server.on('clientError', (_err, socket) => socket.destroy());
  server.unref();
  return server;
}

let textfileSeq = 0;

/**
 * Writes DIR/kleak.prom for node_exporter's textfile collector: a new file (0644: names and counts, no address, and
 * node_exporter runs as its own user) renamed over the old one, so the collector never reads half a file. Each write
 * has its own temporary name, removed when the write fails (a full disk).
 */
export async function writeTextfile(m: Metrics, dir: string): Promise<void> {
  const tmp = `${dir}/.kleak.prom.${process.pid}.${++textfileSeq}.tmp`;
  const text = await m.registry.metrics();
  const fd = createPrivateFile(tmp, true, 0o644);
  try {
    try {
      writeAll(fd, Buffer.from(text), tmp);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, `${dir}/kleak.prom`);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}

/**
 * --prometheus and --textfile of a live run or a watch: the server, and textfile writes that never overlap (at
 * --interval 0.5 a write could start while the last was still collecting). `write()` is called at each reading;
 * `stop()` writes a last time and closes the server.
 */
export async function startMetricsExport(m: Metrics, o: { prometheus?: { host: string | undefined; port: number } | undefined; textfile?: string | undefined }): Promise<{ write(): void; stop(): Promise<void> }> {
  const server = o.prometheus ? await serveMetrics(m, o.prometheus) : undefined;
  if (o.prometheus) say(`kleak: serving metrics on http://${o.prometheus.host ?? '0.0.0.0'}:${o.prometheus.port}/metrics\n`);
  const dir = o.textfile;
  let writing: Promise<void> | undefined;
  let failedWith: string | undefined;
  const writeOnce = (): Promise<void> => {
    if (!dir) return Promise.resolve();
    if (writing) return writing;
    writing = writeTextfile(m, dir)
      .then(
        () => {
          if (failedWith !== undefined) say(`kleak: writing ${dir}/kleak.prom works again.\n`);
          failedWith = undefined;
        },
        (err: unknown) => {
          // Said when it starts failing and when the reason changes, not at every interval.
          const why = (err as Error).message;
          if (why !== failedWith) say(`kleak: writing ${dir}/kleak.prom failed: ${why}\n`);
          failedWith = why;
        },
      )
      .finally(() => (writing = undefined));
    return writing;
  };
  await writeOnce();
  return {
    write: () => void writeOnce(),
    async stop() {
      await writing;
      await writeOnce();
      server?.close();
    },
  };
}
