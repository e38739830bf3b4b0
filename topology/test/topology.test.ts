import { describe, expect, it } from 'vitest';
import {
  InvalidTopology,
  MAX_DEADLINE_MS,
  MAX_HEARTBEAT_MS,
  MAX_MISSES,
  MAX_PARAMETERS,
  MAX_TIMER_MS,
  modelPresets,
  parameterCount,
  parseScenarioText,
  parseTopology,
  parseTopologyText,
  preset,
  presetNames,
  timelineProblems,
} from '../src/index.ts';

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

describe('settings that cannot work are refused, naming the field', () => {
  const tiny = () => preset('tiny');
  const problems = (value: unknown) => {
    try {
      parseTopology(value, 't.yaml');
    } catch (e) {
      return (e as InvalidTopology).problems.join('\n');
    }
    return '';
  };

  it('durations past what a Node timer holds (2^31 - 1 ms) are refused: deadlines and the heartbeat interval', () => {
    expect(MAX_TIMER_MS).toBe(2147483647);
    expect(problems({ ...tiny(), deadlines: { ...tiny().deadlines, stepMs: 2 ** 31 } })).toMatch(/deadlines\.stepMs: must be <= 86400000/);
    expect(problems({ ...tiny(), deadlines: { ...tiny().deadlines, startupMs: 3e9 } })).toMatch(/deadlines\.startupMs: must be <= /);
    expect(problems({ ...tiny(), deadlines: { ...tiny().deadlines, phaseMs: 1e12 } })).toMatch(/deadlines\.phaseMs: must be <= /);
    expect(problems({ ...tiny(), heartbeat: { intervalMs: 2 ** 31, misses: 3 } })).toMatch(/heartbeat\.intervalMs: must be <= 60000/);
    // the largest settings the schema takes, and every wait derived from them, stay working timers
    const t = parseTopology({
      ...tiny(),
      deadlines: { startupMs: MAX_DEADLINE_MS, phaseMs: MAX_DEADLINE_MS, stepMs: MAX_DEADLINE_MS },
      heartbeat: { intervalMs: MAX_HEARTBEAT_MS, misses: MAX_MISSES },
      recovery: { maxAttempts: 100, maxResends: 100, maxRestarts: 100 },
    });
    expect(t.deadlines.stepMs + t.deadlines.phaseMs).toBeLessThanOrEqual(MAX_TIMER_MS);
    expect((t.recovery.maxResends + 1) * t.heartbeat.intervalMs).toBeLessThanOrEqual(MAX_TIMER_MS);
    expect(t.heartbeat.intervalMs * t.heartbeat.misses + 4 * t.deadlines.phaseMs).toBeLessThanOrEqual(MAX_TIMER_MS);
  });

  it('misses: 1 (no late beat tolerated) is refused, saying why; 2 is taken', () => {
    expect(problems({ ...tiny(), heartbeat: { intervalMs: 100, misses: 1 } })).toMatch(
      /heartbeat\.misses: must be >= 2 \(with 1, a heartbeat a moment late/,
    );
    expect(parseTopology({ ...tiny(), heartbeat: { intervalMs: 100, misses: 2 } }).heartbeat.misses).toBe(2);
  });

  it('model dimensions, parameter count, globalBatch and maxControlBytes have upper bounds', () => {
    expect(problems({ ...tiny(), model: { inputDim: 1e9, hiddenDim: 4, outputDim: 2 } })).toMatch(/model\.inputDim: must be <= 65536/);
    expect(problems({ ...tiny(), model: { inputDim: 65536, hiddenDim: 65536, outputDim: 8 } })).toMatch(
      new RegExp(`model: must have at most ${MAX_PARAMETERS} parameters`),
    );
    expect(problems({ ...tiny(), training: { ...tiny().training, globalBatch: 2 ** 40 } })).toMatch(
      /training\.globalBatch: must be <= 1048576/,
    );
    // within its own bound, but too many activations for this model
    expect(
      problems({
        ...tiny(),
        model: { inputDim: 4096, hiddenDim: 1024, outputDim: 8 },
        training: { ...tiny().training, globalBatch: 1_048_576 },
      }),
    ).toMatch(/training\.globalBatch: must be <= \d+ with this model/);
    expect(problems({ ...tiny(), wire: { chunkBytes: 4096, maxControlBytes: 2 ** 40 } })).toMatch(
      /wire\.maxControlBytes: must be <= 1000000/,
    );
    // the presets stay inside every bound (large: 4.2M parameters)
    expect(() => parseTopology({ ...tiny(), model: modelPresets.large })).not.toThrow();
  });
});

describe('scenarios: bounds and a timeline that fits the run', () => {
  const scenario = (timeline: string) => `name: s\ntopology: tiny\nsteps: 10\ntimeline:\n${timeline}\nexpect: { outcome: recovers }\n`;

  it('a fault timed at or after the last step is refused, naming the entry', () => {
    expect(() => parseScenarioText(scenario('  - { atStep: 10, action: kill, target: client }'), 's.yaml')).toThrow(
      /timeline\.0\.atStep: must be < steps \(10\): a fault at step 10 never fires/,
    );
    expect(() => parseScenarioText(scenario('  - { atStep: 9, action: kill, target: client }'), 's.yaml')).not.toThrow();
  });

  it('afterMs, latency and steps are bounded', () => {
    expect(() => parseScenarioText(scenario('  - { atStep: 1, afterMs: 3000000000, action: kill, target: client }'), 's.yaml')).toThrow(
      /afterMs: must be <= 86400000/,
    );
    expect(() => parseScenarioText(scenario('  - { atStep: 1, action: latency, value: 99999999, target: dcn }'), 's.yaml')).toThrow(
      /latency must be <= 60000 ms/,
    );
    expect(() => parseScenarioText('name: s\ntopology: tiny\nsteps: 1e12\nexpect: { outcome: recovers }\n', 's.yaml')).toThrow(
      /steps: must be <= 1000000/,
    );
  });

  it('expect.error must be a regular expression that compiles, checked before the scenario runs', () => {
    const failing = (error: string) => `name: s\ntopology: tiny\nsteps: 10\nexpect: { outcome: fails, error: ${JSON.stringify(error)} }\n`;
    expect(() => parseScenarioText(failing('(['), 's.yaml')).toThrow(/expect\.error: must be a regular expression: /);
    expect(() => parseScenarioText(failing('silent for \\d+ ms'), 's.yaml')).not.toThrow();
  });

  it('targets the topology does not have are named: host/9/9 and pod/2 on tiny', () => {
    const s = parseScenarioText(
      scenario(
        '  - { atStep: 1, action: kill, target: host/9/9 }\n  - { atStep: 2, action: kill, target: pod/2 }\n  - { atStep: 3, action: kill, target: host/1/1 }',
      ),
      's.yaml',
    );
    expect(timelineProblems(s, preset('tiny'))).toEqual([
      'timeline[0].target: host/9/9: topology tiny has pods 0..1',
      'timeline[1].target: pod/2: topology tiny has pods 0..1',
    ]);
    expect(timelineProblems({ timeline: [{ ...s.timeline[2], target: 'host/0/2' }] }, preset('tiny'))).toEqual([
      'timeline[0].target: host/0/2: topology tiny has hosts 0..1 in each pod',
    ]);
  });
});
