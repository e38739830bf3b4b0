import { describe, expect, it } from 'vitest';
import { Task, hostSamples, initParams, podSamples, preset } from '@lockstep/topology';
import { computeFor } from '../src/host/host.actors.ts';
import { ComputeMemo } from '../src/sim/memo.ts';

describe("the simulator's compute memo", () => {
  const t = preset('tiny');
  const params = initParams(t.model, t.training.seed);
  const task = new Task(t.model, t.training.seed);
  const samples = hostSamples(podSamples(t.training.globalBatch, t.pods, 0), t.hostsPerPod, 1);
  const input = (p: Float32Array, step = 3) => ({ model: t.model, params: p, task, step, samples, globalBatch: t.training.globalBatch });

  it('gives the bits the computation gives, and recomputes when one parameter bit differs', () => {
    const memo = new ComputeMemo();
    const acts = memo.forwardPass(input(params.slice()));
    const again = memo.forwardPass(input(params.slice())); // equal bits, another array: a hit
    expect(again).toBe(acts);
    expect(memo.hits).toBe(1);
    const grad = memo.backwardPass({ model: t.model, params: params.slice(), acts, globalBatch: t.training.globalBatch });
    const want = computeFor.backwardPass({
      model: t.model,
      params,
      acts: computeFor.forwardPass(input(params)),
      globalBatch: t.training.globalBatch,
    });
    expect(Buffer.from(grad.buffer).equals(Buffer.from(want.buffer))).toBe(true);

    const flipped = params.slice();
    new Uint32Array(flipped.buffer)[7] ^= 1;
    const other = memo.forwardPass(input(flipped));
    expect(other).not.toBe(acts);
    expect(memo.misses).toBe(3); // the first forward, the first backward, the flipped forward
    expect(memo.forwardPass(input(params.slice(), 4))).not.toBe(acts); // another step: another batch
  });

  it('hands out a gradient the host may change without changing what it remembers', () => {
    const memo = new ComputeMemo();
    const acts = memo.forwardPass(input(params));
    const b = { model: t.model, params, acts, globalBatch: t.training.globalBatch };
    const first = memo.backwardPass(b);
    const kept = first.slice();
    first.fill(0);
    expect(Buffer.from(memo.backwardPass(b).buffer).equals(Buffer.from(kept.buffer))).toBe(true);
  });
});
