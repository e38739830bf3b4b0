import { describe, expect, it } from 'vitest';
import { Task, backward, forward, hostSamples, initParams, layout, podSamples } from '../src/index.ts';

const model = { inputDim: 5, hiddenDim: 7, outputDim: 3 };

describe('model', () => {
  it('backward matches a finite-difference gradient of forward', () => {
    const task = new Task(model, 7);
    const params = initParams(model, 7);
    const samples = { start: 0, end: 4 };
    const g = backward(model, params, forward(model, params, task, 0, samples, 4), 4);
    const loss = (p: Float32Array) => forward(model, p, task, 0, samples, 4).lossSum;
    const l = layout(model);
    for (const i of [l.w1, l.w1 + 9, l.b1 + 2, l.w2 + 4, l.b2 + 1]) {
      const up = Float32Array.from(params);
      const down = Float32Array.from(params);
      const h = 1e-2;
      up[i] += h;
      down[i] -= h;
      const numeric = (loss(up) - loss(down)) / (up[i] - down[i]);
      expect(Math.abs(numeric - g[i])).toBeLessThan(1e-3 + 1e-2 * Math.abs(numeric));
    }
  });

  it('is bitwise deterministic: the same inputs give the same bits', () => {
    const task = new Task(model, 3);
    const p = initParams(model, 3);
    const a = backward(model, p, forward(model, p, task, 5, { start: 8, end: 16 }, 32), 32);
    const b = backward(model, p, forward(model, p, new Task(model, 3), 5, { start: 8, end: 16 }, 32), 32);
    expect(Buffer.from(a.buffer).equals(Buffer.from(b.buffer))).toBe(true);
  });

  it('the batch of a step depends only on (seed, step)', () => {
    const t = new Task(model, 9);
    expect([...t.input(3, 2)]).toEqual([...new Task(model, 9).input(3, 2)]);
    expect([...t.input(3, 2)]).not.toEqual([...t.input(4, 2)]);
    expect([...t.input(3, 2)]).not.toEqual([...new Task(model, 10).input(3, 2)]);
  });

  it('splits a global batch evenly: pods, then hosts', () => {
    expect(podSamples(64, 2, 1)).toEqual({ start: 32, end: 64 });
    expect(hostSamples({ start: 32, end: 64 }, 4, 3)).toEqual({ start: 56, end: 64 });
  });
});
