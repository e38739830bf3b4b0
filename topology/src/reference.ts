import { Task, hostSamples, podSamples } from './data.ts';
import { combineShardHashes, shardHash } from './hash.ts';
import { backward, forward, initParams } from './model.ts';
import { reduceInOrder, shardRanges } from './numerics.ts';
import { applyOptimizer, initOptimizerState, type OptimizerState } from './optimizer.ts';
import type { Topology } from './topology.ts';

/**
 * Training in one process with exactly the arithmetic of the distributed run:
 * per-host gradients, in-pod reduction of each shard in host order, cross-pod
 * sum in pod order, the same optimizer per shard. The distributed run's
 * `paramsHash` must equal this one's, bit for bit.
 */
export interface ReferenceStep {
  step: number;
  loss: number;
  paramsHash: string;
}

export class ReferenceTrainer {
  readonly task: Task;
  params: Float32Array;
  private states: OptimizerState[];
  private readonly ranges;
  step = 0;

  constructor(readonly topology: Topology) {
    this.task = new Task(topology.model, topology.training.seed);
    this.params = initParams(topology.model, topology.training.seed);
    this.ranges = shardRanges(this.params.length, topology.hostsPerPod);
    this.states = this.ranges.map((r) => initOptimizerState(topology.training.optimizer, r.end - r.start));
  }

  paramsHash(): string {
    return combineShardHashes(this.ranges.map((r) => shardHash(this.params.subarray(r.start, r.end))));
  }

  /** Run one step and return its loss (summed in host order within a pod, then pod order). */
  runStep(): ReferenceStep {
    const t = this.topology;
    const B = t.training.globalBatch;
    const podShardGrads: Float32Array[][] = []; // [pod][shard]
    let loss = 0;
    for (let p = 0; p < t.pods; p++) {
      const range = podSamples(B, t.pods, p);
      const hostGrads: Float32Array[] = [];
      let podLoss = 0;
      for (let h = 0; h < t.hostsPerPod; h++) {
        const acts = forward(t.model, this.params, this.task, this.step, hostSamples(range, t.hostsPerPod, h), B);
        podLoss += acts.lossSum;
        hostGrads.push(backward(t.model, this.params, acts, B));
      }
      loss += podLoss;
      podShardGrads.push(this.ranges.map((r) => reduceInOrder(hostGrads.map((g) => g.subarray(r.start, r.end)))));
    }
    const next = new Float32Array(this.params.length);
    this.ranges.forEach((r, s) => {
      const grad = reduceInOrder(podShardGrads.map((pod) => pod[s]));
      const res = applyOptimizer(t.training.optimizer, this.step, this.params.subarray(r.start, r.end), this.states[s], grad);
      next.set(res.params, r.start);
      this.states[s] = res.state;
    });
    this.params = next;
    const result = { step: this.step, loss, paramsHash: this.paramsHash() };
    this.step += 1;
    return result;
  }
}
