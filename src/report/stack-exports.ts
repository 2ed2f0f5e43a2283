// Outstanding memory by stack, in the formats flame-graph tools read: folded stacks (flamegraph.pl, inferno,
// speedscope: `root;…;leaf BYTES`, one line per stack) and pprof (profile.proto, gzipped, sample types
// objects/count and space/bytes: pprof, Pyroscope, Parca), encoded by pprof-format. Files are new and 0600.

import { gzipSync } from 'node:zlib';
import { Function as PprofFunction, Line, Location, Profile, Sample, StringTable, ValueType } from 'pprof-format';
import type { Engine } from '../engine/engine.js';

export type StackWeights = ReturnType<Engine['stackWeights']>;

/** One line per stack, root first; `;` inside a frame would split it, so it becomes `:`. */
export function foldedStacks(w: StackWeights): string {
  return w.map((s) => `${s.frames.map((f) => f.replace(/;/g, ':')).join(';')} ${s.bytes}`).join('\n') + (w.length ? '\n' : '');
}

/** profile.proto, gzipped: one sample per stack with [objects, bytes]; locations leaf first, as pprof wants. */
export function pprofProfile(w: StackWeights): Buffer {
  const strings = new StringTable();
  const functions = new Map<string, PprofFunction>();
  const locations = new Map<string, Location>();
  const locationOf = (name: string): Location => {
    let loc = locations.get(name);
    if (!loc) {
      let fn = functions.get(name);
      if (!fn) functions.set(name, (fn = new PprofFunction({ id: functions.size + 1, name: strings.dedup(name), systemName: strings.dedup(name) })));
      locations.set(name, (loc = new Location({ id: locations.size + 1, line: [new Line({ functionId: fn.id })] })));
    }
    return loc;
  };
  const samples = w.map((s) => new Sample({ locationId: [...s.frames].reverse().map((f) => locationOf(f).id), value: [s.objects, s.bytes] }));
  const profile = new Profile({
    sampleType: [new ValueType({ type: strings.dedup('objects'), unit: strings.dedup('count') }), new ValueType({ type: strings.dedup('space'), unit: strings.dedup('bytes') })],
    sample: samples,
    location: [...locations.values()],
    function: [...functions.values()],
    stringTable: strings,
  });
  return gzipSync(profile.encode());
}

