import { describe, expect, it } from 'vitest';
import { FaultSpec } from '@lockstep/topology';
import { FaultPlan } from '../src/index.ts';

const plan = (rules: unknown[], role: 'client' | 'pod' | 'host' = 'host', seed = 7) =>
  new FaultPlan(FaultSpec.parse({ seed, rules }), role);

describe('fault plan', () => {
  it('hits a message by (seed, rule, message id) only: the same scenario injects the same faults', () => {
    const a = plan([{ action: 'drop', probability: 0.3 }]);
    const b = plan([{ action: 'drop', probability: 0.3 }]);
    const ids = Array.from({ length: 2000 }, (_, i) => `host/0/1/host.prepared/${i}/0`);
    const hitsA = ids.map((msgId) => a.decide({ kind: 'host.prepared', step: 1, msgId }).length);
    expect(ids.map((msgId) => b.decide({ kind: 'host.prepared', step: 1, msgId }).length)).toEqual(hitsA);
    const n = hitsA.reduce((x, y) => x + y, 0);
    expect(n).toBeGreaterThan(500); // about 30% of 2000
    expect(n).toBeLessThan(700);
    const other = plan([{ action: 'drop', probability: 0.3 }], 'host', 8);
    expect(ids.map((msgId) => other.decide({ kind: 'host.prepared', step: 1, msgId }).length)).not.toEqual(hitsA);
  });

  it('filters by kind, sender role and step range', () => {
    const p = plan([{ action: 'duplicate', probability: 1, kinds: ['grad.exchange'], from: 'host', steps: { from: 2, to: 3 } }]);
    expect(p.decide({ kind: 'grad.exchange', step: 2, msgId: 'x' })).toEqual([{ action: 'duplicate', delayMs: 50 }]);
    expect(p.decide({ kind: 'grad.slice', step: 2, msgId: 'x' })).toEqual([]);
    expect(p.decide({ kind: 'grad.exchange', step: 4, msgId: 'x' })).toEqual([]);
    expect(plan([{ action: 'drop', probability: 1, from: 'pod' }], 'host').decide({ kind: 'host.prepared', step: 0, msgId: 'x' })).toEqual(
      [],
    );
  });

  it('filters by protocol phase and by subject pattern', () => {
    const byPhase = plan([{ action: 'drop', probability: 1, phases: ['exchange', 'commit'] }]);
    expect(byPhase.decide({ kind: 'grad.exchange', step: 1, msgId: 'x' }).length).toBe(1);
    expect(byPhase.decide({ kind: 'host.committed', step: 1, msgId: 'x' }).length).toBe(1);
    expect(byPhase.decide({ kind: 'grad.slice', step: 1, msgId: 'x' }).length).toBe(0);
    expect(byPhase.decide({ kind: 'host.prepared', step: 1, msgId: 'x' }).length).toBe(0);
    const bySubject = plan([{ action: 'drop', probability: 1, subjects: ['lockstep.*.host.1.*.data.>', 'lockstep.r.pod.>'] }]);
    expect(bySubject.decide({ kind: 'grad.exchange', step: 1, msgId: 'x', subject: 'lockstep.r.host.1.0.data.0.0' }).length).toBe(1);
    expect(bySubject.decide({ kind: 'grad.exchange', step: 1, msgId: 'x', subject: 'lockstep.r.host.0.0.data.1.0' }).length).toBe(0);
    expect(bySubject.decide({ kind: 'host.prepared', step: 1, msgId: 'x', subject: 'lockstep.r.pod.0.report.1' }).length).toBe(1);
    expect(bySubject.decide({ kind: 'step.commit', step: 1, msgId: 'x', subject: 'lockstep.r.pod' }).length).toBe(0); // '>' needs a token
    expect(() => FaultSpec.parse({ rules: [{ action: 'drop', probability: 1, phases: ['backward'] }] })).toThrow(/Invalid option/);
  });

  it('corrupt and forge are for tensor kinds only, and probabilities stay in [0, 1]', () => {
    expect(() => FaultSpec.parse({ rules: [{ action: 'corrupt', probability: 0.1, kinds: ['host.prepared'] }] })).toThrow(
      /corrupt applies to tensor kinds only/,
    );
    expect(() => FaultSpec.parse({ rules: [{ action: 'forge', probability: 0.1, kinds: ['grad.slice', 'step.commit'] }] })).toThrow(
      /forge applies to tensor kinds only/,
    );
    expect(FaultSpec.parse({ rules: [{ action: 'forge', probability: 0.1, kinds: ['grad.exchange'] }] }).rules[0].action).toBe('forge');
    expect(() => FaultSpec.parse({ rules: [{ action: 'drop', probability: 1.5 }] })).toThrow(/must be <= 1/);
  });
});
