import { describe, expect, it } from 'vitest';
import {
  costModel,
  costModelInputsOf,
  hostPhaseFloorsMs,
  hostPhases,
  InvalidTopology,
  ModeledRun,
  modeledRun,
  modeledStep,
  parseTopology,
  preset,
  type PhaseTimes,
} from '../src/index.ts';

const palm = preset('palm-540b');
/** PaLM's modeled pod on 2 x 4 run hosts (topologies/palm-540b-8.yaml). */
const palm8 = parseTopology({
  ...palm,
  name: 'palm-540b-8',
  hostsPerPod: 4,
  hostsPerProcess: 4,
  training: { ...palm.training, globalBatch: 64 },
  compute: { modeled: { hostsPerPod: 768 } },
});
const sum = (p: PhaseTimes) => hostPhases.reduce((n, k) => n + (p[k] ?? 0), 0);

describe('modeled phase times (the least wall time each host phase takes)', () => {
  it('are the cost model phases over timeScale: palm-540b at 100 runs its 15.06 s step in about 0.15 s', () => {
    const model = costModel(costModelInputsOf(palm), { overlapBackward: false });
    const floors = hostPhaseFloorsMs(palm);
    for (const p of hostPhases) expect(floors[p]).toBeCloseTo((model.phases[p] * 1000) / 100, 9);
    expect(sum(floors)).toBeCloseTo(150.6, 1);
    // half the scale, twice the wall time
    const slow = hostPhaseFloorsMs(parseTopology({ ...palm, timeScale: 50 }));
    for (const p of hostPhases) expect(slow[p]).toBeCloseTo(2 * (floors[p] ?? 0), 9);
  });

  it('a run with fewer hosts than the modeled pod takes the modeled pod times (compute: { modeled: { hostsPerPod } })', () => {
    expect(hostPhaseFloorsMs(palm8)).toEqual(hostPhaseFloorsMs(palm));
    expect(modeledStep(palm8)?.bytesPerHostPair).toBe(modeledStep(palm)?.bytesPerHostPair);
    // without the override, 4 hosts of 4 chips are the modeled pod: a much longer step
    const tiny = parseTopology({ ...palm8, compute: 'modeled', deadlines: { startupMs: 60_000, phaseMs: 86_400_000, stepMs: 86_400_000 } });
    expect(sum(hostPhaseFloorsMs(tiny))).toBeGreaterThan(100 * sum(hostPhaseFloorsMs(palm)));
  });

  it('fixedMs holds forward, backward and update; real compute has none', () => {
    expect(hostPhaseFloorsMs(parseTopology({ ...preset('demo'), compute: { fixedMs: 10 } }))).toEqual({
      forward: 10,
      backward: 10,
      update: 10,
    });
    expect(hostPhaseFloorsMs(preset('demo'))).toEqual({});
    expect(modeledStep(preset('demo'))).toBeUndefined();
  });

  it('overlapBackward shortens the modeled step: reduce-scatter and exchange hide behind backward', () => {
    const over = parseTopology({ ...palm, exchange: { overlapBackward: true } });
    expect(sum(hostPhaseFloorsMs(over))).toBeLessThan(sum(hostPhaseFloorsMs(palm)));
    expect(hostPhaseFloorsMs(over).exchange).toBeLessThan((hostPhaseFloorsMs(palm).exchange ?? 0) / 10);
  });

  it('timeScale is bounded, and one that stretches a phase past its deadline is an error naming timeScale', () => {
    expect(() => parseTopology({ ...palm, timeScale: 0.5 })).toThrow(/timeScale: must be >= 1/);
    expect(() => parseTopology({ ...palm, timeScale: 2e6 })).toThrow(/timeScale: must be <= 1000000/);
    expect(() => parseTopology({ ...palm, timeScale: 'fast' })).toThrow(InvalidTopology);
    // backward is 10.7 s modeled: at timeScale 1 it takes 10.7 s of wall time, over a 5 s phase deadline
    expect(() => parseTopology({ ...palm, timeScale: 1, deadlines: { startupMs: 60_000, phaseMs: 5_000, stepMs: 120_000 } })).toThrow(
      /timeScale: too small: backward takes 10706 ms of wall time at timeScale 1, not under deadlines.phaseMs \(5000\)/,
    );
    // two steps in flight of 15.06 s each do not fit a 20 s step deadline
    expect(() => parseTopology({ ...palm, timeScale: 1, deadlines: { startupMs: 60_000, phaseMs: 30_000, stepMs: 20_000 } })).toThrow(
      /timeScale: too small: 2 step\(s\) in flight take 30120 ms/,
    );
    expect(() => parseTopology({ ...palm, exchange: { overlapBackward: 'yes' } })).toThrow(
      /exchange.overlapBackward: must be true or false/,
    );
  });
});

