import { createHash } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describeOutcome, drawSchedule, simulate, type SimOptions, type SimResult } from '@lockstep/actors';
import { preset, type SimProfile, type PresetName, type SimSchedule } from '@lockstep/topology';

/** The profiles `every` rotates through, one per seed. */
export const rotatedProfiles = ['messages', 'crashes', 'partitions', 'all'] as const satisfies readonly SimProfile[];
export type SimProfileArg = SimProfile | 'every';

/** The profile seed `seed` runs under: itself, or for `every` the rotation's. */
export function profileFor(arg: SimProfileArg, seed: number): SimProfile {
  return arg === 'every' ? rotatedProfiles[seed % rotatedProfiles.length] : arg;
}

export interface SimPlan {
  topology: PresetName;
  steps: number;
  profile: SimProfileArg;
  seeds: number[];
  computeMs: number;
  workers: number;
  /** Steps the client keeps in flight; absent: the preset's `dispatch.depth`. */
  dispatchDepth?: number;
  /** The in-pod collectives (`direct` or `chain`); absent: the preset's `collectives.inPod`. */
  inPod?: 'direct' | 'chain';
}

/** What one schedule of a batch came to (a SimResult without its trace). */
export type SimLine = Omit<SimResult, 'trace'> & { profile: SimProfile };

export interface SimSummary {
  topology: string;
  steps: number;
  dispatchDepth: number;
  inPod: 'direct' | 'chain';
  profile: SimProfileArg;
  schedules: number;
  outcomes: Record<SimResult['outcome']['kind'], number>;
  failed: { seed: number; profile: SimProfile; failure: string }[];
  wallSeconds: number;
  schedulesPerMinute: number;
  simulatedSeconds: number;
  simulatedSecondsPerWallSecond: number;
  events: number;
  /** SHA-256 over every schedule's events hash, in seed order: the same seeds give the same hash. */
  eventsHash: string;
  retried: number;
  restarts: number;
  restores: number;
  workers: number;
}

/** The schedule of seed `seed` in a plan. */
export function scheduleFor(
  plan: Pick<SimPlan, 'topology' | 'steps' | 'profile' | 'computeMs' | 'dispatchDepth' | 'inPod'>,
  seed: number,
): SimSchedule {
  const t = preset(plan.topology);
  const s = drawSchedule({
    seed,
    profile: profileFor(plan.profile, seed),
    topology: t,
    topologyName: plan.topology,
    steps: plan.steps,
    computeMs: plan.computeMs,
  });
  // the schedule says the depth and collectives it ran with, so that it replays the same whatever the preset's defaults become
  return { ...s, dispatchDepth: plan.dispatchDepth ?? t.dispatch.depth, inPod: plan.inPod ?? t.collectives.inPod };
}

/** Run one schedule of a plan in this thread. */
export async function runOne(schedule: SimSchedule, opts: SimOptions = {}): Promise<SimResult> {
  return simulate(preset(schedule.topology as PresetName), schedule, opts);
}

/**
 * Run every seed of a plan, spread over `workers` worker processes (each runs whole
 * schedules; results come back in any order and are reported in seed order).
 */
export async function runPlan(plan: SimPlan, onResult?: (r: SimLine, done: number) => void): Promise<{ lines: SimLine[]; wallMs: number }> {
  const began = performance.now();
  const lines: SimLine[] = [];
  const record = (r: SimLine) => {
    lines.push(r);
    onResult?.(r, lines.length);
  };
  const workers = Math.max(1, Math.min(plan.workers, plan.seeds.length));
  if (workers === 1) {
    for (const seed of plan.seeds) {
      const { trace: _, ...r } = await runOne(scheduleFor(plan, seed));
      record({ ...r, profile: profileFor(plan.profile, seed) });
    }
  } else {
    const queue = [...plan.seeds];
    await Promise.all(
      Array.from({ length: workers }, async () => {
        // A worker is a process of its own, so it takes V8 flags of its own: garbage collection on the worker's own
        // thread (two workers on two cores: V8's parallel collector threads only contend with the other worker;
        // 917 -> 1104 schedules a minute for 400 seeds with the flag on the whole process, 2026-11-30), and a
        // larger young generation (a schedule allocates a snapshot per machine event). It ends when its channel
        // to this process closes, however this process ends.
        const w = fork(fileURLToPath(new URL('../bin/sim-worker.js', import.meta.url)), [JSON.stringify(plan)], {
          execArgv: ['--single-threaded-gc', '--max-semi-space-size=32'],
          stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
        });
        const exited = new Promise<never>((_, reject) =>
          w.once('exit', (code, signal) => reject(new Error(`a sim worker exited (${signal ?? `code ${code}`})`))),
        );
        exited.catch(() => {});
        try {
          for (;;) {
            const seed = queue.shift();
            if (seed === undefined) break;
            const r = await Promise.race([
              new Promise<SimLine>((resolve) => {
                w.once('message', (m) => resolve(m as SimLine));
                w.send(seed);
              }),
              exited,
            ]);
            record(r);
          }
        } finally {
          w.kill();
        }
      }),
    );
  }
  lines.sort((a, b) => a.seed - b.seed);
  return { lines, wallMs: performance.now() - began };
}

