import { describe, expect, it } from 'vitest';
import { InvalidTopology, parameterCount, parseTopology, parseTopologyText, preset, presetNames } from '../src/index.ts';

describe('topology', () => {
  it('presets are valid: tiny 2x2, demo 2x4, palm-540b 2x768x4', () => {
    expect(presetNames).toEqual(['tiny', 'demo', 'palm-540b']);
    expect([preset('tiny').pods, preset('tiny').hostsPerPod]).toEqual([2, 2]);
    expect([preset('demo').pods, preset('demo').hostsPerPod]).toEqual([2, 4]);
    const palm = preset('palm-540b');
    expect([palm.pods, palm.hostsPerPod, palm.chipsPerHost, palm.pods * palm.hostsPerPod * palm.chipsPerHost]).toEqual([2, 768, 4, 6144]);
  });

  it('fills defaults for wire and deadlines', () => {
    const t = parseTopologyText(
      'name: x\npods: 1\nhostsPerPod: 2\nmodel: {inputDim: 4, hiddenDim: 4, outputDim: 2}\ntraining: {seed: 1, globalBatch: 4, optimizer: {kind: momentum, lr: 0.1}}\n',
      'x.yaml',
    );
    expect(t.wire.chunkBytes).toBe(512 * 1024);
    expect(t.deadlines.phaseMs).toBe(30_000);
    expect(t.hostsPerProcess).toBe(1);
    expect(t.training.optimizer).toEqual({ kind: 'momentum', lr: 0.1, momentum: 0.9 });
  });

  it('names the field and the reason: pods: must be >= 1', () => {
    const bad = { ...preset('demo'), pods: 0 };
    expect(() => parseTopology(bad, 'bad.yaml')).toThrow(InvalidTopology);
    expect(() => parseTopology(bad, 'bad.yaml')).toThrow(/pods: must be >= 1/);
  });

  it('rejects a global batch that does not split evenly over every host', () => {
    const bad = { ...preset('demo'), training: { ...preset('demo').training, globalBatch: 60 } };
    expect(() => parseTopology(bad)).toThrow(/training\.globalBatch: must be divisible by pods x hostsPerPod \(2 x 4 = 8\); got 60/);
  });

  it('rejects unknown fields and wrong types, each with its path', () => {
    try {
      parseTopology({ ...preset('tiny'), podz: 3, model: { inputDim: 'x', hiddenDim: 4, outputDim: 2 } });
      expect.unreachable();
    } catch (e) {
      const problems = (e as InvalidTopology).problems.join('\n');
      expect(problems).toMatch(/model\.inputDim: /);
      expect(problems).toMatch(/podz/);
    }
  });

  it('reports YAML that does not parse', () => {
    expect(() => parseTopologyText('pods: [1,', 'broken.yaml')).toThrow(/broken\.yaml[\s\S]*not valid YAML/);
  });

  it('counts parameters of the MLP', () => {
    expect(parameterCount({ inputDim: 32, hiddenDim: 64, outputDim: 8 })).toBe(32 * 64 + 64 + 8 * 64 + 8);
    // the large model's gradient exceeds NATS's 1 MiB max payload many times (>= 16 MiB)
    expect(parameterCount({ inputDim: 512, hiddenDim: 4096, outputDim: 512 }) * 4).toBeGreaterThanOrEqual(16 * 1024 * 1024);
  });
});