describe('modeledRun: a run measured in wall time, converted back to modeled time', () => {
  const model = costModel(costModelInputsOf(palm), { overlapBackward: false });
  const floors = hostPhaseFloorsMs(palm);

  it('phases that took exactly their modeled time and no control cost give the cost model figures', () => {
    const r = modeledRun(palm, { phaseMs: floors, wallMsPerStep: sum(floors) })!;
    expect(ModeledRun.parse(r)).toEqual(r);
    expect(r.stepSeconds).toBeCloseTo(model.stepSeconds, 9);
    expect(r.tokensPerSecond).toBeCloseTo(model.tokensPerSecond, 3);
    expect(r.mfu).toBeCloseTo(model.mfu, 9);
    expect(r.hfu).toBeCloseTo(model.hfu, 9);
    expect(r.twoPodScaling).toBeCloseTo(model.twoPodScaling, 9);
    expect(r.burstSeconds).toBeCloseTo(model.burstSeconds, 9);
    expect(r.burstTbps).toBeCloseTo(model.burstTbps, 6);
    expect(r.bytesPerHostPair).toBe(model.bytesPerHostPair);
    expect(r.controlMsPerStep).toBe(0);
    expect(r.predicted).toEqual({
      stepSeconds: model.stepSeconds,
      tokensPerSecond: model.tokensPerSecond,
      twoPodScaling: model.twoPodScaling,
    });
  });

  it('wall time the scaled phases do not explain is the control plane, counted unscaled', () => {
    // 50 ms of real wall time a step outside the phases: 50 ms of the modeled step, not 50 x 100
    const r = modeledRun(palm, { phaseMs: floors, wallMsPerStep: sum(floors) + 50 })!;
    expect(r.controlMsPerStep).toBeCloseTo(50, 9);
    expect(r.stepSeconds).toBeCloseTo(model.stepSeconds + 0.05, 9);
    expect(r.controlFraction).toBeCloseTo(0.05 / (model.stepSeconds + 0.05), 9);
    expect(r.tokensPerSecond).toBeCloseTo(model.tokensPerStep / (model.stepSeconds + 0.05), 3);
    // one pod pays the same control cost: scaling = 2 x (step - exchange) / step
    expect(r.twoPodScaling).toBeCloseTo((2 * (r.stepSeconds - model.phases.exchange)) / r.stepSeconds, 9);
  });

  it("a collective's real time past its modeled time is control cost; the one-pod step has no exchange, real or modeled", () => {
    // the exchange took 20 ms of wall time where 1.13 ms was modeled (NATS on loopback, not the DCN at 100x)
    const phaseMs = { ...floors, exchange: 20 };
    const excess = 20 - (floors.exchange ?? 0);
    const r = modeledRun(palm, { phaseMs, wallMsPerStep: sum(phaseMs) })!;
    expect(r.controlMsPerStep).toBeCloseTo(excess, 9);
    expect(r.phaseSeconds.exchange).toBeCloseTo(model.phases.exchange, 9);
    expect(r.stepSeconds).toBeCloseTo(model.stepSeconds + excess / 1000, 9);
    const onePod = model.stepSeconds - model.phases.exchange;
    expect(r.twoPodScaling).toBeCloseTo((2 * onePod) / r.stepSeconds, 9);
    expect(r.twoPodScaling).toBeLessThan(model.twoPodScaling);
  });

  it('a phase that ended before its modeled time shows as a shorter step (the floor did not hold)', () => {
    const phaseMs = { ...floors, backward: (floors.backward ?? 0) / 2 };
    const r = modeledRun(palm, { phaseMs, wallMsPerStep: sum(phaseMs) })!;
    expect(r.phaseSeconds.backward).toBeCloseTo(model.phases.backward / 2, 9);
    expect(r.stepSeconds).toBeCloseTo(model.stepSeconds - model.phases.backward / 2, 9);
  });

  it('overlapped: the burst is the whole transfer, not the exposed exchange', () => {
    const over = parseTopology({ ...palm, exchange: { overlapBackward: true } });
    const m = costModel(costModelInputsOf(over), { overlapBackward: true });
    const f = hostPhaseFloorsMs(over);
    const r = modeledRun(over, { phaseMs: f, wallMsPerStep: sum(f) })!;
    expect(r.overlapBackward).toBe(true);
    expect(r.burstSeconds).toBeCloseTo(m.burstSeconds, 9);
    expect(r.stepSeconds).toBeCloseTo(m.stepSeconds, 9);
    expect(r.stepSeconds).toBeLessThan(model.stepSeconds);
    expect(r.twoPodScaling).toBeGreaterThan(model.twoPodScaling);
  });

  it('a run on fewer hosts gives the full system figures; a run that is not modeled gives none', () => {
    const f = hostPhaseFloorsMs(palm8);
    const r = modeledRun(palm8, { phaseMs: f, wallMsPerStep: sum(f) })!;
    expect(r.mfu).toBeCloseTo(model.mfu, 9);
    expect(r.burstTbps).toBeCloseTo(model.burstTbps, 6);
    expect(modeledRun(preset('demo'), { phaseMs: {}, wallMsPerStep: 10 })).toBeUndefined();
  });
});
