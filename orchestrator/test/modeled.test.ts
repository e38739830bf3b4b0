import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { costModel, costModelInputsOf, type HostPhase, hostPhaseFloorsMs, hostPhases, ModeledRun, parseTopology } from '@lockstep/topology';
import { loadTopology, runReference } from '../src/index.ts';
import { cli, tempDir } from './helpers.ts';

const file = join(import.meta.dirname, '..', '..', 'topologies', 'palm-540b-8.yaml');

/** `lockstep train` on a topology file (human output), its summary.json, and the reference of the same topology. */
function train(topologyFile: string, steps: number, timeoutMs = 170_000) {
  const runDir = join(tempDir(), 'run');
  const r = cli(['train', '-t', topologyFile, '-s', String(steps), '--run-dir', runDir], { timeoutMs });
  expect(r.code, r.stderr).toBe(0);
  const summary = JSON.parse(readFileSync(join(runDir, 'summary.json'), 'utf8'));
  const t = loadTopology(topologyFile);
  // every host's every phase of every step lasted at least its modeled time (steps.jsonl: each host's ms, to the µs)
  const floors = hostPhaseFloorsMs(t);
  const lines = readFileSync(join(runDir, 'steps.jsonl'), 'utf8').trim().split('\n');
  expect(lines).toHaveLength(steps);
  for (const line of lines) {
    const step = JSON.parse(line) as { step: number; hosts: Record<string, Partial<Record<HostPhase, number>>> };
    expect(Object.keys(step.hosts)).toHaveLength(t.pods * t.hostsPerPod);
    for (const [host, phases] of Object.entries(step.hosts)) {
      expect(Object.keys(phases).sort(), `step ${step.step} ${host}`).toEqual([...hostPhases].sort());
      for (const [p, ms] of Object.entries(phases))
        expect(ms, `step ${step.step} ${host} ${p}`).toBeGreaterThanOrEqual((floors[p as HostPhase] ?? 0) - 0.001);
    }
  }
  return { runDir, stdout: r.stdout, summary, modeled: ModeledRun.parse(summary.modeled), ref: runReference(t, steps) };
}

