import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { z } from 'zod';
import { hostPhaseFloorsMs, parseTopology, preset, type Topology } from '@lockstep/topology';
import { hostGroups, launch, type TrainResult } from './launcher.ts';

/**
 * The scaling table of `npm run bench`: 2 pods x H hosts in modeled mode (palm-540b's step: each run host takes the
 * phase times of a host of the modeled 768-host pod, `compute: { modeled: { hostsPerPod: 768 } }`, at timeScale 100,
 * so every row's modeled phases are the same 150.6 ms of wall time and what grows with H is the control plane), the
 * small model, real processes, real NATS. Figures are taken between the commit of step `warm - 1` and the last
 * step's commit, so start-up and the first (slowest) steps are left out of the per-step figures:
 * - NATS messages a step: the pods' nats-servers' `in_msgs` (/varz), summed over the servers, per step;
 * - wall ms a step, and the control plane's part of it: wall ms less the modeled phases' (sum of
 *   `hostPhaseFloorsMs`), as the summary's `controlMsPerStep` (modeled.ts) takes it;
 * - CPU ms a step: user + system time of every role process (/proc/<pid>/stat), per step;
 * - peak RSS of the largest role process (VmHWM, read at the last step's commit);
 * - start-up: from the launch to the first step's commit.
 */
export interface ScaleRow {
  hostsPerPod: number;
  /** The in-pod collectives: `chain` (linear in hosts; palm-540b's) or `direct` (all-to-all; hosts squared tensors). */
  inPod: 'direct' | 'chain';
  hostsPerProcess: number;
  processes: number;
  steps: number;
  /** Steps measured (after the warm-up steps). */
  measuredSteps: number;
  natsMsgsPerStep: number;
  wallMsPerStep: number;
  /** Wall ms a step less the modeled phases' wall ms a step (>= 0): the control plane's real cost. */
  controlMsPerStep: number;
  cpuMsPerStep: number;
  peakRssMiB: number;
  startupMs: number;
  /** NATS messages from the launch to the first step's commit (start-up's handshake, then one step). */
  startupNatsMsgs: number;
  paramsHash: string | null;
  podsIdentical: boolean;
  failure: string | null;
}

/**
 * The topology of one row: palm-540b (its heartbeats, deadlines, modeled step at timeScale 100) with H hosts a pod
 * in its layout (see layoutFor), each taking the modeled 768-host pod's phase times; at H = 768 it is palm-540b.
 */
export function scaleTopology(
  hostsPerPod: number,
  opts: { hostsPerProcess?: number; depth?: number; inPod?: 'direct' | 'chain' } = {},
): Topology {
  const base = preset('palm-540b');
  return parseTopology(
    {
      ...base,
      name: `scale-${hostsPerPod}`,
      hostsPerPod,
      hostsPerProcess: opts.hostsPerProcess ?? layoutFor(hostsPerPod),
      training: { ...base.training, globalBatch: 4 * hostsPerPod },
      compute: { modeled: { hostsPerPod: 768 } },
      dispatch: { depth: opts.depth ?? base.dispatch.depth },
      collectives: { inPod: opts.inPod ?? 'chain' },
    },
    `scale bench, ${hostsPerPod} hosts a pod`,
  );
}

/** Hosts a process for H hosts a pod: four host processes a pod up to 64 hosts a pod (<= 11 processes), then 96 a process (palm-540b's layout). */
export function layoutFor(hostsPerPod: number): number {
  return hostsPerPod <= 64 ? Math.max(1, Math.ceil(hostsPerPod / 4)) : Math.min(hostsPerPod, 96);
}

const Varz = z.object({ in_msgs: z.number().int().min(0), out_msgs: z.number().int().min(0) });

async function inMsgs(monitors: string[]): Promise<number> {
  let n = 0;
  for (const m of monitors) {
    const r = await fetch(`${m}/varz`, { signal: AbortSignal.timeout(5000) });
    n += Varz.parse(await r.json()).in_msgs;
  }
  return n;
}

