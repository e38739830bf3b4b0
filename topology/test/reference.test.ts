import { describe, expect, it } from 'vitest';
import { ReferenceTrainer, parseTopology, preset } from '../src/index.ts';

describe('reference trainer', () => {
  it('learns: loss falls by more than 5x over 60 steps on tiny', () => {
    const r = new ReferenceTrainer(preset('tiny'));
    const first = r.runStep().loss;
    let last = first;
    for (let i = 1; i < 60; i++) last = r.runStep().loss;
    expect(last).toBeLessThan(first / 5);
  });

  it('is reproducible: two runs give the same hash at every step', () => {
    const a = new ReferenceTrainer(preset('tiny'));
    const b = new ReferenceTrainer(preset('tiny'));
    for (let i = 0; i < 10; i++) expect(a.runStep().paramsHash).toBe(b.runStep().paramsHash);
  });

  it('depends on the seed and on the reduction layout (hosts per pod)', () => {
    const base = preset('tiny');
    const h = (t: typeof base) => {
      const r = new ReferenceTrainer(t);
      for (let i = 0; i < 5; i++) r.runStep();
      return r.paramsHash();
    };
    expect(h(base)).not.toBe(h(parseTopology({ ...base, training: { ...base.training, seed: 43 } })));
    expect(h(base)).not.toBe(h(parseTopology({ ...base, hostsPerPod: 4 })));
  });

  it('works with momentum SGD and with one pod', () => {
    const t = parseTopology({
      ...preset('tiny'),
      pods: 1,
      training: { seed: 1, globalBatch: 16, optimizer: { kind: 'momentum', lr: 0.05 } },
    });
    const r = new ReferenceTrainer(t);
    const first = r.runStep().loss;
    let last = first;
    for (let i = 1; i < 40; i++) last = r.runStep().loss;
    expect(last).toBeLessThan(first);
  });
});
