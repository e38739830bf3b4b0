import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { SourceMap } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';

/**
 * Where a run's CPU goes, from the `.cpuprofile` files `node --cpu-prof` writes
 * for its role processes (`LOCKSTEP_NODE_ARGS="--cpu-prof --cpu-prof-dir=DIR"`).
 * Every sample's own frame (self time) is put in one cost: the library or part
 * of lockstep its source is in (bundled code is mapped back to its sources
 * through the bundle's source map), V8's garbage collector, the runtime
 * (`(program)`: native code V8 does not attribute to a function). Idle time
 * is not CPU and is left out. Start-up is counted too (each process loads and
 * connects once), so a profile of many steps says more per step.
 */
export const costNames = [
  'xstate',
  'NATS client',
  'sockets and streams',
  'serialization and checksums',
  'zod',
  'GC',
  'runtime (program)',
  'event loop (ticks, microtasks, promises)',
  'timers',
  'disk (run log, checkpoints)',
  'buffers',
  'edge',
  'machines and adapters',
  'compute and hashing',
  'logging',
  'start-up (module loading)',
  'other',
] as const;
export type CostName = (typeof costNames)[number];

/** The part of a cpuprofile lockstep reads (the Chrome DevTools protocol's Profile). */
const CpuProfile = z.object({
  nodes: z.array(
    z.object({
      id: z.number().int(),
      callFrame: z.object({ functionName: z.string(), url: z.string(), lineNumber: z.number().int(), columnNumber: z.number().int() }),
      children: z.array(z.number().int()).optional(),
    }),
  ),
  startTime: z.number(),
  endTime: z.number(),
  samples: z.array(z.number().int()),
  timeDeltas: z.array(z.number()),
});
type CpuProfile = z.infer<typeof CpuProfile>;

export interface ProfileCost {
  cost: CostName;
  /** CPU ms per step, summed over every profiled process. */
  msPerStep: number;
  /** Share of all profiled CPU (0..1). */
  share: number;
}

export interface ProfileSummary {
  processes: number;
  steps: number;
  /** CPU ms per step, summed over every profiled process (start-up included). */
  cpuMsPerStep: number;
  /** Every cost, largest first. */
  costs: ProfileCost[];
}

const NATIVE_SERIALIZATION = new Set([
  'parse',
  'stringify',
  'decode',
  'encode',
  'encodeInto',
  'utf8Write',
  'utf8Slice',
  'decodeUTF8',
  'encodeUtf8String',
]);
const NATIVE_SOCKETS = new Set(['writev', 'writeBuffer', 'writeUtf8String', 'writeLatin1String', 'onStreamRead', 'writeGeneric']);
const NATIVE_DISK = new Set([
  'fsync',
  'open',
  'openFileHandle',
  'mkdir',
  'unlink',
  'fstat',
  'close',
  'read',
  'writeString',
  'rename',
  'stat',
  'lstat',
]);
const NATIVE_EVENT_LOOP = new Set(['runMicrotasks', 'queueMicrotask']);

