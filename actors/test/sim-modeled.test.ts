import { describe, expect, it } from 'vitest';
import { hostPhaseFloorsMs, hostPhases, parseTopology, preset } from '@lockstep/topology';
import { drawSchedule, simulate, stepEstimateMs } from '../src/index.ts';

/** tiny (2 pods x 2 hosts) taking PaLM 540B's modeled times (768-host pods) at timeScale 100: a 150.6 ms step. */
const modeled = parseTopology({ ...preset('tiny'), name: 'tiny-modeled', compute: { modeled: { hostsPerPod: 768 } } });
const floors = hostPhaseFloorsMs(modeled);
const stepMs = hostPhases.reduce((n, p) => n + (floors[p] ?? 0), 0);

const drawn = (seed: number, profile: 'none' | 'all') =>
  drawSchedule({ seed, profile, topology: modeled, topologyName: 'tiny', steps: 8, computeMs: 2 });

describe('lockstep sim with compute: modeled (the phases wait out their modeled times on the simulated clock)', () => {
  it('a fault-free schedule takes at least the modeled time of every step, and commits each to the reference bits', async () => {
    expect(stepMs).toBeCloseTo(150.6, 1);
    const r = await simulate(modeled, drawn(1, 'none'));
    expect(r.outcome).toEqual({ kind: 'recovered' });
    expect(r.stepsCommitted).toBe(8);
    // a host's phases never overlap (the next step starts after its all-gather), so 8 steps take 8 modeled steps at least
    expect(r.simulatedMs).toBeGreaterThanOrEqual(8 * stepMs);
    // and the compute the simulator would take alone (2 ms a phase) is far less: the modeled times did the waiting
    expect(r.simulatedMs).toBeLessThan(8 * stepMs * 1.5);
  });

  it('seeded faults of every kind (profile all), drawn over the modeled run, still end with every step committed to the reference bits', async () => {
    // the faults fall within the first 80% of the modeled run, not of a run of 2 ms phases
    expect(stepEstimateMs(modeled, 2)).toBeGreaterThan(stepMs);
    expect(Math.max(...Array.from({ length: 12 }, (_, i) => drawn(i + 1, 'all').faults.map((f) => f.at)).flat())).toBeGreaterThan(
      4 * stepMs,
    );
    let fired = 0;
    let retried = 0;
    for (let seed = 1; seed <= 12; seed++) {
      const r = await simulate(modeled, drawn(seed, 'all'));
      expect(r.outcome, `seed ${seed}`).toEqual({ kind: 'recovered' });
      expect(r.stepsCommitted, `seed ${seed}`).toBe(8);
      fired += r.faultsFired;
      retried += r.retried;
    }
    expect(fired).toBeGreaterThan(12);
    expect(retried).toBeGreaterThan(0);
  }, 120_000);
});
