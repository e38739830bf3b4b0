import type { OptimizerSpec } from './topology.ts';

/**
 * Optimizer state for one shard: Adam keeps [m, v], momentum SGD keeps [velocity].
 * An update never mutates its inputs: it returns the new shard and state, so a
 * host keeps the old ones until the step commits (and restores them on abort).
 */
export type OptimizerState = Float32Array[];

export function initOptimizerState(spec: OptimizerSpec, length: number): OptimizerState {
  return spec.kind === 'adam' ? [new Float32Array(length), new Float32Array(length)] : [new Float32Array(length)];
}

export interface UpdateResult {
  params: Float32Array;
  state: OptimizerState;
}

/** Apply one optimizer step (t = step + 1) to a shard. */
export function applyOptimizer(
  spec: OptimizerSpec,
  step: number,
  params: Float32Array,
  state: OptimizerState,
  grad: Float32Array,
): UpdateResult {
  const n = params.length;
  if (grad.length !== n) throw new Error(`applyOptimizer: gradient has ${grad.length} elements, shard has ${n}`);
  const out = new Float32Array(n);
  if (spec.kind === 'adam') {
    const [m0, v0] = state;
    const m = new Float32Array(n);
    const v = new Float32Array(n);
    const t = step + 1;
    const c1 = 1 - spec.beta1 ** t;
    const c2 = 1 - spec.beta2 ** t;
    for (let i = 0; i < n; i++) {
      const g = grad[i];
      m[i] = spec.beta1 * m0[i] + (1 - spec.beta1) * g;
      v[i] = spec.beta2 * v0[i] + (1 - spec.beta2) * g * g;
      out[i] = params[i] - (spec.lr * (m[i] / c1)) / (Math.sqrt(v[i] / c2) + spec.eps);
    }
    return { params: out, state: [m, v] };
  }
  const [vel0] = state;
  const vel = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    vel[i] = spec.momentum * vel0[i] + grad[i];
    out[i] = params[i] - spec.lr * vel[i];
  }
  return { params: out, state: [vel] };
}
