import { z } from 'zod';
import { costModel, type CostModelResult } from './costmodel.ts';
import { hostPhases, type HostPhase, type PhaseTimes } from './messages.ts';
import { costModelInputsOf, fixedComputeMs, isModeled } from './palm.ts';
import type { Topology } from './topology.ts';

/** What of a topology modeled time depends on. */
export type ModeledShape = Pick<Topology, 'pods' | 'hostsPerPod' | 'chipsPerHost' | 'compute' | 'timeScale' | 'exchange'>;

/**
 * The cost model's step for a `compute: modeled` topology (its pods, hosts, chips, overrides and exchange schedule),
 * or undefined for any other compute. Throws a ZodError naming the input when the inputs are inconsistent (a parsed
 * topology never is: `Topology` checks them).
 */
export function modeledStep(t: ModeledShape): CostModelResult | undefined {
  if (!isModeled(t.compute)) return undefined;
  return costModel(costModelInputsOf(t), t.exchange);
}

/**
 * The least wall time (ms) each host phase takes, a phase ending at max(its real work, this):
 * - `compute: modeled`: every phase's cost-model time (seconds) x 1000 / `timeScale`. Forward, backward and update
 *   compute the small real model, then wait out the rest on the run's clock; the collectives (reduce-scatter, exchange,
 *   all-gather) end once every peer's tensor is in and this time has passed since the phase began.
 * - `compute: { fixedMs }`: forward, backward and update each `fixedMs`.
 * - `compute: real`: none (`{}`).
 * Example: palm-540b at timeScale 100 -> { forward: 35.69, backward: 107.06, reduceScatter: 3.34, exchange: 1.13, update: 0.041, allGather: 3.34 } (ms).
 */
export function hostPhaseFloorsMs(t: ModeledShape): PhaseTimes {
  const fixed = fixedComputeMs(t.compute);
  if (fixed !== undefined) return { forward: fixed, backward: fixed, update: fixed };
  const step = modeledStep(t);
  if (!step) return {};
  const out: PhaseTimes = {};
  for (const p of hostPhases) out[p] = (step.phases[p] * 1000) / t.timeScale;
  return out;
}

const seconds = z.number().min(0);
const fraction = z.number().min(0);

/**
 * The `modeled` block of a `compute: modeled` run's summary (`train --json`, summary.json): PaLM's figures in modeled
 * time, from the run's own phase times (see `modeledRun`). Seconds are modeled seconds, fractions fractions, bytes bytes.
 */
export const ModeledRun = z
  .object({
    /** Modeled seconds a step: each phase's measured time converted back (capped at its modeled time) plus `controlMsPerStep`. */
    stepSeconds: seconds,
    /** Tokens of a global batch over `stepSeconds`. */
    tokensPerSecond: z.number().min(0),
    /** Model FLOPs utilization (PaLM Appendix B): tokens/s x (6N + 12 L H Q T) / (all chips x peak FLOP/s). */
    mfu: fraction,
    /** Hardware FLOPs utilization (PaLM Appendix B): the same with rematerialization's FLOPs counted. */
    hfu: fraction,
    /** Bytes a host sends its matching host of each other pod a step (bf16 gradient of its shard). */
    bytesPerHostPair: z.number().min(0),
    /** Every host's cross-pod rate added up over the burst, Tbit/s (0 with one pod). */
    burstTbps: z.number().min(0),
    /** How long the cross-pod transfer took, modeled seconds (the exchange phase; the cost model's whole transfer when overlapped). */
    burstSeconds: seconds,
    /** Throughput over that of one pod with 1/pods of the global batch (weak scaling), the one-pod step derived from this run. */
    twoPodScaling: z.number().min(0),
    /** Real wall ms a step not explained by the scaled modeled phases: the control plane's messages, CPU and waits, unscaled. */
    controlMsPerStep: z.number().min(0),
    /** `controlMsPerStep` over the modeled step. */
    controlFraction: fraction,
    /** Modeled seconds each phase took in the run (its mean wall time for the slowest host, capped at its modeled time, x timeScale). */
    phaseSeconds: z.partialRecord(z.enum(hostPhases), seconds),
    timeScale: z.number(),
    overlapBackward: z.boolean(),
    /** The cost model's own figures for this topology (no control plane): what the run is checked against. */
    predicted: z.object({ stepSeconds: seconds, tokensPerSecond: z.number().min(0), twoPodScaling: z.number().min(0) }).strict(),
  })
  .strict();