/** utime + stime of `pid` in ms (0 if it is gone). */
function cpuMs(pid: number): number {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
    // fields 14 and 15 of stat (utime, stime) are rest[11], rest[12], in clock ticks (100 a second on Linux)
    return ((Number(rest[11]) + Number(rest[12])) * 1000) / 100;
  } catch {
    return 0;
  }
}

/** Peak resident set of `pid` in MiB (VmHWM; 0 if it is gone). */
function peakRssMiB(pid: number): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

/** One row: train 2 x `hostsPerPod` for `steps` steps and measure it. */
export async function scaleRow(opts: {
  hostsPerPod: number;
  steps: number;
  warm?: number;
  dir: string;
  log: Logger;
  hostsPerProcess?: number;
  depth?: number;
  inPod?: 'direct' | 'chain';
}): Promise<ScaleRow> {
  const t = scaleTopology(opts.hostsPerPod, opts);
  const modeledMs = Object.values(hostPhaseFloorsMs(t)).reduce((n, ms) => n + (ms ?? 0), 0);
  const warm = Math.min(opts.warm ?? 2, opts.steps - 1);
  const pids: number[] = [];
  let monitors: string[] = [];
  const started = performance.now();
  let firstStepAt = 0;
  let startupMsgs = Number.NaN;
  let mark: { at: number; cpu: number; msgs: number } | undefined;
  let end: { at: number; cpu: number; msgs: number; rss: number } | undefined;
  const cpuAll = () => pids.reduce((s, p) => s + cpuMs(p), 0);
  const pending: Promise<void>[] = [];
  let r: TrainResult | undefined;
  let failure: string | null = null;
  try {
    r = await launch({
      topology: t,
      steps: opts.steps,
      runDir: join(opts.dir, `scale-${opts.hostsPerPod}-${Date.now().toString(36)}`),
      log: opts.log,
      onCluster: ({ plan }) => {
        monitors = plan.servers.filter((s) => s.role === 'pod' && s.monitor).map((s) => s.monitor!);
      },
      onSpawn: (_name, pid) => pids.push(pid),
      onStep: (s) => {
        const at = performance.now();
        if (s.step === 0) {
          firstStepAt = at;
          pending.push(
            inMsgs(monitors).then((msgs) => {
              startupMsgs = msgs;
            }),
          );
        }
        if (s.step === warm - 1 || (warm === 0 && s.step === 0 && !mark)) {
          const cpu = cpuAll();
          pending.push(
            inMsgs(monitors).then((msgs) => {
              mark = { at, cpu, msgs };
            }),
          );
        }
        if (s.step === opts.steps - 1) {
          const cpu = cpuAll();
          const rss = Math.max(0, ...pids.map(peakRssMiB));
          pending.push(
            inMsgs(monitors).then((msgs) => {
              end = { at, cpu, msgs, rss };
            }),
          );
        }
      },
    });
    await Promise.all(pending);
    failure = r.failure ? `${r.failure.kind}: ${r.failure.message}` : null;
  } catch (err) {
    failure = (err as Error).message;
  }
  const measured = opts.steps - warm;
  const per = (a: number, b: number) => (mark && end && measured > 0 ? (b - a) / measured : Number.NaN);
  return {
    hostsPerPod: opts.hostsPerPod,
    inPod: t.collectives.inPod,
    hostsPerProcess: t.hostsPerProcess,
    processes: hostGroups(t).length + t.pods + 1,
    steps: opts.steps,
    measuredSteps: measured,
    natsMsgsPerStep: per(mark?.msgs ?? 0, end?.msgs ?? 0),
    wallMsPerStep: per(mark?.at ?? 0, end?.at ?? 0),
    controlMsPerStep: Math.max(0, per(mark?.at ?? 0, end?.at ?? 0) - modeledMs),
    cpuMsPerStep: per(mark?.cpu ?? 0, end?.cpu ?? 0),
    peakRssMiB: end?.rss ?? Number.NaN,
    startupMs: firstStepAt > 0 ? firstStepAt - started : Number.NaN,
    startupNatsMsgs: startupMsgs,
    paramsHash: r?.paramsHash ?? null,
    podsIdentical: r?.podsIdenticalEveryStep ?? false,
    failure,
  };
}