/** The cost a frame's self time belongs to, from its (mapped) source and function name. */
export function costOf(source: string, functionName: string): CostName | undefined {
  if (functionName === '(idle)' || functionName === '(root)') return undefined;
  if (functionName === '(garbage collector)') return 'GC';
  if (functionName === '(program)') return 'runtime (program)';
  if (/node_modules\/xstate\//.test(source)) return 'xstate';
  if (/node_modules\/@nats-io\//.test(source)) return 'NATS client';
  if (/node_modules\/zod\//.test(source)) return 'zod';
  if (/node_modules\/(pino|sonic-boom|thread-stream|pino-std-serializers|fast-redact|quick-format-unescaped)\//.test(source))
    return 'logging';
  if (/^node:(net|stream|internal\/(stream_base_commons|streams|net|js_stream_socket)|internal\/webstreams)/.test(source))
    return 'sockets and streams';
  if (/^node:internal\/(modules|bootstrap|process\/pre_execution|main)|^node:internal\/vm/.test(source) || functionName === '__require2')
    return 'start-up (module loading)';
  if (/^node:internal\/(process\/(task_queues|promises)|async_hooks|fixed_queue)|^node:async_hooks/.test(source))
    return 'event loop (ticks, microtasks, promises)';
  if (/^node:(internal\/)?timers/.test(source)) return 'timers';
  if (/^node:(internal\/)?fs/.test(source)) return 'disk (run log, checkpoints)';
  if (/^node:(internal\/)?buffer/.test(source)) return 'buffers';
  if (/^node:(internal\/encoding|zlib)/.test(source)) return 'serialization and checksums';
  if (/^node:(internal\/)?crypto/.test(source)) return 'compute and hashing';
  if (/topology\/src\/(frame|messages|wire|subjects|issues)\.ts$/.test(source)) return 'serialization and checksums';
  if (/topology\/src\/(numerics|model|optimizer|data|prng|reference|hash)\.ts$/.test(source)) return 'compute and hashing';
  if (/actors\/src\/wire\//.test(source)) return 'edge';
  if (/actors\/src\//.test(source)) return 'machines and adapters';
  if (source === '') {
    if (NATIVE_SERIALIZATION.has(functionName)) return 'serialization and checksums';
    if (NATIVE_SOCKETS.has(functionName)) return 'sockets and streams';
    if (NATIVE_DISK.has(functionName)) return 'disk (run log, checkpoints)';
    if (NATIVE_EVENT_LOOP.has(functionName)) return 'event loop (ticks, microtasks, promises)';
    if (functionName === 'compileFunction' || functionName === 'compileSourceTextModule') return 'start-up (module loading)';
  }
  return 'other';
}

/** Maps a bundle's (url, line, column) to its original source through `<file>.map`, once per file. */
class Sources {
  private readonly maps = new Map<string, SourceMap | undefined>();

  source(url: string, line: number, column: number): string {
    if (!url.startsWith('file://')) return url;
    const file = fileURLToPath(url);
    if (!this.maps.has(file)) {
      const map = `${file}.map`;
      let sm: SourceMap | undefined;
      try {
        if (existsSync(map)) sm = new SourceMap(JSON.parse(readFileSync(map, 'utf8')));
      } catch {
        sm = undefined;
      }
      this.maps.set(file, sm);
    }
    const sm = this.maps.get(file);
    if (!sm || line < 0) return file;
    const e = sm.findEntry(line, Math.max(0, column)) as { originalSource?: string };
    return e?.originalSource ?? file;
  }
}

/** Self time (µs) of each cost in one profile. */
function costsOf(p: CpuProfile, sources: Sources): Map<CostName, number> {
  const byNode = new Map<number, CostName | undefined>();
  for (const n of p.nodes) {
    const f = n.callFrame;
    byNode.set(n.id, costOf(sources.source(f.url, f.lineNumber, f.columnNumber), f.functionName));
  }
  const out = new Map<CostName, number>();
  // sample i lasted until sample i+1 (timeDeltas[i + 1]); the last one until endTime
  for (let i = 0; i < p.samples.length; i++) {
    const cost = byNode.get(p.samples[i]);
    if (!cost) continue;
    const us = i + 1 < p.timeDeltas.length ? p.timeDeltas[i + 1] : 0;
    out.set(cost, (out.get(cost) ?? 0) + Math.max(0, us));
  }
  return out;
}

/**
 * Sum the costs of every `.cpuprofile` in `dir` and divide by `steps`.
 * Throws if `dir` holds none (a profile that was not written is an error, not zero).
 */
export function summarizeProfiles(dir: string, steps: number): ProfileSummary {
  const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'));
  if (files.length === 0) throw new Error(`no .cpuprofile files in ${dir}`);
  const sources = new Sources();
  const total = new Map<CostName, number>();
  for (const f of files) {
    const parsed = CpuProfile.safeParse(JSON.parse(readFileSync(join(dir, f), 'utf8')));
    if (!parsed.success) throw new Error(`${join(dir, f)} is not a V8 CPU profile`);
    for (const [k, v] of costsOf(parsed.data, sources)) total.set(k, (total.get(k) ?? 0) + v);
  }
  const all = [...total.values()].reduce((a, b) => a + b, 0);
  const costs = [...total.entries()]
    .map(([cost, us]) => ({ cost, msPerStep: us / 1000 / steps, share: all > 0 ? us / all : 0 }))
    .sort((a, b) => b.msPerStep - a.msPerStep);
  return { processes: files.length, steps, cpuMsPerStep: all / 1000 / steps, costs };
}