export type ModeledRun = z.infer<typeof ModeledRun>;

/** What a run measured: the mean wall ms of the slowest host in each phase, and the wall ms a committed step took (1000 / steps/s). */
export interface MeasuredSteps {
  phaseMs: PhaseTimes;
  wallMsPerStep: number;
}

/**
 * Convert a modeled run's measured times back to modeled time. With F_p the cost model's seconds of phase p, s the
 * time scale, w_p the measured wall ms and W the wall ms a step:
 * - modeled part of phase p, seconds: m_p = min(w_p, 1000 F_p / s) x s / 1000 (a phase cannot end before its modeled
 *   time, so m_p = F_p unless it did: a broken floor shows as a shorter step);
 * - control plane, wall ms a step (unscaled): c = max(0, W - sum_p min(w_p, 1000 F_p / s)): whatever of the step the
 *   scaled phases do not explain (real messaging beyond a collective's modeled time, the controller, CPU contention);
 * - step = sum_p m_p + c / 1000; tokens/s = tokens a step / step; MFU, HFU = tokens/s x model (hardware) FLOPs a
 *   token / (pods x hosts x chips x peak) (PaLM Appendix B);
 * - burst: the exchange's m_p (overlapped: the cost model's whole transfer), at pods x hosts x (pods - 1) x bytes per
 *   pair x 8 / burst seconds;
 * - weak scaling: one pod with 1/pods of the batch does the same work a pod (forward, backward, collectives, update)
 *   and no exchange, so its step is this step without the exchange (its modeled part and its real excess over the
 *   modeled time), and twoPodScaling = pods x one-pod step / step.
 * Returns undefined unless `t` is modeled.
 */
export function modeledRun(t: ModeledShape, measured: MeasuredSteps): ModeledRun | undefined {
  const model = modeledStep(t);
  if (!model) return undefined;
  const m = costModelInputsOf(t);
  const floors = hostPhaseFloorsMs(t);
  const scaled = (p: HostPhase) => Math.min(measured.phaseMs[p] ?? 0, floors[p] ?? 0);
  const phaseSeconds: PhaseTimes = {};
  for (const p of hostPhases) phaseSeconds[p] = (scaled(p) * t.timeScale) / 1000;
  const scaledMs = hostPhases.reduce((n, p) => n + scaled(p), 0);
  const controlMsPerStep = Math.max(0, measured.wallMsPerStep - scaledMs);
  const modeledSeconds = hostPhases.reduce((n, p) => n + (phaseSeconds[p] ?? 0), 0);
  const stepSeconds = modeledSeconds + controlMsPerStep / 1000;
  const tokensPerSecond = stepSeconds > 0 ? model.tokensPerStep / stepSeconds : 0;
  const peakAll = m.pods * m.hostsPerPod * m.chipsPerHost * m.peakFlopsPerChip;
  const burstSeconds = t.exchange.overlapBackward ? model.burstSeconds : (phaseSeconds.exchange ?? 0);
  const burstTbps =
    t.pods > 1 && burstSeconds > 0 ? (m.pods * m.hostsPerPod * (m.pods - 1) * model.bytesPerHostPair * 8) / burstSeconds / 1e12 : 0;
  const exchangeExcessMs = Math.max(0, (measured.phaseMs.exchange ?? 0) - (floors.exchange ?? 0));
  const onePodSeconds = stepSeconds - (phaseSeconds.exchange ?? 0) - Math.min(exchangeExcessMs, controlMsPerStep) / 1000;
  return {
    stepSeconds,
    tokensPerSecond,
    mfu: (tokensPerSecond * model.modelFlopsPerToken) / peakAll,
    hfu: (tokensPerSecond * model.hardwareFlopsPerToken) / peakAll,
    bytesPerHostPair: model.bytesPerHostPair,
    burstTbps,
    burstSeconds,
    twoPodScaling: stepSeconds > 0 ? (t.pods * onePodSeconds) / stepSeconds : 0,
    controlMsPerStep,
    controlFraction: stepSeconds > 0 ? controlMsPerStep / 1000 / stepSeconds : 0,
    phaseSeconds,
    timeScale: t.timeScale,
    overlapBackward: t.exchange.overlapBackward,
    predicted: { stepSeconds: model.stepSeconds, tokensPerSecond: model.tokensPerSecond, twoPodScaling: model.twoPodScaling },
  };
}