export interface ScaleBench {
  rows: ScaleRow[];
  /** Cost growth between the two largest rows that ran, over the growth in hosts (1: linear; the hosts' ratio: quadratic). */
  cpuGrowthOverHosts: number | null;
  msgsGrowthOverHosts: number | null;
  /** palm-540b's (768 hosts a pod) control-plane wall ms a step, and whether it is under the 1 s target. */
  palmControlMsPerStep: number | null;
  palmUnderOneSecond: boolean | null;
}

/** Pods of up to this many hosts are also measured with `direct` collectives (beyond, a step of them takes minutes). */
export const DIRECT_ROWS_MAX_HOSTS = 256;

/**
 * Every row in turn (one at a time: the machine has 2 cores): each size with `chain` collectives (palm-540b's), and
 * sizes up to DIRECT_ROWS_MAX_HOSTS also with `direct` ones, for comparison. Growth and the palm figure are the chain's.
 */
export async function scaleBench(opts: {
  sizes: number[];
  steps: (hostsPerPod: number) => number;
  dir: string;
  log: Logger;
  onRow?: (r: ScaleRow) => void;
}): Promise<ScaleBench> {
  const rows: ScaleRow[] = [];
  for (const h of opts.sizes) {
    for (const inPod of h <= DIRECT_ROWS_MAX_HOSTS ? (['chain', 'direct'] as const) : (['chain'] as const)) {
      const row = await scaleRow({ hostsPerPod: h, steps: opts.steps(h), dir: opts.dir, log: opts.log, inPod });
      rows.push(row);
      opts.onRow?.(row);
    }
  }
  const ok = rows.filter((r) => r.inPod === 'chain' && r.failure === null && Number.isFinite(r.cpuMsPerStep));
  // between the two largest rows that ran (small rows are mostly fixed costs): the cost's growth over the hosts'
  const growth = (f: (r: ScaleRow) => number) =>
    ok.length >= 2 ? f(ok.at(-1)!) / f(ok.at(-2)!) / (ok.at(-1)!.hostsPerPod / ok.at(-2)!.hostsPerPod) : null;
  const palm = ok.find((r) => r.hostsPerPod === 768);
  return {
    rows,
    cpuGrowthOverHosts: growth((r) => r.cpuMsPerStep),
    msgsGrowthOverHosts: growth((r) => r.natsMsgsPerStep),
    palmControlMsPerStep: palm?.controlMsPerStep ?? null,
    palmUnderOneSecond: palm ? palm.controlMsPerStep < 1000 : null,
  };
}

/** The table in the bench's Markdown. */
export function scaleMarkdown(s: ScaleBench): string {
  const f = (x: number, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : '-');
  const lines = [
    '| hosts (2 pods x H) | in-pod collectives | hosts a process | processes | steps (measured) | NATS msgs / step | wall ms / step | control-plane ms / step | CPU ms / step | peak RSS MiB (largest) | start-up to first step, ms | NATS msgs to first step | pods identical | failure |',
    '|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|',
    ...s.rows.map(
      (r) =>
        `| 2 x ${r.hostsPerPod} | ${r.inPod ?? 'direct'} | ${r.hostsPerProcess} | ${r.processes} | ${r.steps} (${r.measuredSteps}) | ${f(r.natsMsgsPerStep, 0)} | ${f(r.wallMsPerStep)} | ${f(r.controlMsPerStep)} | ${f(r.cpuMsPerStep)} | ${f(r.peakRssMiB, 0)} | ${f(r.startupMs, 0)} | ${f(r.startupNatsMsgs, 0)} | ${r.podsIdentical ? 'yes' : 'no'} | ${r.failure ?? ''} |`,
    ),
  ];
  return lines.join('\n');
}
