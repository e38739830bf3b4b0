import { describe, expect, it } from 'vitest';
import { parseTopology, preset, type TopologyInput } from '@lockstep/topology';
import { launch, runReference } from '../src/index.ts';
import { quietLog, tempDir } from './helpers.ts';

const STEP_KINDS = ['step.dispatch', 'host.dispatch', 'host.prepared', 'pod.prepared', 'step.commit', 'host.commit', 'host.committed', 'pod.committed', 'grad.slice', 'grad.exchange', 'param.shard'];

function faulty(rules: unknown[], extra: Partial<TopologyInput> = {}) {
  return parseTopology({
    ...preset('tiny'),
    deadlines: { startupMs: 60_000, phaseMs: 800, stepMs: 4_000 },
    heartbeat: { intervalMs: 200, misses: 3 },
    recovery: { maxAttempts: 12, maxResends: 10 },
    faults: { seed: 11, rules },
    ...extra,
  });
}

describe('seeded message faults on a live run', () => {
  it('duplicated, delayed and reordered messages change nothing: the run matches the reference', async () => {
    const t = faulty([
      { action: 'duplicate', probability: 0.2 },
      { action: 'reorder', probability: 0.2 },
      { action: 'delay', probability: 0.1, delayMs: 30 },
    ]);
    const r = await launch({ topology: t, steps: 25, runDir: tempDir(), log: quietLog });
    expect(r.faultsInjected).toBeGreaterThan(50);
    expect(r.duplicates).toBeGreaterThan(0);
    expect(r.paramsHash).toBe(runReference(t, 25).paramsHash);
    expect(r.podsIdenticalEveryStep).toBe(true);
  });

  it('lost messages and corrupted chunks: attempts are retried, commits resent, and the run still matches the reference', async () => {
    const t = faulty([
      { action: 'drop', probability: 0.01, kinds: STEP_KINDS },
      { action: 'corrupt', probability: 0.05, kinds: ['grad.exchange'] },
    ]);
    const r = await launch({ topology: t, steps: 20, runDir: tempDir(), log: quietLog });
    expect(r.faultsInjected).toBeGreaterThan(0);
    expect(r.rejected.checksum).toBeGreaterThan(0);
    expect(r.retried.length).toBeGreaterThan(0);
    expect(r.steps).toBe(20);
    expect(r.paramsHash).toBe(runReference(t, 20).paramsHash);
    expect(r.podsIdenticalEveryStep).toBe(true);
  });
});
