import { fillUniform, Stream } from './prng.ts';
import type { ModelSpec } from './topology.ts';

/**
 * The synthetic task. Sample i of step s has input x(seed, s, i), uniform in
 * [-1, 1), and target tanh(T x) for a fixed teacher matrix T drawn from the
 * seed. The batch of a step depends only on (seed, step): a replayed step
 * sees the same bits.
 */
export class Task {
  readonly teacher: Float32Array;
  constructor(
    readonly model: ModelSpec,
    readonly seed: number,
  ) {
    this.teacher = fillUniform(
      new Float32Array(model.outputDim * model.inputDim),
      Math.sqrt(3 / model.inputDim),
      seed,
      Stream.teacher,
      0,
      0,
    );
  }

  input(step: number, index: number, out = new Float32Array(this.model.inputDim)): Float32Array {
    return fillUniform(out, 1, this.seed, Stream.input, step, index);
  }

  target(x: Float32Array, out = new Float32Array(this.model.outputDim)): Float32Array {
    const { inputDim, outputDim } = this.model;
    const T = this.teacher;
    for (let o = 0; o < outputDim; o++) {
      let a = 0;
      const row = o * inputDim;
      for (let k = 0; k < inputDim; k++) a += T[row + k] * x[k];
      out[o] = Math.tanh(a);
    }
    return out;
  }
}

/** A half-open range of global sample indices within a step's batch. */
export interface SampleRange {
  start: number;
  end: number;
}

/** The samples pod p gets of a global batch: the client's even split. */
export function podSamples(globalBatch: number, pods: number, pod: number): SampleRange {
  const per = globalBatch / pods;
  return { start: pod * per, end: (pod + 1) * per };
}

/** The samples host h gets of its pod's range: the pod's even split. */
export function hostSamples(range: SampleRange, hosts: number, host: number): SampleRange {
  const per = (range.end - range.start) / hosts;
  return { start: range.start + host * per, end: range.start + (host + 1) * per };
}
