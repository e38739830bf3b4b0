import { join } from 'node:path';
import type { Logger } from 'pino';
import { parseTopology, preset, type Topology } from '@lockstep/topology';
import { launch, type TrainResult } from './launcher.ts';

/**
 * Parallel asynchronous dispatch in `npm run bench`: `demo` with the small model
 * at depth 1 and depth 2, and with every compute phase held to a fixed time.
 */
export interface DispatchRow {
  depth: number;
  steps: number;
  stepsPerSecond: number;
  /** Wall time per committed step: 1000 / stepsPerSecond. */
  stepMs: number;
  /** Mean time from a step's first dispatch to its commit (deeper, a step is in flight longer than a step takes). */
  latencyMs: number;
  /** stepMs / (critical-path messages x raw NATS one-way p50). */
  controlRatio: number;
  meanStepsInFlight: number;
  /** How long the hosts waited for the controller, per step (mean over hosts). */
  hostsWaitedMs: number;
  paramsHash: string | null;
}

export interface ComputeRow extends DispatchRow {
  fixedMs: number;
  /** The slowest host's forward + backward + update, per step. */
  computeMs: number;
  /** computeMs / stepMs: the fraction of wall time the hosts compute. */
  computeFraction: number;
  /**
   * 1 - hostsWaitedMs / stepMs: the fraction of wall time the hosts do not wait for the controller (they compute, or
   * exchange tensors with each other). The collectives are on every step's path by design (a step computes on the
   * parameters the one before gathered; PaLM does not overlap them), so computeFraction cannot pass
   * compute / (compute + collectives) at any depth; what the depth hides is the controller.
   */
  busyFraction: number;
}

export interface DispatchBench {
  topology: 'demo';
  model: 'small';
  /** demo/small at depth 1 and depth 2. Targets: control ratio <= 3 at depth 1; steps/s at depth 2 >= 2x depth 1. */
  rows: DispatchRow[];
  /** steps/s at depth 2 over depth 1. */
  speedup: number;
  /** The same with forward, backward and update each held to `fixedMs` (the numerics still computed). Target: >= 95% at depth 2. */
  compute: ComputeRow[];
}

function row(r: TrainResult, depth: number, steps: number, perMessageMs: number): DispatchRow {
  const stepMs = r.stepsPerSecond > 0 ? 1000 / r.stepsPerSecond : 0;
  return {
    depth,
    steps,
    stepsPerSecond: r.stepsPerSecond,
    stepMs,
    latencyMs: r.phaseMs.step,
    controlRatio: stepMs / perMessageMs,
    meanStepsInFlight: r.meanStepsInFlight,
    hostsWaitedMs: r.hostsWaitedMs.perStep,
    paramsHash: r.paramsHash,
  };
}

/**
 * Run demo/small at depth 1 (or take `depth1`, a run of it the bench made already) and depth 2, then both again with
 * `compute.fixedMs` = `fixedMs` (default 10). `perMessageMs`: critical-path messages x raw NATS one-way p50.
 */
export async function dispatchBench(opts: {
  dir: string;
  log: Logger;
  steps: number;
  perMessageMs: number;
  fixedMs?: number;
  depth1?: TrainResult;
  onRow?: (line: string) => void;
}): Promise<DispatchBench> {
  const fixedMs = opts.fixedMs ?? 10;
  const demo = (depth: number, compute: Topology['compute'] = 'real') =>
    parseTopology({ ...preset('demo'), dispatch: { depth }, compute }, `demo at depth ${depth}`);
  const run = (t: Topology, name: string) => launch({ topology: t, steps: opts.steps, runDir: join(opts.dir, name), log: opts.log });
  const rows: DispatchRow[] = [];
  for (const depth of [1, 2]) {
    const r = depth === 1 && opts.depth1 ? opts.depth1 : await run(demo(depth), `demo-small-depth${depth}`);
    rows.push(row(r, depth, opts.steps, opts.perMessageMs));
    opts.onRow?.(`demo/small depth ${depth}: ${r.stepsPerSecond.toFixed(2)} steps/s, ${r.meanStepsInFlight.toFixed(2)} in flight`);
  }
  const compute: ComputeRow[] = [];
  for (const depth of [1, 2]) {
    const r = await run(demo(depth, { fixedMs }), `demo-small-fixed${fixedMs}-depth${depth}`);
    const base = row(r, depth, opts.steps, opts.perMessageMs);
    const computeMs = (r.phaseMs.forward ?? 0) + (r.phaseMs.backward ?? 0) + (r.phaseMs.update ?? 0);
    const of = (ms: number) => (base.stepMs > 0 ? ms / base.stepMs : 0);
    compute.push({ ...base, fixedMs, computeMs, computeFraction: of(computeMs), busyFraction: 1 - of(base.hostsWaitedMs) });
    opts.onRow?.(`demo/small depth ${depth}, compute ${fixedMs} ms a phase: computing ${(100 * of(computeMs)).toFixed(1)}% of the time`);
  }
  return { topology: 'demo', model: 'small', rows, speedup: rows[1].stepsPerSecond / rows[0].stepsPerSecond, compute };
}

/** The bench report's section on parallel asynchronous dispatch. */
export function dispatchMarkdown(d: DispatchBench): string[] {
  const f = (x: number, n = 2) => x.toFixed(n);
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  return [
    '',
    '## Parallel asynchronous dispatch (demo, small model)',
    '',
    '| depth | steps/s | step ms (wall / step) | dispatch-to-commit ms | steps in flight (mean) | hosts waited for the controller, ms a step | control ratio |',
    '|---:|---:|---:|---:|---:|---:|---:|',
    ...d.rows.map(
      (r) =>
        `| ${r.depth} | ${f(r.stepsPerSecond)} | ${f(r.stepMs)} | ${f(r.latencyMs)} | ${f(r.meanStepsInFlight)} | ${f(r.hostsWaitedMs)} | ${f(r.controlRatio, 1)} |`,
    ),
    '',
    `Depth 2 over depth 1: ${f(d.speedup)}x the steps a second (target >= 2). Control ratio = wall ms a step / (critical-path messages x one-way p50): target <= 3 at depth 1.`,
    '',
    `With forward, backward and update each held to ${d.compute[0]?.fixedMs ?? '-'} ms (\`compute: { fixedMs }\`: the numerics computed, the rest of the time waited out):`,
    '',
    '| depth | steps/s | step ms | compute ms a step | fraction of wall time computing (target >= 95% at depth 2) | hosts waited for the controller, ms a step | fraction not waiting for the controller |',
    '|---:|---:|---:|---:|---:|---:|---:|',
    ...d.compute.map(
      (r) =>
        `| ${r.depth} | ${f(r.stepsPerSecond)} | ${f(r.stepMs)} | ${f(r.computeMs)} | ${pct(r.computeFraction)} | ${f(r.hostsWaitedMs)} | ${pct(r.busyFraction)} |`,
    ),
    '',
    "Compute ms is the slowest host's forward + backward + update, averaged over steps; the hosts' wait is their own (from preparing a step to the next one's dispatch), averaged over hosts. The three collectives (reduce-scatter, exchange, all-gather) are on every step's path at any depth: a step computes on the parameters the one before gathered.",
  ];
}
