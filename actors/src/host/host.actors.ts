import { fromPromise } from 'xstate';
import {
  applyOptimizer,
  backward,
  forward,
  reduceInOrder,
  type Activations,
  type ModelSpec,
  type OptimizerSpec,
  type OptimizerState,
  type PhaseTimes,
  type SampleRange,
  type Task,
  type UpdateResult,
} from '@lockstep/topology';
import type { RunClock, Timed } from '../clock.ts';

export type ForwardInput = { model: ModelSpec; params: Float32Array; task: Task; step: number; samples: SampleRange; globalBatch: number };
export type BackwardInput = { model: ModelSpec; params: Float32Array; acts: Activations; globalBatch: number };
export type UpdateInput = { optimizer: OptimizerSpec; step: number; shard: Float32Array; state: OptimizerState; podGrads: Float32Array[] };

/** One phase's arithmetic, from topology/: the same in a real run and in the simulator. */
export const computeFor = {
  forwardPass: (i: ForwardInput): Activations => forward(i.model, i.params, i.task, i.step, i.samples, i.globalBatch),
  backwardPass: (i: BackwardInput): Float32Array => backward(i.model, i.params, i.acts, i.globalBatch),
  /** Sum the pods' gradients for this shard in pod order, then apply the optimizer. Never mutates its inputs. */
  applyUpdate: (i: UpdateInput): UpdateResult => applyOptimizer(i.optimizer, i.step, i.shard, i.state, reduceInOrder(i.podGrads)),
};

/**
 * The host's compute as invoked actors for a real run: each first yields to
 * the event loop (so what the host sent on entering the phase leaves before the
 * computation holds the thread), computes, and says when it finished.
 * `floorMs` (the topology's `hostPhaseFloorsMs`: `compute: { fixedMs }` or
 * `compute: modeled`) is the least time each phase takes: a compute phase
 * computes the real numerics, then waits out the rest on `clock` (without
 * holding the thread); `phaseFloor` is a collective's modeled time, waited
 * out on `clock` (the machine ends the collective once its tensors are in and
 * this has ended; with no floor it never ends, and the machine does not wait
 * for it).
 */
export function hostCompute(clock: RunClock, floorMs: PhaseTimes = {}) {
  const yieldFirst = () => new Promise<void>((resolve) => setImmediate(resolve));
  const timed =
    <I, O>(f: (i: I) => O, least: number | undefined) =>
    async ({ input }: { input: I }): Promise<Timed<O>> => {
      const began = clock.now();
      await yieldFirst();
      const value = f(input);
      if (least !== undefined && least > 0) await untilTime(clock, began + least);
      return { value, at: clock.now() };
    };
  return {
    forwardPass: fromPromise(timed(computeFor.forwardPass, floorMs.forward)),
    backwardPass: fromPromise(timed(computeFor.backwardPass, floorMs.backward)),
    applyUpdate: fromPromise(timed(computeFor.applyUpdate, floorMs.update)),
    phaseFloor: phaseFloorOn(clock),
  };
}

/** The `phaseFloor` actor on `clock`: resolves `ms` after it starts, saying when; with `ms` 0, never (nothing to wait for). */
export function phaseFloorOn(clock: RunClock) {
  return fromPromise<Timed<void>, { ms: number }>(async ({ input }) => {
    if (!(input.ms > 0)) return new Promise<never>(() => {});
    await untilTime(clock, clock.now() + input.ms);
    return { value: undefined, at: clock.now() };
  });
}

/**
 * Resolves once `clock.now()` >= `at` (ms). Node arms a timer from the event loop's cached time, which can be
 * behind `now()` by what the loop did since, so a timer alone can end a wait early: it is armed again for the rest.
 */
export function untilTime(clock: RunClock, at: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const check = () => {
      const left = at - clock.now();
      if (left <= 0) resolve();
      else clock.setTimeout(check, left);
    };
    check();
  });
}
