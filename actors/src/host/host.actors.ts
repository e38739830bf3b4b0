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
  type SampleRange,
  type Task,
  type UpdateResult,
} from '@lockstep/topology';

/**
 * The host's compute, as invoked actors: each runs one phase's arithmetic from topology/.
 * Each first yields to the event loop, so the heartbeat that says "computing" leaves before
 * the computation holds the thread.
 */
const yieldFirst = () => new Promise<void>((resolve) => setImmediate(resolve));

export const forwardPass = fromPromise<
  Activations,
  { model: ModelSpec; params: Float32Array; task: Task; step: number; samples: SampleRange; globalBatch: number }
>(async ({ input }) => {
  await yieldFirst();
  return forward(input.model, input.params, input.task, input.step, input.samples, input.globalBatch);
});

export const backwardPass = fromPromise<Float32Array, { model: ModelSpec; params: Float32Array; acts: Activations; globalBatch: number }>(
  async ({ input }) => {
    await yieldFirst();
    return backward(input.model, input.params, input.acts, input.globalBatch);
  },
);

/** Sum the pods' gradients for this shard in pod order, then apply the optimizer. Never mutates its inputs. */
export const applyUpdate = fromPromise<
  UpdateResult,
  { optimizer: OptimizerSpec; step: number; shard: Float32Array; state: OptimizerState; podGrads: Float32Array[] }
>(async ({ input }) => {
  await yieldFirst();
  return applyOptimizer(input.optimizer, input.step, input.shard, input.state, reduceInOrder(input.podGrads));
});
