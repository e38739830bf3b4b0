import { fillUniform, Stream } from './prng.ts';
import { parameterCount, type ModelSpec } from './topology.ts';
import type { SampleRange, Task } from './data.ts';

/**
 * The MLP y = W2 tanh(W1 x + b1) + b2 with loss 0.5 |y - t|^2 / globalBatch,
 * on one flat Float32Array laid out [W1 (hidden x input), b1, W2 (output x hidden), b2].
 * Every sum runs in a fixed order (samples ascending, then indices ascending),
 * accumulated in float64 and stored as float32, so the result is bitwise the
 * same in any process.
 */
export interface Layout {
  w1: number;
  b1: number;
  w2: number;
  b2: number;
  size: number;
}

export function layout(m: ModelSpec): Layout {
  const w1 = 0;
  const b1 = w1 + m.hiddenDim * m.inputDim;
  const w2 = b1 + m.hiddenDim;
  const b2 = w2 + m.outputDim * m.hiddenDim;
  return { w1, b1, w2, b2, size: parameterCount(m) };
}

/** Seeded initial parameters: uniform in +-1/sqrt(fan_in), biases zero. */
export function initParams(m: ModelSpec, seed: number): Float32Array {
  const l = layout(m);
  const p = new Float32Array(l.size);
  fillUniform(p.subarray(l.w1, l.b1), 1 / Math.sqrt(m.inputDim), seed, Stream.init, 1, 0);
  fillUniform(p.subarray(l.w2, l.b2), 1 / Math.sqrt(m.hiddenDim), seed, Stream.init, 2, 0);
  return p;
}

/** What forward keeps for backward: per sample input, target, hidden activations and output. */
export interface Activations {
  step: number;
  samples: SampleRange;
  inputs: Float32Array[];
  targets: Float32Array[];
  hidden: Float32Array[];
  outputs: Float32Array[];
  /** Sum over this range of 0.5 |y - t|^2 / globalBatch (float64, in sample order). */
  lossSum: number;
}

export function forward(
  m: ModelSpec,
  params: Float32Array,
  task: Task,
  step: number,
  samples: SampleRange,
  globalBatch: number,
): Activations {
  const l = layout(m);
  const { inputDim, hiddenDim, outputDim } = m;
  const acts: Activations = { step, samples, inputs: [], targets: [], hidden: [], outputs: [], lossSum: 0 };
  for (let i = samples.start; i < samples.end; i++) {
    const x = task.input(step, i);
    const t = task.target(x);
    const h = new Float32Array(hiddenDim);
    for (let j = 0; j < hiddenDim; j++) {
      let a = params[l.b1 + j];
      const row = l.w1 + j * inputDim;
      for (let k = 0; k < inputDim; k++) a += params[row + k] * x[k];
      h[j] = Math.tanh(a);
    }
    const y = new Float32Array(outputDim);
    let loss = 0;
    for (let o = 0; o < outputDim; o++) {
      let a = params[l.b2 + o];
      const row = l.w2 + o * hiddenDim;
      for (let j = 0; j < hiddenDim; j++) a += params[row + j] * h[j];
      y[o] = a;
      const d = y[o] - t[o];
      loss += d * d;
    }
    acts.lossSum += (0.5 * loss) / globalBatch;
    acts.inputs.push(x);
    acts.targets.push(t);
    acts.hidden.push(h);
    acts.outputs.push(y);
  }
  return acts;
}

/** Gradient of the loss summed over the forward's samples, in sample order, as float32. */
export function backward(m: ModelSpec, params: Float32Array, acts: Activations, globalBatch: number): Float32Array {
  const l = layout(m);
  const { inputDim, hiddenDim, outputDim } = m;
  const g = new Float32Array(l.size);
  const dy = new Float64Array(outputDim);
  const da = new Float64Array(hiddenDim);
  for (let s = 0; s < acts.inputs.length; s++) {
    const x = acts.inputs[s];
    const h = acts.hidden[s];
    const y = acts.outputs[s];
    const t = acts.targets[s];
    for (let o = 0; o < outputDim; o++) dy[o] = (y[o] - t[o]) / globalBatch;
    for (let o = 0; o < outputDim; o++) {
      const row = l.w2 + o * hiddenDim;
      const d = dy[o];
      for (let j = 0; j < hiddenDim; j++) g[row + j] += d * h[j];
      g[l.b2 + o] += d;
    }
    for (let j = 0; j < hiddenDim; j++) {
      let dh = 0;
      for (let o = 0; o < outputDim; o++) dh += params[l.w2 + o * hiddenDim + j] * dy[o];
      da[j] = dh * (1 - h[j] * h[j]);
    }
    for (let j = 0; j < hiddenDim; j++) {
      const row = l.w1 + j * inputDim;
      const d = da[j];
      for (let k = 0; k < inputDim; k++) g[row + k] += d * x[k];
      g[l.b1 + j] += d;
    }
  }
  return g;
}