describe('compute: modeled, with real processes (PaLM 540B modeled on 2 pods x 4 run hosts)', () => {
  it("each phase takes the cost model's time; the summary's modeled block comes from the run, and the bits stay the reference's", () => {
    const t = loadTopology(file);
    const model = costModel(costModelInputsOf(t), t.exchange);
    const { runDir, stdout, summary, modeled, ref } = train(file, 8);
    expect(summary.paramsHash).toBe(ref.paramsHash);
    expect(summary.podsIdenticalEveryStep).toBe(true);
    // no phase ended before its modeled time (a floor that did not hold shows as less; capped above at the model's)
    for (const p of hostPhases) expect(modeled.phaseSeconds[p]).toBeGreaterThanOrEqual(model.phases[p] * 0.999);
    // the step: the modeled phases plus the control plane's real (unscaled) cost, which is there and small beside 15 s
    expect(modeled.controlMsPerStep).toBeGreaterThan(0);
    expect(modeled.stepSeconds).toBeCloseTo(model.stepSeconds + modeled.controlMsPerStep / 1000, 6);
    expect(modeled.controlFraction).toBeCloseTo(modeled.controlMsPerStep / 1000 / modeled.stepSeconds, 9);
    expect(modeled.stepSeconds).toBeLessThan(2 * model.stepSeconds);
    expect(modeled.predicted.stepSeconds).toBe(model.stepSeconds);
    // figures of the modeled system (768 hosts a pod), not of the run's 4
    expect(modeled.bytesPerHostPair).toBe(model.bytesPerHostPair);
    expect(modeled.tokensPerSecond).toBeCloseTo(model.tokensPerStep / modeled.stepSeconds, 3);
    expect(modeled.mfu).toBeLessThanOrEqual(model.mfu);
    expect(modeled.mfu).toBeGreaterThan(model.mfu / 2);
    expect(modeled.hfu / modeled.mfu).toBeCloseTo(model.hfu / model.mfu, 9);
    expect(modeled.burstTbps).toBeCloseTo(model.burstTbps, 6);
    expect(modeled.twoPodScaling).toBeGreaterThan(1);
    expect(modeled.twoPodScaling).toBeLessThanOrEqual(model.twoPodScaling + 1e-9);
    expect(modeled.timeScale).toBe(100);
    // the human summary says the same
    expect(stdout).toMatch(/modeled step \(cost model\)\s+\d+\.\d{3} s \(15\.060 s; timeScale 100\)/);
    expect(stdout).toMatch(/modeled MFU \/ HFU\s+\d+\.\d% \/ \d+\.\d%/);
    expect(stdout).toMatch(/two-pod scaling \(weak\)\s+1\.\d{3}x \(cost model 1\.985x\)/);
    expect(stdout).toMatch(/control plane \(real, unscaled\)\s+\d+\.\d ms a step/);
    // lockstep status reads it back from summary.json
    const status = cli(['status', runDir]);
    expect(status.code).toBe(0);
    expect(status.stdout).toContain(`modeled step      ${modeled.stepSeconds.toFixed(3)} s`);
    expect(cli(['status', runDir, '--json']).json?.modeled).toEqual(modeled);
  }, 180_000);

  it('exchange: { overlapBackward: true } gives the shorter overlapped step, and the same bits', () => {
    const over = join(tempDir(), 'palm-540b-8-overlap.yaml');
    writeFileSync(over, `${readFileSync(file, 'utf8')}name: palm-540b-8-overlap\nexchange: { overlapBackward: true }\n`);
    const t = loadTopology(over);
    expect(t.exchange.overlapBackward).toBe(true);
    const plain = costModel(costModelInputsOf(parseTopology({ ...t, exchange: { overlapBackward: false } })), { overlapBackward: false });
    const model = costModel(costModelInputsOf(t), t.exchange);
    const { summary, modeled, ref } = train(over, 6);
    expect(summary.paramsHash).toBe(ref.paramsHash);
    expect(modeled.overlapBackward).toBe(true);
    for (const p of hostPhases) expect(modeled.phaseSeconds[p]).toBeGreaterThanOrEqual(model.phases[p] * 0.999);
    expect(modeled.stepSeconds - modeled.controlMsPerStep / 1000).toBeCloseTo(model.stepSeconds, 6);
    expect(model.stepSeconds).toBeLessThan(plain.stepSeconds);
    expect(modeled.burstSeconds).toBeCloseTo(model.burstSeconds, 9);
  }, 180_000);

  it('a collective lasts its modeled time even when its tensors are in sooner (slower ICI and DCN modeled)', () => {
    // ICI at 1/20 and 2 Gbit/s of DCN a host: reduce-scatter and all-gather 6.7 s modeled (67 ms of wall time at
    // timeScale 100), the exchange 5.6 s (56 ms): longer than the messaging of 2 pods x 4 hosts takes here
    const slow = join(tempDir(), 'palm-540b-8-slow-collectives.yaml');
    writeFileSync(
      slow,
      readFileSync(file, 'utf8').replace(
        'compute: { modeled: { hostsPerPod: 768 } }',
        'name: palm-540b-8-slow-collectives\ncompute: { modeled: { hostsPerPod: 768, iciBytesPerSecondPerChip: 13.43e9, dcnGbitPerHost: 2 } }',
      ),
    );
    const t = loadTopology(slow);
    const model = costModel(costModelInputsOf(t), t.exchange);
    expect(model.phases.reduceScatter).toBeGreaterThan(6);
    expect(model.phases.exchange).toBeGreaterThan(5);
    const { summary, modeled, ref } = train(slow, 5);
    expect(summary.paramsHash).toBe(ref.paramsHash);
    for (const p of hostPhases) expect(modeled.phaseSeconds[p]).toBeGreaterThanOrEqual(model.phases[p] * 0.999);
    expect(modeled.stepSeconds - modeled.controlMsPerStep / 1000).toBeCloseTo(model.stepSeconds, 6);
    expect(modeled.burstSeconds).toBeCloseTo(model.burstSeconds, 9);
  }, 180_000);
});

describe('palm-540b at full scale: 2 pods x 768 host actors, 96 to a process, chain collectives, real processes', () => {
  it("trains to the reference's bits with the pods identical, nothing rejected, every host's every phase at least its modeled time", () => {
    const { summary, modeled, ref } = train('palm-540b', 3, 400_000);
    expect(summary.paramsHash).toBe(ref.paramsHash);
    expect(summary.podsIdenticalEveryStep).toBe(true);
    expect(summary.processes).toBe(19);
    expect(summary.rejectedTotal).toBe(0);
    expect(summary.duplicates).toBe(0);
    expect(summary.retried).toEqual([]);
    // the control plane's real cost a step is there, unscaled, beside the modeled phases
    expect(modeled.controlMsPerStep).toBeGreaterThan(0);
    expect(modeled.twoPodScaling).toBeGreaterThan(1);
    expect(modeled.twoPodScaling).toBeLessThan(2);
  }, 420_000);
});