/** Whether a schedule's outcome is a failure lockstep must not have: anything but recovering. */
export const isFailure = (r: Pick<SimResult, 'outcome'>) => r.outcome.kind !== 'recovered';

export function summarize(plan: SimPlan, lines: SimLine[], wallMs: number): SimSummary {
  const outcomes = { recovered: 0, failed: 0, violation: 0, hang: 0 };
  for (const l of lines) outcomes[l.outcome.kind]++;
  const simulatedMs = lines.reduce((n, l) => n + l.simulatedMs, 0);
  const h = createHash('sha256');
  for (const l of lines) h.update(l.eventsHash);
  const wallSeconds = wallMs / 1000;
  return {
    topology: plan.topology,
    steps: plan.steps,
    dispatchDepth: plan.dispatchDepth ?? preset(plan.topology).dispatch.depth,
    inPod: plan.inPod ?? preset(plan.topology).collectives.inPod,
    profile: plan.profile,
    schedules: lines.length,
    outcomes,
    failed: lines.filter(isFailure).map((l) => ({ seed: l.seed, profile: l.profile, failure: describeOutcome(l.outcome) })),
    wallSeconds,
    schedulesPerMinute: wallSeconds > 0 ? (lines.length / wallSeconds) * 60 : 0,
    simulatedSeconds: simulatedMs / 1000,
    simulatedSecondsPerWallSecond: wallSeconds > 0 ? simulatedMs / 1000 / wallSeconds : 0,
    events: lines.reduce((n, l) => n + l.events, 0),
    eventsHash: h.digest('hex'),
    retried: lines.reduce((n, l) => n + l.retried, 0),
    restarts: lines.reduce((n, l) => n + l.restarts, 0),
    restores: lines.reduce((n, l) => n + l.restores, 0),
    workers: Math.max(1, Math.min(plan.workers, plan.seeds.length)),
  };
}

/** How a schedule failed, for shrinking: the outcome's kind, with the failure's kind or the invariant broken. */
function failureWay(o: SimResult['outcome']): string {
  return o.kind === 'failed' ? `failed/${o.failure}` : o.kind === 'violation' ? `violation/${o.invariant}` : o.kind;
}

/**
 * Shrink a failing schedule the way property-based testing shrinks a
 * counterexample: drop faults one at a time, zero the message-fault rates,
 * cut the steps, keep every change after which it still fails the same way
 * (the same outcome, and the same failure kind or broken invariant), until nothing more can go. At most `budget` runs.
 */
export async function shrink(
  schedule: SimSchedule,
  opts: SimOptions & { budget?: number; onTry?: (s: SimSchedule, fails: boolean) => void } = {},
): Promise<{ schedule: SimSchedule; result: SimResult; tries: number }> {
  const topology = preset(schedule.topology as PresetName);
  let best = schedule;
  let bestResult = await simulate(topology, best, opts);
  const way = failureWay(bestResult.outcome);
  if (bestResult.outcome.kind === 'recovered') return { schedule, result: bestResult, tries: 1 };
  let tries = 1;
  const budget = opts.budget ?? 60;
  const attempt = async (candidate: SimSchedule): Promise<boolean> => {
    if (tries >= budget) return false;
    tries++;
    const r = await simulate(topology, candidate, opts);
    const fails = failureWay(r.outcome) === way;
    opts.onTry?.(candidate, fails);
    if (fails) {
      best = candidate;
      bestResult = r;
    }
    return fails;
  };
  let progress = true;
  while (progress && tries < budget) {
    progress = false;
    for (let i = best.faults.length - 1; i >= 0; i--) {
      if (await attempt({ ...best, faults: best.faults.filter((_, j) => j !== i) })) progress = true;
    }
    for (const k of ['drop', 'duplicate', 'delay'] as const) {
      if (best.net[k] > 0 && (await attempt({ ...best, net: { ...best.net, [k]: 0 } }))) progress = true;
    }
    if (best.faultsUntilMs > 0 && best.net.drop + best.net.duplicate + best.net.delay === 0) {
      if (await attempt({ ...best, faultsUntilMs: 0 })) progress = true;
    }
    for (const steps of [1, Math.ceil(best.steps / 2), best.steps - 1]) {
      if (steps >= 1 && steps < best.steps && (await attempt({ ...best, steps }))) {
        progress = true;
        break;
      }
    }
  }
  return { schedule: best, result: bestResult, tries };
}

export function defaultWorkers(): number {
  return Math.max(1, Math.min(4, availableParallelism()));
}
