import { describe, expect, it } from 'vitest';
import { hostPhaseFloorsMs, hostPhases, parseTopology, preset } from '@lockstep/topology';
import { drawSchedule, simulate } from '../src/index.ts';

/** tiny (2 pods x 2 hosts) taking PaLM 540B's modeled times (768-host pods) at timeScale 100: a 150.6 ms step. */
const modeled = parseTopology({ ...preset('tiny'), name: 'tiny-modeled', compute: { modeled: { hostsPerPod: 768 } } });
const floors = hostPhaseFloorsMs(modeled);
const stepMs = hostPhases.reduce((n, p) => n + (floors[p] ?? 0), 0);

// faults are drawn over the run's estimated length (from computeMs): a sixth of the modeled step spreads them over it
const drawn = (seed: number, profile: 'none' | 'all', computeMs: number) =>
  drawSchedule({ seed, profile, topology: modeled, topologyName: 'tiny', steps: 8, computeMs });

describe('lockstep sim with compute: modeled (the phases wait out their modeled times on the simulated clock)', () => {
  it('a fault-free schedule takes at least the modeled time of every step, and commits each to the reference bits', async () => {
    expect(stepMs).toBeCloseTo(150.6, 1);
    const r = await simulate(modeled, drawn(1, 'none', 2));
    expect(r.outcome).toEqual({ kind: 'recovered' });
    expect(r.stepsCommitted).toBe(8);
    // a host's phases never overlap (the next step starts after its all-gather), so 8 steps take 8 modeled steps at least
    expect(r.simulatedMs).toBeGreaterThanOrEqual(8 * stepMs);
    // and the compute the simulator would take alone (2 ms a phase) is far less: the modeled times did the waiting
    expect(r.simulatedMs).toBeLessThan(8 * stepMs * 1.5);
  });

  it('seeded faults of every kind (profile all) still end with every step committed to the reference bits', async () => {
    let fired = 0;
    let retried = 0;
    for (let seed = 1; seed <= 12; seed++) {
      const r = await simulate(modeled, drawn(seed, 'all', stepMs / 6));
      expect(r.outcome, `seed ${seed}`).toEqual({ kind: 'recovered' });
      expect(r.stepsCommitted, `seed ${seed}`).toBe(8);
      fired += r.faultsFired;
      retried += r.retried;
    }
    expect(fired).toBeGreaterThan(12);
    expect(retried).toBeGreaterThan(0);
  }, 120_000);
});
